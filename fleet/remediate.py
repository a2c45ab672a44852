"""fleet remediate / fleet rollback: plan, lock, journal, apply, verify, undo; one host each.

Every host is handled over ONE SSH connection: lock, before-probe (state + CPU), for each step
a fresh read of the state it is planned from, the step's writes, then settle, the after-probe
(state + CPU = the re-audit), unlock. Each remote write is journaled locally first.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from fleet.apply import ApplyOutput, apply_stdin, parse_apply_output, read_stdin
from fleet.audit import AuditContext, host_failed, probe_host
from fleet.become import NEEDS_PASSWORD, SUDO_PASSWORD_HINTS, Become, BecomeError
from fleet.facts import EBPF_PLUGINS, HostFacts
from fleet.fixes import Op, PlanInput, Step, plan_step, render_diff
from fleet.inventory import Host
from fleet.journal import Journal, JournaledRun, JournaledStep, operator, ops_json
from fleet.model import (
    COMPLIANT,
    ERROR,
    FAIL,
    SKIPPED,
    UNREACHABLE,
    Finding,
    HostResult,
    host_status,
    utc_now,
)
from fleet.probe import new_nonce
from fleet.remediation_results import (
    APPLIED,
    FAILED,
    PLANNED,
    ROLLED_BACK,
    HostRemediation,
    RemediationRun,
    StepResult,
)
from fleet.remote_shell import shell_command
from fleet.runner import Progress, run_hosts
from fleet.ssh import CommandTimeout, Connection, RunResult, SSHError, TransportError, connect
from fleet.verify import NOT_MEASURED, WORSE, Verdict, cpu_verdict, intervals

LOCK_PATH = "/run/fleet-remediate.lock"


class StepFailed(Exception):
    """A step's remote writes did not all happen; the host's earlier steps are undone."""


class Interrupted(StepFailed):
    """SIGINT or SIGTERM arrived: the host in hand stops at the next step boundary and what
    it applied is undone (a host whose steps are all applied is finished, not measured)."""


@dataclass
class RemediateContext:
    audit: AuditContext
    run_id: str
    state_dir: Path
    journal: Journal | None = None  # None: plan only
    settle_s: float | None = None  # None: the playbook's
    lock_ttl_s: float = 3600.0
    # Set by the CLI's SIGINT/SIGTERM handler: no new step, no new host (stop_why says which).
    stop: threading.Event = field(default_factory=threading.Event)
    stop_why: str = "interrupted"
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _seq: int = 0

    def next_seq(self) -> int:
        with self._lock:
            self._seq += 1
            return self._seq


@dataclass
class Reading:
    """A probe over the host's connection: the re-audit's result and the facts it judged."""

    result: HostResult
    facts: HostFacts

    @property
    def checks(self) -> list[Finding]:
        return self.result.checks


class _Session:
    """One host's connection: every exec bounded by a deadline."""

    def __init__(self, conn: Connection, host: Host, ctx: RemediateContext) -> None:
        self.conn = conn
        self.host = host
        self.ctx = ctx
        self.tag = ctx.run_id  # names config backups: <file>.fleet-<tag>.bak
        self.become = Become.of(host)

    def deadline(self, extra: float = 0.0) -> float:
        # --timeout bounds each remote command here (a remediation is many of them).
        budget = self.ctx.audit.host_timeout or self.ctx.audit.ssh.command_timeout
        return time.monotonic() + budget + extra

    def probe(self, window: int) -> Reading:
        try:
            res, facts = probe_host(
                self.conn, self.host, self.ctx.audit, self.deadline(window), window
            )
        except CommandTimeout as exc:
            raise StepFailed(f"probe: {exc}") from None
        if facts is None:
            raise StepFailed(f"probe failed: {res.error}")
        return Reading(res, facts)

    def apply(self, ops: list[Op], extra: float = 0.0) -> ApplyOutput:
        nonce = new_nonce()
        stdin = apply_stdin(nonce, self.host.fleet_root, self.tag, ops)
        res = self._run(stdin, self.deadline(extra))
        out = parse_apply_output(res.stdout, nonce)
        if not out.complete and not out.results:
            tail = (res.stderr.strip().splitlines() or [f"rc {res.rc}"])[-1]
            raise StepFailed(f"remote apply did not run: {tail}")
        return out

    def read_exact(self, path: str) -> tuple[str | None, str | None]:
        res = self._run(read_stdin(self.host.fleet_root, path), self.deadline())
        if res.rc != 0:
            return None, res.stderr.strip().splitlines()[-1] if res.stderr.strip() else "rc 1"
        return res.stdout, None

    def _run(self, stdin: bytes, deadline: float) -> RunResult:
        """One script (fleet/remote_shell.py) as the host's become settings want it run; sudo
        refusing is a failed step."""
        try:
            res = self.conn.run(shell_command(deadline), stdin, deadline, self.become)
        except BecomeError as exc:
            raise StepFailed(str(exc)) from None
        except CommandTimeout as exc:
            # The connection still stands (the host ends the command itself, timeout -k):
            # a step cut short here is undone over it like any failed step.
            raise StepFailed(str(exc)) from None
        if self.become and res.rc != 0 and any(h in res.stderr for h in SUDO_PASSWORD_HINTS):
            raise StepFailed(NEEDS_PASSWORD)
        return res


