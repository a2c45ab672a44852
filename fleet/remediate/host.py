"""One host's plan, remediation and rollback over its session: the state machine.

remediate: lock, before-probe (state + CPU), for each fix a fresh read of the state it is
planned from, the step's writes (journaled first), then settle, the after-probe (state + CPU
= the re-audit), unlock. A failed step undoes every step before it. Nothing here knows SSH:
the session's Remote does (tests run it on a local tree).
"""

from __future__ import annotations

import contextlib
import time

from fleet.audit.facts import EBPF_PLUGINS
from fleet.config.playbook import Playbook
from fleet.model import COMPLIANT, ERROR, FAIL, SKIPPED, HostResult, host_status
from fleet.profile.proof import NOT_PROVEN, Proof, profile_proof
from fleet.remediate.context import Interrupted, JournalFailed, RemediateContext, StepFailed
from fleet.remediate.journal import JournaledRun, JournaledStep, operator, ops_json
from fleet.remediate.lock import acquire_lock, release_quietly
from fleet.remediate.plan import PlanInput, Step, plan_step, render_diff
from fleet.remediate.results import APPLIED, FAILED, PLANNED, HostRemediation, StepResult
from fleet.remediate.session import HostSession, Reading
from fleet.remediate.undo import undo_all
from fleet.remediate.verdict import NOT_MEASURED, WORSE, Verdict, cpu_verdict, intervals
from fleet.remote.profile import PROFILE_WINDOW_S
from fleet.transport.ssh import TransportError


# ---------------------------------------------------------------- planning (pure)
def confs_to_read(step_id: str, reading: Reading) -> list[str]:
    """The netdata.conf files whose exact bytes the netdata step is planned from."""
    status = next((f.status for f in reading.checks if f.id == "netdata.ebpf"), None)
    if step_id != "netdata.ebpf_off" or status != FAIL:
        return []
    facts = reading.facts
    paths = [v.edit for v in facts.netdata_verdicts() if v.on and v.edit]
    return [p for p in dict.fromkeys(paths) if p in facts.netdata_texts]


def plan_input(
    reading: Reading,
    playbook: Playbook,
    restart_command: str,
    confs: dict[str, tuple[str | None, str | None]],
) -> PlanInput:
    spec = playbook.check("tracing.set_event")
    allow = tuple(str(a) for a in spec.params.get("allow", [])) if spec else ()
    return PlanInput(
        restart_command=restart_command,
        netdata_confs=confs,
        check_status={f.id: f.status for f in reading.checks},
        set_event_allow=allow,
    )


def _plan(s: HostSession, step_id: str, reading: Reading) -> Step | None:
    """The step as it would run now, planned from `reading` and the exact config bytes."""
    confs = {p: s.read_exact(p) for p in confs_to_read(step_id, reading)}
    inp = plan_input(reading, s.ctx.audit.playbook, s.host.netdata_restart, confs)
    return plan_step(step_id, reading.facts, inp)


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


def _journaled(step: Step, seq: int) -> JournaledStep:
    return JournaledStep(seq, step.id, step.ops, step.undo, [vars(c) for c in step.changes])


# ---------------------------------------------------------------- plan
def plan_on(s: HostSession) -> HostRemediation:
    """What remediate would do now; reads only (no lock, no write)."""
    ctx = s.ctx
    try:
        reading = s.probe(0)
        rem = HostRemediation(reading.result, ctx.run_id)
        for step_id in _fix_ids(ctx):
            step = _plan(s, step_id, reading)
            if step is not None:
                rem.steps.append(_planned(step, SKIPPED if step.blocked else PLANNED))
    except (StepFailed, TransportError) as exc:
        res = HostResult(s.host.name, s.host.address, s.host.port, ERROR, str(exc), 0.0)
        rem = HostRemediation(res, ctx.run_id, failed=True)
    return rem


# ---------------------------------------------------------------- remediate
class _StepError(StepFailed):
    def __init__(self, result: StepResult, wrote: bool) -> None:
        super().__init__(result.error or "step failed")
        self.result = result
        self.wrote = wrote  # False: its checks failed before any write


def _run_step(s: HostSession, step: Step, seq: int) -> StepResult:
    """Journal, then write. Raises StepFailed when the writes did not all happen."""
    ctx = s.ctx
    ctx.record(
        {
            "type": "intent",
            "host": s.host.name,
            "seq": seq,
            "step": step.id,
            "operator": operator(),
            "ops": ops_json(step.ops),
            "undo": ops_json(step.undo),
            "changes": [vars(c) for c in step.changes],
        }
    )
    wait = ctx.audit.playbook.netdata_wait_s if step.restarts_netdata else 0.0
    out = s.run_ops(step.ops, extra=wait)
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
    ctx.record(
        {
            "type": "result",
            "host": s.host.name,
            "seq": seq,
            "status": status,
            "error": error,
            "after": result.after,
        }
    )
    if status != APPLIED:
        result.status = FAILED
        result.error = error if status == FAILED else f"state changed since it was read: {error}"
        raise _StepError(result, wrote=status == FAILED)
    return result


