"""What every report format renders (pure): the run, its drift, its waivers, CPU history,
and the report's view of each host and check once waivers are applied."""

from __future__ import annotations

from dataclasses import dataclass, field

from fleet.model import (
    COMPLIANT,
    ERROR,
    FAIL,
    NON_COMPLIANT,
    PASS,
    SKIP,
    UNREACHABLE,
    WAIVED,
    WARN,
    AuditRun,
    Finding,
    HostResult,
)
from fleet.model import exit_code as contract_exit_code
from fleet.report.drift import Drift
from fleet.report.waivers import Mark, WaiverOutcome

# Host states of a report, worst first. `waived`: reached, no error, and every failing check
# is covered by a waiver in effect.
HOST_STATES = (NON_COMPLIANT, ERROR, UNREACHABLE, WAIVED, COMPLIANT)
CHECK_STATES = (FAIL, ERROR, WARN, WAIVED, SKIP, PASS)


@dataclass(frozen=True)
class ReportData:
    run: AuditRun
    playbook: str
    drift: Drift
    waivers: WaiverOutcome = field(default_factory=WaiverOutcome)
    # host -> [(run started_at, system CPU % or None)], oldest first, this run included
    cpu_history: dict[str, list[tuple[str, float | None]]] = field(default_factory=dict)
    run_id: int | None = None
    source: str = "audit"  # "audit", or the --from file

    def mark(self, host: HostResult, f: Finding) -> Mark | None:
        return self.waivers.marks.get((host.name, f.id))

    def check_state(self, host: HostResult, f: Finding) -> str:
        """The check's status, or `waived` for a failure under a waiver still in effect."""
        m = self.mark(host, f)
        return WAIVED if m is not None and not m.expired else f.status

    def waived(self, host: HostResult) -> list[Finding]:
        return [f for f in host.checks if self.check_state(host, f) == WAIVED]

    def failing(self, host: HostResult) -> list[Finding]:
        """Failures no waiver covers (an expired waiver covers nothing)."""
        return [f for f in host.checks if self.check_state(host, f) == FAIL]

    def host_state(self, host: HostResult) -> str:
        if host.status == UNREACHABLE:
            return UNREACHABLE
        if self.failing(host):
            return NON_COMPLIANT
        if host.error or any(f.status == ERROR for f in host.checks):
            return ERROR
        if self.waived(host):
            return WAIVED
        return COMPLIANT

    def host_counts(self) -> dict[str, int]:
        states = [self.host_state(h) for h in self.run.hosts]
        return {"hosts": len(states), **{s: states.count(s) for s in HOST_STATES}}

    def check_counts(self) -> dict[str, int]:
        states = [self.check_state(h, f) for h in self.run.hosts for f in h.checks]
        return {s: states.count(s) for s in CHECK_STATES}

    def exit_code(self) -> int:
        """The audit's exit code over the report's host states: a waived host sets no bit;
        a failure whose waiver expired is a failure (bit 1), as if it had no waiver."""
        return contract_exit_code([self.host_state(h) for h in self.run.hosts])

    def summary_line(self) -> str:
        c = self.host_counts()
        parts = [f"{c[s]} {s}" for s in (COMPLIANT, NON_COMPLIANT, WAIVED, ERROR, UNREACHABLE)]
        return f"{c['hosts']} host(s): " + ", ".join(parts)