# ---------------------------------------------------------------- lock
def _owner_line(ctx: RemediateContext, now: int) -> str:
    return "\t".join([ctx.run_id, operator(), socket.gethostname(), str(os.getpid()), str(now)])


def _stale(owner: str, remote_now: int, ttl: float) -> str | None:
    """Why a held lock may be taken over, or None when its owner may still be at work."""
    parts = owner.rstrip("\n").split("\t")
    if len(parts) != 5 or not parts[3].isdigit() or not parts[4].isdigit():
        return None
    run_id, _op, controller, pid, since = parts
    if controller == socket.gethostname():
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return f"run {run_id} (pid {pid} on this controller) is gone"
        except PermissionError:
            pass
    if remote_now - int(since) > ttl:
        return f"run {run_id} took it {remote_now - int(since)} s ago (--lock-ttl {ttl:g})"
    return None


def _describe_owner(owner: str) -> str:
    parts = owner.rstrip("\n").split("\t")
    if len(parts) == 5:
        return f"run {parts[0]} by {parts[1]}@{parts[2]} pid {parts[3]}"
    return owner.strip() or "unknown owner"


def acquire_lock(s: _Session) -> tuple[str, str | None]:
    """Take the host's remediation lock: (owner line, note about a stale lock taken over)."""
    owner = _owner_line(s.ctx, int(time.time()))
    out = s.apply([Op("lock", LOCK_PATH, "-", owner)])
    if out.ok:
        return owner, None
    held = out.first_problem()
    if held is None or held.status != "held":
        raise StepFailed(f"cannot take the lock {LOCK_PATH}: {held.detail if held else '?'}")
    current = held.after or ""
    remote_now = int(held.detail) if held.detail.isdigit() else int(time.time())
    why = _stale(current, remote_now, s.ctx.lock_ttl_s)
    if why is None:
        raise StepFailed(
            f"another remediation holds {LOCK_PATH}: {_describe_owner(current)}; "
            "try again when it is done"
        )
    out = s.apply([Op("lock", LOCK_PATH, current.rstrip("\n"), owner)])
    if not out.ok:
        raise StepFailed(f"lost the race for the stale lock {LOCK_PATH}")
    return owner, f"took over a stale lock: {why}"


def release_lock(s: _Session, owner: str) -> None:
    s.apply([Op("unlock", LOCK_PATH, owner, "-")])


def _release_quietly(s: _Session, owner: str | None) -> None:
    """In a finally: a lock left behind is seen as stale by the next run and taken over."""
    if owner is None:
        return
    with contextlib.suppress(StepFailed, TransportError):
        release_lock(s, owner)