def _wait_netdata_gone(s: HostSession, wait_s: float) -> Reading:
    """Poll until ebpf.plugin has exited (taking its kprobes and BPF programs with it)."""
    end = time.monotonic() + wait_s
    while True:
        reading = s.probe(0)
        if not any(c in EBPF_PLUGINS for c in reading.facts.processes.values()):
            return reading
        if time.monotonic() >= end:
            raise StepFailed(f"ebpf.plugin still running {wait_s:g} s after the restart")
        s.ctx.check_stop()
        s.ctx.stop.wait(1.0)


def remediate_on(s: HostSession) -> HostRemediation:
    """Lock, apply every needed step, verify, unlock; never raises for a host problem."""
    ctx, host = s.ctx, s.host
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
        release_quietly(s, owner)
    with contextlib.suppress(JournalFailed):  # the outcome record only; the result stands
        ctx.record(
            {
                "type": "host",
                "host": host.name,
                "status": rem.status,
                "failed": rem.failed,
                "verdict": rem.verdict.verdict if rem.verdict else None,
                "error": rem.result.error,
            }
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


def _remediate_locked(s: HostSession, rem: HostRemediation, lock_note: str | None) -> None:
    ctx = s.ctx
    window = ctx.audit.cpu_window
    before = s.probe(window)
    rem.result = before.result
    rem.cpu_before = before.result.cpu
    if ctx.verify_profile:
        rem.profile_before = s.profile(window or PROFILE_WINDOW_S)
    if lock_note:
        rem.result.error = lock_note
    done: list[JournaledStep] = []
    results: dict[int, StepResult] = {}
    current = before
    for step_id in _fix_ids(ctx):
        step: Step | None = None
        seq = 0
        try:
            ctx.check_stop()
            if done:
                current = s.probe(0)  # what the previous step left is what this one plans from
            step = _plan(s, step_id, current)
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
            restored = undo_all(s, done, results)
            rem.failed = True
            rem.result.error = f"{what}; earlier steps " + (
                "rolled back" if restored else "NOT all rolled back: run fleet rollback"
            )
            after = s.probe(0)
            rem.checks_after = after.checks
            rem.result.status = after.result.status
            rem.verdict = Verdict(NOT_MEASURED, "rolled back after a failed step")
            return
    _verify(s, rem, before, done)


def _verify(
    s: HostSession, rem: HostRemediation, before: Reading, done: list[JournaledStep]
) -> None:
    """The re-audit after the last step, and the CPU verdict before vs after."""
    ctx = s.ctx
    window = ctx.audit.cpu_window
    if not done:
        # Nothing was written: the before probe is the re-audit, and there is no change to
        # measure (a second sample would only cost the window again).
        after = before
        rem.verdict = Verdict(NOT_MEASURED, "nothing was changed")
    elif ctx.stop.is_set():
        # Every step is applied: the host is finished; only the CPU measure is given up.
        after = s.probe(0)
        rem.verdict = Verdict(NOT_MEASURED, f"{ctx.stop.why} after the last step")
    else:
        settle = ctx.settle_s if ctx.settle_s is not None else ctx.audit.playbook.settle_s
        ctx.stop.wait(settle)
        after = s.probe(0 if ctx.stop.is_set() else window)
        if ctx.stop.is_set():
            rem.verdict = Verdict(NOT_MEASURED, f"{ctx.stop.why} after the last step")
        elif ctx.verify_profile:
            rem.profile_after = s.profile(window or PROFILE_WINDOW_S)
    if ctx.verify_profile:
        rem.proof = (
            profile_proof(rem.profile_before, rem.profile_after, ctx.audit.playbook.profile)
            if rem.profile_after is not None
            else Proof(NOT_MEASURED, rem.verdict.reason if rem.verdict else "not profiled")
        )
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
    unproven = rem.proof is not None and rem.proof.verdict == NOT_PROVEN
    if still or rem.verdict.verdict == WORSE or after.result.status == ERROR or unproven:
        rem.failed = True
        why = (
            f"still failing: {', '.join(still)}"
            if still
            else (rem.proof.reason if unproven else rem.verdict.reason)
        )
        rem.result.error = "; ".join(x for x in (rem.result.error, why) if x)


# ---------------------------------------------------------------- rollback
def rollback_on(s: HostSession, run: JournaledRun) -> HostRemediation:
    """Undo the run's journaled steps on this host (last first), then re-audit."""
    host = s.host
    pending = run.pending(host.name)
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
        restored = undo_all(s, list(reversed(pending)), results)
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
        release_quietly(s, owner)
    return rem
