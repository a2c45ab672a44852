"""The audit of one host and of a fleet: connect, one probe exec, facts, checks."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from fleet.audit.checks import run_checks
from fleet.audit.facts import HostFacts, host_facts
from fleet.audit.procs import run_elsewhere, runs_elsewhere
from fleet.config.inventory import Host
from fleet.config.playbook import Playbook
from fleet.config.targets import AuditRequest
from fleet.errors import UsageError
from fleet.model import ERROR, UNREACHABLE, AuditRun, HostResult, host_status, utc_now
from fleet.remote.probe import ProbeFormatError, new_nonce, parse_probe_output, probe_stdin
from fleet.remote.shell import shell_command
from fleet.transport.become import (
    NEEDS_PASSWORD,
    Become,
    BecomeError,
    asked_for_password,
    with_password,
)
from fleet.transport.endpoint import Endpoint
from fleet.transport.fanout import ProgressFactory, run_hosts
from fleet.transport.hostkeys import KnownHosts
from fleet.transport.ssh import (
    Connection,
    KeyCache,
    RunResult,
    SSHError,
    SSHOptions,
    TransportError,
    connect,
    known_hosts_files,
)
from fleet.transport.sshconfig import SSHConfigError, resolve_endpoints


@dataclass(frozen=True)
class AuditContext:
    """What every host's audit shares, fixed before the first host is contacted: options,
    playbook, each host's endpoint; and caches filled once per run (keys, known_hosts)."""

    playbook: Playbook
    ssh: SSHOptions
    cpu_window: int = 5
    host_timeout: float | None = None
    # --forks: hosts handshaking or starting their probe at once. A host whose probe only
    # sleeps through the CPU window holds no slot, so the window is paid once, not per batch.
    forks: int = 20
    # --max-open: connections held open while their probes sample CPU.
    max_open: int = 256
    # --procs: worker processes the hosts are dealt to (fleet.audit.procs); 1: this one.
    procs: int = 1
    # --scheduler: a Dask scheduler whose workers run the hosts in shards (fleet.audit.cluster),
    # each shard the hosts of one value of the host var --shard-by.
    scheduler: str | None = None
    shard_by: str = "fleet_site"
    keys: KeyCache = field(default_factory=KeyCache)
    # name -> where and as whom to connect, resolved by `ssh -G` in prepare(), before any
    # host is contacted (fleet.transport.sshconfig).
    endpoints: dict[str, Endpoint] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)  # printed once per run by the CLI
    slots: threading.Semaphore = field(init=False, repr=False)
    _known: dict[tuple[Path, ...], KnownHosts] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        object.__setattr__(self, "slots", threading.Semaphore(self.forks))

    def __reduce__(self) -> tuple[Any, ...]:
        # To a Dask worker: the run's settings and endpoints; locks and caches (keys, parsed
        # known_hosts, bastion connections) start empty there.
        cached = {"keys", "_known", "_lock"}
        values = {f.name: getattr(self, f.name) for f in fields(self) if f.init}
        return (_context_from, ({k: v for k, v in values.items() if k not in cached},))

    def endpoint(self, host: Host) -> Endpoint:
        """The host's endpoint; resolved now if prepare() did not (a hand-built context).
        Raises SSHError when OpenSSH refuses the host's settings."""
        with self._lock:
            found = self.endpoints.get(host.name)
        if found is not None:
            return found
        try:
            res = resolve_endpoints([host], self.ssh.ssh_config)
        except SSHConfigError as exc:
            raise SSHError(str(exc)) from None
        with self._lock:
            self.warnings.extend(w for w in res.warnings if w not in self.warnings)
            return self.endpoints.setdefault(host.name, res.endpoints[host.name])

    def known_hosts(self, host: Host) -> KnownHosts:
        files = tuple(known_hosts_files(host, self.ssh.known_hosts))
        with self._lock:
            if files not in self._known:
                self._known[files] = KnownHosts.load(list(files))
            return self._known[files]

    def deadline(self, start: float) -> float:
        """Per-host deadline: connect + the sample window + the command budget."""
        budget = self.host_timeout or (
            self.ssh.connect_timeout + self.cpu_window + self.ssh.command_timeout
        )
        return start + budget