# ---------------------------------------------------------------- planning on a host
def _plan_input(s: _Session, step_id: str, res: Reading, facts: HostFacts) -> PlanInput:
    pb = s.ctx.audit.playbook
    allow: tuple[str, ...] = ()
    spec = pb.check("tracing.set_event")
    if spec is not None:
        allow = tuple(str(a) for a in spec.params.get("allow", []))
    confs: dict[str, tuple[str | None, str | None]] = {}
    status = next((f.status for f in res.checks if f.id == "netdata.ebpf"), None)
    if step_id == "netdata.ebpf_off" and status == FAIL:
        for v in facts.netdata_verdicts():
            if v.on and v.edit and v.edit in facts.netdata_texts and v.edit not in confs:
                confs[v.edit] = s.read_exact(v.edit)
    return PlanInput(
        restart_command=s.host.netdata_restart,
        netdata_confs=confs,
        check_status={f.id: f.status for f in res.checks},
        set_event_allow=allow,
    )


def _fix_ids(ctx: RemediateContext) -> list[str]:
    return [f.id for f in ctx.audit.playbook.fixes]


def _planned(step: Step, status: str, error: str | None = None) -> StepResult:
    return StepResult(
        step.id,
        status,
        {c.path: c.before for c in step.changes},
        {c.path: c.after for c in step.changes},
        error or step.blocked,
        render_diff(step),
    )


# ---------------------------------------------------------------- applying and undoing
class JournalFailed(Exception):
    """The local journal could not be written: nothing more is written to the host."""


def _journal(ctx: RemediateContext, record: dict[str, Any]) -> None:
    if ctx.journal is None:
        return
    try:
        ctx.journal.write(record)
    except OSError as exc:
        raise JournalFailed(
            f"journal write failed: {exc.strerror or exc} ({ctx.journal.path}); "
            "nothing more was written to the host"
        ) from None


def _run_step(s: _Session, step: Step, seq: int) -> StepResult:
    """Journal, then write. Raises StepFailed when the writes did not all happen."""
    ctx = s.ctx
    _journal(
        ctx,
        {
            "type": "intent",
            "host": s.host.name,
            "seq": seq,
            "step": step.id,
            "operator": operator(),
            "ops": ops_json(step.ops),
            "undo": ops_json(step.undo),
            "changes": [vars(c) for c in step.changes],
        },
    )
    wait = ctx.audit.playbook.netdata_wait_s if step.restarts_netdata else 0.0
    out = s.apply(step.ops, extra=wait)
    result = _planned(step, APPLIED)
    for op, r in zip(step.ops, out.results, strict=False):
        if r.after is not None and op.path in result.after:
            result.after[op.path] = r.after  # as the kernel reads it back
    problem = out.first_problem()
    status = (
        APPLIED if out.ok else ("changed" if problem and problem.status == "changed" else FAILED)
    )
    error = None
    if problem is not None:
        op = step.ops[problem.index - 1] if 0 < problem.index <= len(step.ops) else None
        where = f"{op.path}: " if op and op.path != "-" else ""
        errno = f" ({problem.errno})" if problem.errno else ""
        error = f"{where}{problem.detail}{errno}"
    elif not out.complete:
        cut = f"output unusable: {out.problem}" if out.problem else "was cut short"
        error = f"remote apply {cut}"
    _journal(
        ctx,
        {
            "type": "result",
            "host": s.host.name,
            "seq": seq,
            "status": status,
            "error": error,
            "after": result.after,
        },
    )
    if status != APPLIED:
        result.status = FAILED
        result.error = error if status == FAILED else f"state changed since it was read: {error}"
        raise _StepError(result, wrote=status == FAILED)
    return result


class _StepError(StepFailed):
    def __init__(self, result: StepResult, wrote: bool) -> None:
        super().__init__(result.error or "step failed")
        self.result = result
        self.wrote = wrote  # False: its checks failed before any write


