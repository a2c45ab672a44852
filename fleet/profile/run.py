"""`fleet profile` of one host and of a fleet: connect, one profile exec, its reading."""

from __future__ import annotations

import time

from fleet.audit.procs import run_elsewhere, runs_elsewhere
from fleet.audit.run import (
    AuditContext,
    HostWork,
    host_failed,
    open_connection,
    probe_host,
    unreadable,
    where_of,
)
from fleet.config.inventory import Host
from fleet.model import ERROR, UNREACHABLE, HostResult, host_status
from fleet.profile.checks import profile_findings
from fleet.profile.judge import judge_profile
from fleet.profile.result import HostProfile
from fleet.remote.probe import ProbeFormatError, new_nonce, parse_probe_output
from fleet.remote.profile import DEFAULT_FREQUENCY, profile_stdin
from fleet.remote.shell import shell_command
from fleet.transport.become import NEEDS_PASSWORD, Become, BecomeError, asked_for_password
from fleet.transport.fanout import ProgressFactory, run_hosts
from fleet.transport.ssh import Connection, Exec, SSHError, TransportError


def start_profile(
    conn: Connection, host: Host, ctx: AuditContext, deadline: float, frequency: int
) -> tuple[Exec, str]:
    """Start the profile exec (the audit runs it beside its probe, on the same connection).
    Raises BecomeError, TransportError."""
    nonce = new_nonce()
    stdin = profile_stdin(nonce, host.fleet_root, ctx.cpu_window, frequency)
    with ctx.slots:
        ex = conn.start(shell_command(deadline), stdin, deadline, Become.of(host))
    return ex, nonce


def finish_profile(
    conn: Connection, ex: Exec, nonce: str, host: Host, deadline: float, window: int
) -> HostProfile:
    """Collect a started profile and read it. Raises TransportError."""
    where = conn.endpoint
    res = conn.collect(ex, deadline)
    if asked_for_password(Become.of(host), res.rc, res.stderr):
        return HostProfile(host.name, where.address, where.port, ERROR, NEEDS_PASSWORD)
    try:
        out = parse_probe_output(res.stdout, res.stderr, nonce, host.fleet_root)
        prof = judge_profile(out, host.name, where.address, where.port, window)
    except (ProbeFormatError, ValueError) as exc:
        return HostProfile(host.name, where.address, where.port, ERROR, unreadable(exc, res))
    if prof.status == ERROR and res.rc == -1:
        prof.error = f"connection lost mid-output: {prof.error}"
    return prof


def profile_host(host: Host, ctx: AuditContext, frequency: int = DEFAULT_FREQUENCY) -> HostProfile:
    """Never raises for a host problem: unreachable and errors come back as profiles."""
    start = time.monotonic()
    deadline = ctx.deadline(start)
    try:
        conn = open_connection(host, ctx, deadline)
    except SSHError as exc:
        return HostProfile(host.name, *where_of(host, ctx), UNREACHABLE, str(exc))
    try:
        ex, nonce = start_profile(conn, host, ctx, deadline, frequency)
        prof = finish_profile(conn, ex, nonce, host, deadline, ctx.cpu_window)
    except (BecomeError, TransportError) as exc:
        prof = HostProfile(host.name, conn.endpoint.address, conn.endpoint.port, ERROR, str(exc))
    finally:
        conn.close()
    prof.frequency = frequency
    if prof.status == "ok":
        prof.findings = profile_findings(prof, ctx.playbook.profile)
    prof.duration_s = time.monotonic() - start
    return prof


def probe_beside_profile(frequency: int = DEFAULT_FREQUENCY) -> HostWork:
    """`fleet audit --profile`: over one connection, the profile starts sampling, the probe
    runs its CPU window meanwhile, and the profile's checks join the audit's."""

    def work(conn: Connection, host: Host, ctx: AuditContext, deadline: float) -> HostResult:
        where = conn.endpoint
        try:
            ex, nonce = start_profile(conn, host, ctx, deadline, frequency)
        except BecomeError as exc:
            return HostResult(host.name, where.address, where.port, ERROR, str(exc), 0.0)
        result, _facts = probe_host(conn, host, ctx, deadline)
        prof = finish_profile(conn, ex, nonce, host, deadline, ctx.cpu_window)
        prof.frequency = frequency
        result.profile = prof
        if result.status != ERROR or result.checks:
            result.checks.extend(profile_findings(prof, ctx.playbook.profile))
            result.status = host_status(result.checks, result.error)
        return result

    return work


def _failed(host: Host, exc: Exception) -> HostProfile:
    r = host_failed(host, exc)
    return HostProfile(host.name, r.address, r.port, ERROR, r.error)


def profile_fleet(
    hosts: list[Host],
    ctx: AuditContext,
    frequency: int = DEFAULT_FREQUENCY,
    progress: ProgressFactory | None = None,
) -> list[HostProfile]:
    """Profile every host at once (up to --max-open): the windows overlap, as the audit's.
    With --procs above 1 or --scheduler the hosts go to worker processes (run_elsewhere)."""
    if runs_elsewhere(ctx, len(hosts)):

        return run_elsewhere(
            hosts,
            ctx,
            lambda shard, wctx, pf: profile_fleet(shard, wctx, frequency, pf),
            lambda h, why: HostProfile(h.name, h.address, h.port, ERROR, why),
            lambda p: p.status != "ok",
            progress,
        )
    workers = max(ctx.forks, min(len(hosts), ctx.max_open))
    try:
        return run_hosts(
            hosts,
            lambda h: profile_host(h, ctx, frequency),
            workers=workers,
            progress=progress(len(hosts)) if progress else None,
            is_failure=lambda p: p.status != "ok",
            on_error=_failed,
        )
    finally:
        ctx.ssh.jumps.close()
