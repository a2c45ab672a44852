"""The fleet: each host's session opened over SSH, then a canary alone and batches for a
remediation (with a failure budget and the stop flag of a signal), a plain fan-out for a
plan or a rollback."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace

from fleet.audit.run import host_failed
from fleet.config.inventory import Host
from fleet.errors import UsageError
from fleet.model import COMPLIANT, SKIPPED, UNREACHABLE, HostResult, utc_now
from fleet.remediate.context import RemediateContext
from fleet.remediate.host import plan_on, remediate_on, rollback_on
from fleet.remediate.journal import Journal, JournaledRun, find_run
from fleet.remediate.results import HostRemediation, RemediationRun
from fleet.remediate.session import HostSession, connect_remote
from fleet.transport.fanout import ProgressFactory, run_hosts
from fleet.transport.ssh import SSHError

# The per-host part of a command, given the host's session.
OnHost = Callable[[HostSession], HostRemediation]


def on_host(host: Host, ctx: RemediateContext, fn: OnHost) -> HostRemediation:
    """`fn` over the host's one SSH connection; the host unreachable when it cannot open."""
    start = time.monotonic()
    try:
        session = HostSession(connect_remote(host, ctx), ctx)
    except SSHError as exc:
        res = HostResult(
            host.name, host.address, host.port, UNREACHABLE, str(exc), time.monotonic() - start
        )
        return HostRemediation(res, ctx.run_id, failed=True)
    try:
        rem = fn(session)
    finally:
        session.close()
    rem.result.duration_s = time.monotonic() - start
    return rem


def plan_host(host: Host, ctx: RemediateContext) -> HostRemediation:
    return on_host(host, ctx, plan_on)


def remediate_host(host: Host, ctx: RemediateContext) -> HostRemediation:
    if ctx.stop.is_set():
        return _skipped(host, ctx, f"not started: {ctx.stop.why}")
    return on_host(host, ctx, remediate_on)


def _failed(host: Host, ctx: RemediateContext, exc: Exception) -> HostRemediation:
    """A host whose remediation raised: failed, its journal (if any) left for rollback."""
    return HostRemediation(host_failed(host, exc), ctx.run_id, failed=True)


def _skipped(host: Host, ctx: RemediateContext, why: str) -> HostRemediation:
    res = HostResult(host.name, host.address, host.port, SKIPPED, why, 0.0)
    return HostRemediation(res, ctx.run_id, failed=True)


def plan_fleet(
    hosts: list[Host], ctx: RemediateContext, progress: ProgressFactory | None = None
) -> RemediationRun:
    started = utc_now()
    out = run_hosts(
        hosts,
        lambda h: plan_host(h, ctx),
        workers=ctx.audit.forks,
        progress=progress(len(hosts)) if progress else None,
        on_error=lambda h, exc: _failed(h, ctx, exc),
    )
    ctx.audit.ssh.jumps.close()  # the run's bastion connections (fleet/transport/jump.py)
    return RemediationRun(ctx.run_id, started, utc_now(), out)


def remediate_fleet(
    hosts: list[Host],
    ctx: RemediateContext,
    batch: int,
    max_fail: int,
    record: tuple[list[str], str],
    fn: Callable[[Host, RemediateContext], HostRemediation] = remediate_host,
) -> RemediationRun:
    """A canary host alone, then batches of `batch`; once more than `max_fail` hosts have
    failed over the whole run, no new host starts and the rest are reported skipped.

    The run's journal is started first (`record`: the command line and the playbook it
    names), before any host is contacted: UsageError when it cannot be."""
    argv, playbook = record
    journal = Journal.start(ctx.state_dir, ctx.run_id, argv, playbook)
    try:
        run = _rollout(hosts, replace(ctx, journal=journal), batch, max_fail, fn)
    finally:
        journal.close()
    run.journal = journal.path
    try:
        kept = find_run(ctx.state_dir, run.run_id, [])
        run.undo_pending = kept is not None and any(kept.pending(h.name) for h in hosts)
    except UsageError:  # a journal torn by a failed write: say how to undo, to be safe
        run.undo_pending = True
    return run


def _rollout(
    hosts: list[Host],
    ctx: RemediateContext,
    batch: int,
    max_fail: int,
    fn: Callable[[Host, RemediateContext], HostRemediation],
) -> RemediationRun:
    started = utc_now()
    results: dict[str, HostRemediation] = {}
    waves = [hosts[:1]] + [hosts[i : i + batch] for i in range(1, len(hosts), batch)]
    failed = 0
    note = None
    for wave in waves:
        if not wave:
            continue
        if ctx.stop.is_set():
            for h in wave:
                results[h.name] = _skipped(h, ctx, f"not started: {ctx.stop.why}")
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
    hosts: list[Host],
    ctx: RemediateContext,
    run_id: str | None,
    progress: ProgressFactory | None = None,
) -> RemediationRun | None:
    """Undo run `run_id` (None: the latest run that touched these hosts) from its journal;
    None when there is nothing to roll back on these hosts."""
    run = find_run(ctx.state_dir, run_id, [h.name for h in hosts])
    if run is None:
        return None
    journal = Journal(run.path)
    try:
        done = _rollback(hosts, replace(ctx, run_id=run.run_id, journal=journal), run, progress)
    finally:
        journal.close()
    done.journal = run.path
    return done


def _rollback(
    hosts: list[Host],
    ctx: RemediateContext,
    run: JournaledRun,
    progress: ProgressFactory | None,
) -> RemediationRun:
    started = utc_now()

    def one(h: Host) -> HostRemediation:
        if not run.pending(h.name):
            res = HostResult(h.name, h.address, h.port, COMPLIANT, "nothing to roll back", 0.0)
            return HostRemediation(res, run.run_id)
        return on_host(h, ctx, lambda s: rollback_on(s, run))

    out = run_hosts(
        hosts,
        one,
        workers=ctx.audit.forks,
        progress=progress(len(hosts)) if progress else None,
        on_error=lambda h, exc: _failed(h, ctx, exc),
    )
    ctx.audit.ssh.jumps.close()
    return RemediationRun(run.run_id, started, utc_now(), out)