def _wait_netdata_gone(s: _Session, wait_s: float) -> Reading:
    """Poll until ebpf.plugin has exited (taking its kprobes and BPF programs with it)."""
    end = time.monotonic() + wait_s
    while True:
        res = s.probe(0)
        procs = res.facts.processes.values()
        if not any(c in EBPF_PLUGINS for c in procs):
            return res
        if time.monotonic() >= end:
            raise StepFailed(f"ebpf.plugin still running {wait_s:g} s after the restart")
        _check_stop(s.ctx)
        s.ctx.stop.wait(1.0)


def _undo_op(op: Op, host: Host) -> Op:
    """An undo op as it may run: a command comes from the inventory, never from the journal
    (a file on disk); a config file is restored without a new backup (journals before
    `restore` existed said `file`)."""
    if op.mode == "run":
        return replace(op, data=host.netdata_restart)
    if op.mode == "file":
        return replace(op, mode="restore")
    return op


def undo_step(s: _Session, step: JournaledStep) -> str | None:
    try:
        return _undo_step(s, step)
    except StepFailed as exc:  # a remote undo cut short (its deadline): not restored
        return str(exc)


def _undo_step(s: _Session, step: JournaledStep) -> str | None:
    """Restore one step's files; None when restored, else why not. Each undo op expects the
    value the step wrote; a file already back at its previous value counts as restored."""
    ops = [_undo_op(o, s.host) for o in step.undo]
    if not ops:
        return None
    # A restart may take as long as the step allows netdata to stop (its wait_s).
    wait = s.ctx.audit.playbook.netdata_wait_s
    out = s.apply(ops, extra=wait if any(o.mode == "run" for o in ops) else 0.0)
    if out.ok:
        return None
    problem = out.first_problem()
    if problem is None or problem.status != "changed":
        return problem.detail if problem else "remote undo was cut short"
    # Some op found neither what the step wrote: go op by op, accepting "already previous".
    forward = {o.path: o for o in step.ops if o.mode != "run"}
    for op in ops:
        out = s.apply([op], extra=wait if op.mode == "run" else 0.0)
        if out.ok:
            continue
        problem = out.first_problem()
        before = forward.get(op.path)
        if problem is not None and problem.status == "changed" and before is not None:
            same = "same" if before.mode in ("set", "file") else "same-lines"
            if s.apply([Op(same, op.path, before.check, "-")]).ok:
                continue
            return f"{op.path}: changed by someone else since the run; left as it is"
        return problem.detail if problem else "remote undo was cut short"
    return None


def _undo_all(s: _Session, done: list[JournaledStep], results: dict[int, StepResult]) -> bool:
    """Undo `done` (last first), journaling each; True when every one was restored."""
    ok = True
    for jstep in reversed(done):
        why = undo_step(s, jstep)
        status = ROLLED_BACK if why is None else FAILED
        _journal(
            s.ctx,
            {"type": "undo", "host": s.host.name, "seq": jstep.seq, "status": status, "error": why},
        )
        if jstep.seq in results:
            results[jstep.seq].status = status
            if why:
                results[jstep.seq].error = why
        ok &= why is None
    return ok


def _journaled(step: Step, seq: int) -> JournaledStep:
    return JournaledStep(seq, step.id, step.ops, step.undo, [vars(c) for c in step.changes])


# ---------------------------------------------------------------- one host
def _connect(host: Host, ctx: RemediateContext) -> Connection:
    a = ctx.audit
    deadline = time.monotonic() + a.ssh.connect_timeout * 3
    with a.slots:
        return connect(host, a.endpoint(host), a.ssh, a.known_hosts(host), a.keys, deadline)


def _open(host: Host, ctx: RemediateContext, start: float) -> _Session | HostRemediation:
    """The host's one connection, or its result as unreachable."""
    try:
        return _Session(_connect(host, ctx), host, ctx)
    except SSHError as exc:
        res = HostResult(
            host.name, host.address, host.port, UNREACHABLE, str(exc), time.monotonic() - start
        )
        return HostRemediation(res, ctx.run_id, failed=True)