def _context_from(values: dict[str, Any]) -> AuditContext:
    return AuditContext(**values)


def probe_host(
    conn: Connection, host: Host, ctx: AuditContext, deadline: float
) -> tuple[HostResult, HostFacts | None]:
    """Run the probe over an open connection (one exec) and judge its output."""
    nonce = new_nonce()
    stdin = probe_stdin(nonce, host.fleet_root, ctx.cpu_window, ctx.playbook.extra_files)
    try:
        with ctx.slots:  # sudo's password is answered in start(), within the fork slot
            ex = conn.start(shell_command(deadline), stdin, deadline, Become.of(host))
    except BecomeError as exc:
        where = conn.endpoint
        return HostResult(host.name, where.address, where.port, ERROR, str(exc), 0.0), None
    res = conn.collect(ex, deadline)  # the CPU window passes here, holding no fork
    return judge_probe(res, nonce, host, conn.endpoint, ctx.playbook, ctx.cpu_window)


def unreadable(exc: Exception, res: RunResult) -> str:
    """Why a remote script's output could not be read: the parser's word, the exit code, and
    the last line the shell wrote to stderr (often the real cause)."""
    tail = res.stderr.strip().split("\n")[-1] if res.stderr.strip() else ""
    return f"{exc} (rc {res.rc}{': ' + tail if tail else ''})"


def judge_probe(
    res: RunResult, nonce: str, host: Host, where: Endpoint, playbook: Playbook, window: int
) -> tuple[HostResult, HostFacts | None]:
    """One probe run's output judged: the host's result, and the facts it was judged from
    (None when the output could not be read; a remediation plans from them)."""
    result = HostResult(host.name, where.address, where.port, ERROR, None, 0.0)
    if asked_for_password(Become.of(host), res.rc, res.stderr):
        result.error = NEEDS_PASSWORD
        return result, None
    try:
        out = parse_probe_output(res.stdout, res.stderr, nonce, host.fleet_root)
    except ProbeFormatError as exc:
        result.error = unreadable(exc, res)
        return result, None
    facts = host_facts(out, host.cpus)
    result.checks = run_checks(facts, playbook, window)
    result.cpu = facts.cpu
    result.kernel = facts.kernel
    probe_error = None
    if not out.complete:
        # rc -1: the channel closed without an exit status (a reset, a dead link).
        lost = "connection lost mid-output: " if res.rc == -1 else ""
        probe_error = f"{lost}probe output incomplete (rc {res.rc})"
    result.error = probe_error
    result.status = host_status(result.checks, probe_error)
    return result, facts


def open_connection(host: Host, ctx: AuditContext, deadline: float) -> Connection:
    """The host's connection, within a fork slot. Raises SSHError (unreachable)."""
    endpoint = ctx.endpoint(host)
    with ctx.slots:
        return connect(host, endpoint, ctx.ssh, ctx.known_hosts(host), ctx.keys, deadline)


def where_of(host: Host, ctx: AuditContext) -> tuple[str, int]:
    """Address and port to report for a host that could not be reached."""
    where = ctx.endpoints.get(host.name)
    return (where.address, where.port) if where else (host.address, host.port)


# What runs over a host's open connection: the probe, or the probe beside a profile.
HostWork = Callable[[Connection, Host, AuditContext, float], HostResult]


def _probe_only(conn: Connection, host: Host, ctx: AuditContext, deadline: float) -> HostResult:
    return probe_host(conn, host, ctx, deadline)[0]


def audit_host(host: Host, ctx: AuditContext, work: HostWork = _probe_only) -> HostResult:
    """Never raises for a host problem: unreachable and errors come back as results."""
    start = time.monotonic()
    deadline = ctx.deadline(start)
    try:
        conn = open_connection(host, ctx, deadline)
    except SSHError as exc:
        address, port = where_of(host, ctx)
        return HostResult(host.name, address, port, UNREACHABLE, str(exc), time.monotonic() - start)
    try:
        result = work(conn, host, ctx, deadline)
    except TransportError as exc:
        result = HostResult(
            host.name, conn.endpoint.address, conn.endpoint.port, ERROR, str(exc), 0.0
        )
    finally:
        conn.close()
    result.duration_s = time.monotonic() - start
    return result


