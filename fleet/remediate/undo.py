"""Undoing journaled steps, last first: each undo op expects the value its step wrote; a file
already back at its previous value counts as restored; someone else's later change is left."""

from __future__ import annotations

from dataclasses import replace

from fleet.config.inventory import Host
from fleet.remediate.context import StepFailed
from fleet.remediate.journal import JournaledStep
from fleet.remediate.results import FAILED, ROLLED_BACK, StepResult
from fleet.remediate.session import HostSession
from fleet.remote.apply import Op


def _undo_op(op: Op, host: Host) -> Op:
    """An undo op as it may run: a command comes from the inventory, never from the journal
    (a file on disk); a config file is restored without a new backup (journals before
    `restore` existed said `file`)."""
    if op.mode == "run":
        return replace(op, data=host.netdata_restart)
    if op.mode == "file":
        return replace(op, mode="restore")
    return op


def undo_step(s: HostSession, step: JournaledStep) -> str | None:
    """Restore one step's files; None when restored, else why not."""
    try:
        return _undo_step(s, step)
    except StepFailed as exc:  # a remote undo cut short (its deadline): not restored
        return str(exc)


def _undo_step(s: HostSession, step: JournaledStep) -> str | None:
    ops = [_undo_op(o, s.host) for o in step.undo]
    if not ops:
        return None
    # A restart may take as long as the step allows netdata to stop (its wait_s).
    wait = s.ctx.audit.playbook.netdata_wait_s
    out = s.run_ops(ops, extra=wait if any(o.mode == "run" for o in ops) else 0.0)
    if out.ok:
        return None
    problem = out.first_problem()
    if problem is None or problem.status != "changed":
        return problem.detail if problem else "remote undo was cut short"
    # Some op found neither what the step wrote: go op by op, accepting "already previous".
    forward = {o.path: o for o in step.ops if o.mode != "run"}
    for op in ops:
        out = s.run_ops([op], extra=wait if op.mode == "run" else 0.0)
        if out.ok:
            continue
        problem = out.first_problem()
        before = forward.get(op.path)
        if problem is not None and problem.status == "changed" and before is not None:
            same = "same" if before.mode in ("set", "file") else "same-lines"
            if s.run_ops([Op(same, op.path, before.expect, "-")]).ok:
                continue
            return f"{op.path}: changed by someone else since the run; left as it is"
        return problem.detail if problem else "remote undo was cut short"
    return None


def undo_all(s: HostSession, done: list[JournaledStep], results: dict[int, StepResult]) -> bool:
    """Undo `done` (last first), journaling each; True when every one was restored."""
    ok = True
    for jstep in reversed(done):
        why = undo_step(s, jstep)
        status = ROLLED_BACK if why is None else FAILED
        s.ctx.record(
            {"type": "undo", "host": s.host.name, "seq": jstep.seq, "status": status, "error": why}
        )
        if jstep.seq in results:
            results[jstep.seq].status = status
            if why:
                results[jstep.seq].error = why
        ok &= why is None
    return ok
