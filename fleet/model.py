"""The model at the bottom of fleet: what a run produces and every later stage reads.

Result types (findings, host results, CPU figures, a run), the contract's status words, the
ids of the built-in checks and fixes, and time stamps. It imports nothing from fleet: the
renderers, history and drift read these types without loading SSH or the audit.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

SEVERITIES = ("critical", "high", "medium", "low", "info")

# A check's status (contract). ERROR is also a host status.
PASS, FAIL, WARN, SKIP, ERROR = "pass", "fail", "warn", "skip", "error"
CHECK_STATUSES = (PASS, FAIL, WARN, SKIP, ERROR)
# A host's status (contract); SKIPPED: a remediation that never started on the host.
COMPLIANT, NON_COMPLIANT, UNREACHABLE, SKIPPED = (
    "compliant",
    "non-compliant",
    "unreachable",
    "skipped",
)
HOST_STATUSES = (COMPLIANT, NON_COMPLIANT, ERROR, UNREACHABLE)
# A report's view: a failure under a waiver in effect, a host whose failures all are.
WAIVED = "waived"

# The built-in checks (contract ids, docs/checks.md). fleet.audit.checks registers one function for
# each; a playbook may name only these (or define `type: file` checks of its own).
CHECK_IDS = (
    "tracing.set_event",
    "tracing.probe_events",
    "kprobes.registered",
    "netdata.ebpf",
    "netdata.version",
    "bpf.tracing_programs",
    "cpu.system",
)
# Checks judged from a profile (fleet profile, audit --profile, report --profile); the
# playbook's `profile:` holds their limits (fleet.profile.checks).
PROFILE_CHECK_IDS = ("profile.probe_share", "profile.lock_spin")
# The remediation steps, in the order the kernel requires, with what each does. fleet.remediate.plan
# registers one planner for each; a playbook lists them in this order.
FIXES = {
    "netdata.ebpf_off": "netdata eBPF plugin off ([plugins] ebpf = no), netdata restarted",
    "tracing.probe_events_off": "enabled probe events disabled (definitions kept)",
    "tracing.set_event_clear": "tracepoint events cleared from set_event",
    "kprobes.disarm": "kprobes globally disarmed (kprobes/enabled = 0)",
}
FIX_IDS = tuple(FIXES)


class Registry(Generic[F]):
    """One function per id of a fixed catalogue (CHECK_IDS, FIX_IDS): registering any other
    id fails at import, so the catalogue and the functions cannot drift apart."""

    def __init__(self, ids: tuple[str, ...], what: str) -> None:
        self.ids = ids
        self.what = what
        self.by_id: dict[str, F] = {}

    def register(self, id_: str) -> Callable[[F], F]:
        if id_ not in self.ids:
            raise ValueError(f"{id_} is not a {self.what} id of fleet.model")

        def add(fn: F) -> F:
            self.by_id[id_] = fn
            return fn

        return add

    def __getitem__(self, id_: str) -> F:
        return self.by_id[id_]


# cpu.system's default threshold (the playbook's `threshold_pct`): system CPU above it fails.
CPU_THRESHOLD_PCT = 25.0


@dataclass(frozen=True)
class CpuShare:
    cpu: int | None
    user_pct: float
    system_pct: float
    busy_pct: float
    ticks: int


@dataclass(frozen=True)
class CpuFigures:
    """Percentages of capacity over the window (contract: CPU figures)."""

    user_pct: float
    system_pct: float
    busy_pct: float
    cpus: int
    ticks: int
    per_cpu: tuple[CpuShare, ...]
    clamped: bool  # a counter went backwards (CPU hotplug, iowait): flagged, clamped to 0

    def to_json(self) -> dict[str, object]:
        return {
            "user_pct": self.user_pct,
            "system_pct": self.system_pct,
            "busy_pct": self.busy_pct,
            "cpus": self.cpus,
            "per_cpu": [{k: v for k, v in asdict(s).items() if k != "ticks"} for s in self.per_cpu],
        }


@dataclass(frozen=True)
class Finding:
    id: str
    status: str
    severity: str
    summary: str
    evidence: dict[str, Any] = field(default_factory=dict)
    fix: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "status": self.status,
            "severity": self.severity,
            "summary": self.summary,
            "evidence": self.evidence,
            "fix": self.fix,
        }


@dataclass
class HostResult:
    """One host's audit: reached or not, its findings, its CPU figures."""

    name: str
    address: str
    port: int
    status: str
    error: str | None
    duration_s: float
    checks: list[Finding] = field(default_factory=list)
    cpu: CpuFigures | None = None
    kernel: str | None = None
    # --profile: the host's fleet.profile.result.HostProfile (typed loosely: the model is
    # the bottom layer and imports nothing of fleet).
    profile: Any = None

    @property
    def failing(self) -> list[str]:
        return [f.id for f in self.checks if f.status == FAIL]

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "address": self.address,
            "port": self.port,
            "status": self.status,
            "error": self.error,
            "duration_s": round(self.duration_s, 3),
            "checks": [f.to_json() for f in self.checks],
            "cpu": self.cpu.to_json() if self.cpu else None,
        } | ({"profile": self.profile.to_json(stacks=5)} if self.profile is not None else {})


def host_status(findings: list[Finding], probe_error: str | None = None) -> str:
    """Contract: any fail -> non-compliant; else any error (or probe failure) -> error."""
    if any(f.status == FAIL for f in findings):
        return NON_COMPLIANT
    if probe_error or any(f.status == ERROR for f in findings):
        return ERROR
    return COMPLIANT


def exit_code(statuses: list[str]) -> int:
    """Contract: bit 1 some host non-compliant; bit 4 some host unreachable or in error."""
    code = 0
    if NON_COMPLIANT in statuses:
        code |= 1
    if UNREACHABLE in statuses or ERROR in statuses:
        code |= 4
    return code


@dataclass
class AuditRun:
    started_at: str
    finished_at: str
    hosts: list[HostResult]


def utc_now() -> str:
    """The contract's time stamp: `2026-11-26T06:00:44Z`."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str) -> datetime:
    """The contract's `2026-11-26T06:00:44Z`."""
    return datetime.fromisoformat(text.replace("Z", "+00:00"))