def plan_host(host: Host, ctx: RemediateContext) -> HostRemediation:
    """What remediate would do now; reads only (no lock, no write)."""
    start = time.monotonic()
    s = _open(host, ctx, start)
    if isinstance(s, HostRemediation):
        return s
    try:
        res = s.probe(0)
        rem = HostRemediation(res.result, ctx.run_id)
        for step_id in _fix_ids(ctx):
            step = plan_step(step_id, res.facts, _plan_input(s, step_id, res, res.facts))
            if step is not None:
                rem.steps.append(_planned(step, SKIPPED if step.blocked else PLANNED))
    except (StepFailed, TransportError) as exc:
        res = HostResult(host.name, host.address, host.port, ERROR, str(exc), 0.0)
        rem = HostRemediation(res, ctx.run_id, failed=True)
    finally:
        s.conn.close()
    rem.result.duration_s = time.monotonic() - start
    return rem


def _check_stop(ctx: RemediateContext) -> None:
    if ctx.stop.is_set():
        raise Interrupted(ctx.stop_why)


def remediate_host(host: Host, ctx: RemediateContext) -> HostRemediation:
    start = time.monotonic()
    if ctx.stop.is_set():
        return _skipped(host, ctx, f"not started: {ctx.stop_why}")
    s = _open(host, ctx, start)
    if isinstance(s, HostRemediation):
        return s
    rem = HostRemediation(
        HostResult(host.name, host.address, host.port, ERROR, None, 0.0), ctx.run_id
    )
    owner = None
    try:
        owner, note = acquire_lock(s)
        _remediate_locked(s, rem, note)
    except StepFailed as exc:
        rem.result.error = str(exc)
        rem.failed = True
    except JournalFailed as exc:
        # No undo either: an undo that cannot be journaled is a write nobody could audit.
        journaled = "; what was applied is journaled: fleet rollback undoes it" if rem.steps else ""
        rem.result.status, rem.result.error, rem.failed = ERROR, f"{exc}{journaled}", True
    except TransportError as exc:
        undo = "; the journal keeps what was applied: fleet rollback undoes it" if rem.steps else ""
        rem.result.error = f"{exc}{undo}"
        rem.result.status = ERROR
        rem.failed = True
    finally:
        _release_quietly(s, owner)
        s.conn.close()
    rem.result.duration_s = time.monotonic() - start
    with contextlib.suppress(JournalFailed):  # the outcome record only; the result stands
        _journal(
            ctx,
            {
                "type": "host",
                "host": host.name,
                "status": rem.status,
                "failed": rem.failed,
                "verdict": rem.verdict.verdict if rem.verdict else None,
                "error": rem.result.error,
            },
        )
    return rem


def _failed_step(
    exc: StepFailed,
    step_id: str,
    step: Step | None,
    seq: int,
    done: list[JournaledStep],
    results: dict[int, StepResult],
) -> StepResult:
    """The failed step's result; a step that may have written anything joins `done`, so the
    undo covers it too (an op that never happened finds its file at the previous value)."""
    if isinstance(exc, _StepError):
        if exc.wrote and step is not None:
            done.append(_journaled(step, seq))
        return exc.result
    if step is None or not seq:
        return StepResult(step_id, FAILED, error=str(exc))  # reading the state failed
    if done and done[-1].seq == seq:
        # Written, but what must follow did not happen (ebpf.plugin still running): undone,
        # and reported failed rather than rolled back.
        failed = results.pop(seq)
        failed.status, failed.error = FAILED, str(exc)
        return failed
    done.append(_journaled(step, seq))  # the remote apply was cut short: it may have written
    return _planned(step, FAILED, str(exc))


