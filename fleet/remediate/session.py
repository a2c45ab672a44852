"""A host as a remediation sees it: the `Remote` protocol (run one fleet script there), its
SSH implementation, and the session built on any Remote (probe, apply, exact reads).

Every remediation, plan and rollback of a host goes through ONE Remote: the SSH connection
in a real run, `sh` on a local tree in the state machine's tests (tests/local_remote.py).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Protocol

from fleet.audit.facts import HostFacts
from fleet.audit.run import judge_probe
from fleet.config.inventory import Host
from fleet.model import ERROR, Finding, HostResult
from fleet.profile.checks import profile_findings
from fleet.profile.judge import judge_profile
from fleet.profile.result import HostProfile
from fleet.remediate.context import RemediateContext, StepFailed
from fleet.remote.apply import ApplyOutput, Op, apply_stdin, parse_apply_output, read_stdin
from fleet.remote.probe import new_nonce, parse_probe_output, probe_stdin
from fleet.remote.profile import profile_stdin
from fleet.remote.shell import shell_command
from fleet.transport.become import NEEDS_PASSWORD, Become, BecomeError, asked_for_password
from fleet.transport.endpoint import Endpoint
from fleet.transport.ssh import CommandTimeout, Connection, RunResult, connect


class Remote(Protocol):
    """Where a host's fleet scripts run. `run` sends `stdin` (fleet/remote/shell.py: the
    arguments, then the script) to `sh -s` on the host, bounded by `deadline` (monotonic);
    it raises TransportError when the host cannot be talked to, BecomeError when sudo
    refuses."""

    host: Host
    endpoint: Endpoint

    def run(self, stdin: bytes, deadline: float) -> RunResult: ...

    def close(self) -> None: ...


class SSHRemote:
    """The host over its one SSH connection, as its become settings want commands run."""

    def __init__(self, conn: Connection, host: Host) -> None:
        self.conn = conn
        self.host = host
        self.endpoint = conn.endpoint
        self.become = Become.of(host)

    def run(self, stdin: bytes, deadline: float) -> RunResult:
        res = self.conn.run(shell_command(deadline), stdin, deadline, self.become)
        if asked_for_password(self.become, res.rc, res.stderr):
            raise BecomeError(NEEDS_PASSWORD)
        return res

    def close(self) -> None:
        self.conn.close()


def connect_remote(host: Host, ctx: RemediateContext) -> SSHRemote:
    """The host's one connection (raises SSHError: the host is unreachable)."""
    a = ctx.audit
    deadline = time.monotonic() + a.ssh.connect_timeout * 3
    with a.slots:
        conn = connect(host, a.endpoint(host), a.ssh, a.known_hosts(host), a.keys, deadline)
    return SSHRemote(conn, host)


@dataclass
class Reading:
    """A probe over the host's session: the re-audit's result and the facts it judged."""

    result: HostResult
    facts: HostFacts

    @property
    def checks(self) -> list[Finding]:
        return self.result.checks


class HostSession:
    """One host's remediation I/O over its Remote: every command bounded by a deadline, every
    failure to run one a StepFailed (a broken connection stays a TransportError)."""

    def __init__(self, remote: Remote, ctx: RemediateContext) -> None:
        self.remote = remote
        self.host = remote.host
        self.ctx = ctx
        self.tag = ctx.run_id  # names config backups: <file>.fleet-<tag>.bak

    def deadline(self, extra: float = 0.0) -> float:
        # --timeout bounds each remote command here (a remediation is many of them).
        budget = self.ctx.audit.host_timeout or self.ctx.audit.ssh.command_timeout
        return time.monotonic() + budget + extra

    def probe(self, window: int) -> Reading:
        """The audit's probe with a CPU window of `window` seconds (0: state only)."""
        nonce = new_nonce()
        pb = self.ctx.audit.playbook
        stdin = probe_stdin(nonce, self.host.fleet_root, window, pb.extra_files)
        res = self._run(stdin, self.deadline(window), "probe: ")
        result, facts = judge_probe(res, nonce, self.host, self.remote.endpoint, pb, window)
        if facts is None:
            raise StepFailed(f"probe failed: {result.error}")
        return Reading(result, facts)

    def profile(self, window: int) -> HostProfile:
        """fleet profile's script over `window` seconds. Never raises for what the host
        answers: a profile that fails is a profile in error (the proof says not-measured)."""
        nonce = new_nonce()
        stdin = profile_stdin(nonce, self.host.fleet_root, window)
        where = self.remote.endpoint
        try:
            res = self._run(stdin, self.deadline(window), "profile: ")
            out = parse_probe_output(res.stdout, res.stderr, nonce, self.host.fleet_root)
            prof = judge_profile(out, self.host.name, where.address, where.port, window)
        except (StepFailed, ValueError) as exc:  # ProbeFormatError is a ValueError
            return HostProfile(self.host.name, where.address, where.port, ERROR, str(exc))
        prof.findings = profile_findings(prof, self.ctx.audit.playbook.profile)
        return prof

    def run_ops(self, ops: list[Op], extra: float = 0.0) -> ApplyOutput:
        """fleet/remote/apply.sh's compare-and-set `ops`, `extra` seconds more for a restart."""
        nonce = new_nonce()
        stdin = apply_stdin(nonce, self.host.fleet_root, self.tag, ops)
        res = self._run(stdin, self.deadline(extra))
        out = parse_apply_output(res.stdout, nonce)
        if not out.complete and not out.results:
            tail = (res.stderr.strip().splitlines() or [f"rc {res.rc}"])[-1]
            raise StepFailed(f"remote apply did not run: {tail}")
        return out

    def read_exact(self, path: str) -> tuple[str | None, str | None]:
        """A file's exact bytes (what a compare-and-set write checks), or why not."""
        res = self._run(read_stdin(self.host.fleet_root, path), self.deadline())
        if res.rc != 0:
            return None, res.stderr.strip().splitlines()[-1] if res.stderr.strip() else "rc 1"
        return res.stdout, None

    def _run(self, stdin: bytes, deadline: float, what: str = "") -> RunResult:
        try:
            return self.remote.run(stdin, deadline)
        except BecomeError as exc:
            raise StepFailed(f"{what}{exc}") from None
        except CommandTimeout as exc:
            # The connection still stands (the host ends the command itself, timeout -k):
            # a step cut short here is undone over it like any failed step.
            raise StepFailed(f"{what}{exc}") from None

    def close(self) -> None:
        self.remote.close()