def prepare(req: AuditRequest) -> tuple[list[Host], AuditContext, Path]:
    """Targets and context of a run, loaded before any host is contacted: a bad inventory,
    pattern, playbook or known_hosts file is a usage error (exit 2).

    Every host's SSH settings are resolved here, once, by OpenSSH (`ssh -G`, in parallel)."""
    from fleet.audit.procs import default_procs
    from fleet.config.inventory import default_inventory_path, load_inventory
    from fleet.config.playbook import default_playbook_path, load_playbook

    if req.scheduler and req.procs:
        raise UsageError("--procs and --scheduler: choose one (a Dask worker is a process)")
    hosts = load_inventory(req.inventory or default_inventory_path()).select(req.limit)
    hosts = with_password(hosts, req.become_password)  # -K; a host's own password wins
    playbook_path = req.playbook or default_playbook_path()
    playbook = load_playbook(playbook_path)
    resolved = resolve_endpoints(hosts, None)
    if req.known_hosts and not req.known_hosts.exists() and not req.accept_new_host_keys:
        raise UsageError(f"{req.known_hosts}: no such known_hosts file")
    ctx = AuditContext(
        playbook=playbook,
        ssh=SSHOptions(
            connect_timeout=req.connect_timeout,
            known_hosts=req.known_hosts,
            accept_new_host_keys=req.accept_new_host_keys,
        ),
        cpu_window=req.cpu_window,
        host_timeout=req.timeout,
        forks=req.forks,
        max_open=req.max_open,
        procs=1 if req.scheduler else req.procs or default_procs(len(hosts)),
        scheduler=req.scheduler,
        shard_by=req.shard_by,
        endpoints=resolved.endpoints,
        warnings=resolved.warnings,
    )
    return hosts, ctx, playbook_path


def host_failed(host: Host, exc: Exception) -> HostResult:
    """A host whose handling raised (remote text no parser foresaw, a bug): its own error, in
    one line; the traceback goes to the debug log (--debug)."""
    logging.getLogger("fleet").debug("while handling host %s", host.name, exc_info=exc)
    why = f"fleet could not handle this host: {type(exc).__name__}: {exc}"
    return HostResult(host.name, host.address, host.port, ERROR, why, 0.0)


def audit_fleet(
    hosts: list[Host],
    ctx: AuditContext,
    progress: ProgressFactory | None = None,
    work: HostWork = _probe_only,
) -> AuditRun:
    """Audit every host: at most --forks connecting at once, at most --max-open connections
    held open while their probes sample CPU. `work` runs over each host's connection. With
    --procs above 1 or --scheduler the hosts go to worker processes (run_elsewhere)."""
    started = utc_now()
    if runs_elsewhere(ctx, len(hosts)):
        results = run_elsewhere(
            hosts,
            ctx,
            lambda shard, wctx, pf: audit_fleet(shard, wctx, pf, work).hosts,
            lambda h, why: HostResult(h.name, h.address, h.port, ERROR, why, 0.0),
            lambda r: r.status in (UNREACHABLE, ERROR),
            progress,
        )
        return AuditRun(started, utc_now(), results)
    forks = ctx.forks
    workers = max(forks, min(len(hosts), ctx.max_open)) if ctx.cpu_window > 0 else forks
    try:
        results = run_hosts(
            hosts,
            lambda h: audit_host(h, ctx, work),
            workers=workers,
            progress=progress(len(hosts)) if progress else None,
            is_failure=lambda r: r.status in (UNREACHABLE, ERROR),
            on_error=host_failed,
        )
    finally:
        ctx.ssh.jumps.close()  # the run's bastion connections (fleet/transport/jump.py)
    return AuditRun(started, utc_now(), results)