def _remediate_locked(s: _Session, rem: HostRemediation, lock_note: str | None) -> None:
    ctx = s.ctx
    window = ctx.audit.cpu_window
    before = s.probe(window)
    rem.result = before.result
    rem.cpu_before = before.result.cpu
    if lock_note:
        rem.result.error = lock_note
    done: list[JournaledStep] = []
    results: dict[int, StepResult] = {}
    current = before
    for step_id in _fix_ids(ctx):
        step: Step | None = None
        seq = 0
        try:
            _check_stop(ctx)
            if done:
                current = s.probe(0)  # what the previous step left is what this one plans from
            step = plan_step(
                step_id, current.facts, _plan_input(s, step_id, current, current.facts)
            )
            if step is None:
                continue
            if step.blocked:
                rem.steps.append(_planned(step, SKIPPED))
                continue
            seq = ctx.next_seq()
            result = _run_step(s, step, seq)
            done.append(_journaled(step, seq))
            results[seq] = result
            rem.steps.append(result)
            if step.restarts_netdata:
                current = _wait_netdata_gone(s, ctx.audit.playbook.netdata_wait_s)
        except StepFailed as exc:
            if isinstance(exc, Interrupted) and step is None:
                what = f"{exc} before step {step_id}"  # nothing of this step was written
            else:
                failed = _failed_step(exc, step_id, step, seq, done, results)
                if failed not in rem.steps:
                    rem.steps.append(failed)
                what = f"step {step_id} failed: {failed.error}"
            restored = _undo_all(s, done, results)
            rem.failed = True
            rem.result.error = f"{what}; earlier steps " + (
                "rolled back" if restored else "NOT all rolled back: run fleet rollback"
            )
            after = s.probe(0)
            rem.checks_after = after.checks
            rem.result.status = after.result.status
            rem.verdict = Verdict(NOT_MEASURED, "rolled back after a failed step")
            return
    if not done:
        # Nothing was written: the before probe is the re-audit, and there is no change to
        # measure (a second sample would only cost the window again).
        after = before
        rem.verdict = Verdict(NOT_MEASURED, "nothing was changed")
    elif ctx.stop.is_set():
        # Every step is applied: the host is finished; only the CPU measure is given up.
        after = s.probe(0)
        rem.verdict = Verdict(NOT_MEASURED, f"{ctx.stop_why} after the last step")
    else:
        settle = ctx.settle_s if ctx.settle_s is not None else ctx.audit.playbook.settle_s
        ctx.stop.wait(settle)
        after = s.probe(0 if ctx.stop.is_set() else window)
        if ctx.stop.is_set():
            rem.verdict = Verdict(NOT_MEASURED, f"{ctx.stop_why} after the last step")
    rem.checks_after = after.checks
    rem.cpu_after = after.result.cpu if done else None
    if rem.verdict is None and window == 0:
        rem.verdict = Verdict(NOT_MEASURED, "--cpu-window 0")
    elif rem.verdict is None:
        rem.verdict = cpu_verdict(
            intervals(before.facts.cpu_samples, s.host.cpus),
            intervals(after.facts.cpu_samples, s.host.cpus),
            ctx.audit.playbook.min_change_pct,
        )
    rem.result.status = after.result.status
    still = [f.id for f in after.checks if f.status == FAIL]
    if still or rem.verdict.verdict == WORSE or after.result.status == ERROR:
        rem.failed = True
        why = f"still failing: {', '.join(still)}" if still else rem.verdict.reason
        rem.result.error = "; ".join(x for x in (rem.result.error, why) if x)


# ---------------------------------------------------------------- rollback of one host
def rollback_host(host: Host, ctx: RemediateContext, run: JournaledRun) -> HostRemediation:
    start = time.monotonic()
    pending = run.pending(host.name)
    s = _open(host, ctx, start)
    if isinstance(s, HostRemediation):
        return s
    rem = HostRemediation(
        HostResult(host.name, host.address, host.port, COMPLIANT, None, 0.0), run.run_id
    )
    results = {
        j.seq: StepResult(
            j.step,
            APPLIED,
            {c["path"]: c["before"] for c in j.changes},
            {c["path"]: c["after"] for c in j.changes},
        )
        for j in pending
    }
    owner = None
    try:
        owner, note = acquire_lock(s)
        rem.result.error = note
        restored = _undo_all(s, list(reversed(pending)), results)
        rem.steps = [results[j.seq] for j in pending]
        after = s.probe(0)
        rem.checks_after = after.checks
        rem.result.kernel = after.result.kernel
        rem.failed = not restored
        # The host as the re-audit finds it: back to its state before the run, so usually
        # non-compliant; whether the rollback worked is `failed` and the exit code.
        rem.result.status = host_status(after.checks, None)
        if not restored:
            rem.result.error = "not every step could be restored (see steps)"
    except (StepFailed, JournalFailed) as exc:
        rem.result.status, rem.result.error, rem.failed = ERROR, str(exc), True
    except TransportError as exc:
        rem.result.status, rem.failed = ERROR, True
        rem.result.error = str(exc)
    finally:
        _release_quietly(s, owner)
        s.conn.close()
    rem.result.duration_s = time.monotonic() - start
    return rem


