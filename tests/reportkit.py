"""Small builders of audit results for the report's unit tests."""

from __future__ import annotations

from datetime import date

from fleet.model import UNREACHABLE, AuditRun, CpuFigures, Finding, HostResult, host_status
from fleet.report.data import ReportData
from fleet.report.drift import Drift, Past, compute_drift
from fleet.report.waivers import Waiver, apply_waivers

CHECKS = ("tracing.set_event", "kprobes.registered", "netdata.ebpf", "cpu.system")


def host(
    name: str,
    failing: tuple[str, ...] = (),
    errors: tuple[str, ...] = (),
    warns: tuple[str, ...] = (),
    system_pct: float | None = 4.0,
    unreachable: str | None = None,
) -> HostResult:
    """A host with a check per CHECKS (plus any named): the named ones fail/err/warn."""
    if unreachable:
        return HostResult(name, "192.0.2.1", 22, UNREACHABLE, unreachable, 1.0)
    checks = []
    for cid in dict.fromkeys((*CHECKS, *failing, *errors, *warns)):
        status = (
            "fail"
            if cid in failing
            else "error"
            if cid in errors
            else "warn"
            if cid in warns
            else "pass"
        )
        fix = "echo 0 > /sys/kernel/debug/kprobes/enabled" if status in ("fail", "warn") else None
        checks.append(
            Finding(cid, status, "high", f"{cid} is {status}", {"seen": [cid, status]}, fix)
        )
    cpu = (
        CpuFigures(20.0, system_pct, 20.0 + system_pct, 8, 800, (), False)
        if system_pct is not None
        else None
    )
    result = HostResult(name, "192.0.2.1", 22, "compliant", None, 0.5, checks, cpu)
    result.status = host_status(checks)
    return result


def run(hosts: list[HostResult], started: str = "2026-11-26T06:00:00Z") -> AuditRun:
    return AuditRun(started, started.replace(":00Z", ":09Z"), hosts)


def waiver(
    host: str = "*",
    check: str = "netdata.ebpf",
    expires: date = date(2099, 1, 1),
    line: int = 2,
) -> Waiver:
    return Waiver(host, check, "vendor fix pending", "ops@example.com", expires, f"w.yml:{line}")


def report_data(
    hosts: list[HostResult],
    waivers: list[Waiver] | None = None,
    drift: Drift | None = None,
    today: date = date(2026, 11, 26),
) -> ReportData:
    r = run(hosts)
    outcome = apply_waivers(hosts, waivers or [], today)
    if drift is None:
        drift, _ = compute_drift(hosts, r.started_at, Past(), outcome.waived)
    return ReportData(r, "playbooks/kernel-tracing.yml", drift, outcome, {}, 1)