# ---------------------------------------------------------------- the fleet
def _failed(host: Host, ctx: RemediateContext, exc: Exception) -> HostRemediation:
    """A host whose remediation raised: failed, its journal (if any) left for rollback."""
    return HostRemediation(host_failed(host, exc), ctx.run_id, failed=True)


def _skipped(host: Host, ctx: RemediateContext, why: str) -> HostRemediation:
    res = HostResult(host.name, host.address, host.port, SKIPPED, why, 0.0)
    return HostRemediation(res, ctx.run_id, failed=True)


def plan_fleet(hosts: list[Host], ctx: RemediateContext, forks: int) -> RemediationRun:
    started = utc_now()
    ctx.audit.slots = threading.Semaphore(forks)
    out = run_hosts(
        hosts,
        lambda h: plan_host(h, ctx),
        workers=forks,
        progress=Progress(len(hosts)),
        on_error=lambda h, exc: _failed(h, ctx, exc),
    )
    ctx.audit.ssh.jumps.close()  # the run's bastion connections (fleet/jump.py)
    return RemediationRun(ctx.run_id, started, utc_now(), out)


def remediate_fleet(
    hosts: list[Host],
    ctx: RemediateContext,
    batch: int,
    max_fail: int,
    fn: Callable[[Host, RemediateContext], HostRemediation] = remediate_host,
) -> RemediationRun:
    """A canary host alone, then batches of `batch`; once more than `max_fail` hosts have
    failed over the whole run, no new host starts and the rest are reported skipped."""
    started = utc_now()
    ctx.audit.slots = threading.Semaphore(max(batch, 1))
    results: dict[str, HostRemediation] = {}
    waves = [hosts[:1]] + [hosts[i : i + batch] for i in range(1, len(hosts), batch)]
    failed = 0
    note = None
    for wave in waves:
        if not wave:
            continue
        if ctx.stop.is_set():
            for h in wave:
                results[h.name] = _skipped(h, ctx, f"not started: {ctx.stop_why}")
            continue
        if failed > max_fail:
            for h in wave:
                results[h.name] = _skipped(
                    h, ctx, f"not started: {failed} host(s) failed, over --max-fail {max_fail}"
                )
            continue
        done = run_hosts(
            wave, lambda h: fn(h, ctx), workers=len(wave), on_error=lambda h, e: _failed(h, ctx, e)
        )
        for rem in done:
            results[rem.name] = rem
            failed += rem.failed
        if failed > max_fail and note is None:
            note = f"failure budget exceeded: {failed} failed > --max-fail {max_fail}"
    ctx.audit.ssh.jumps.close()
    return RemediationRun(ctx.run_id, started, utc_now(), [results[h.name] for h in hosts], note)


def rollback_fleet(
    hosts: list[Host], ctx: RemediateContext, run: JournaledRun, forks: int
) -> RemediationRun:
    started = utc_now()
    ctx.audit.slots = threading.Semaphore(forks)

    def one(h: Host) -> HostRemediation:
        if not run.pending(h.name):
            res = HostResult(h.name, h.address, h.port, COMPLIANT, "nothing to roll back", 0.0)
            return HostRemediation(res, run.run_id)
        return rollback_host(h, ctx, run)

    out = run_hosts(
        hosts,
        one,
        workers=forks,
        progress=Progress(len(hosts)),
        on_error=lambda h, exc: _failed(h, ctx, exc),
    )
    ctx.audit.ssh.jumps.close()
    return RemediationRun(run.run_id, started, utc_now(), out)
