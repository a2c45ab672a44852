"""Findings and host results: what checks produce and renderers consume (contract names)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fleet.cpu import CpuFigures

SEVERITIES = ("critical", "high", "medium", "low", "info")

COMPLIANT = "compliant"
NON_COMPLIANT = "non-compliant"
ERROR = "error"
UNREACHABLE = "unreachable"


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
    # The facts the checks were judged from (a remediation plans from them); not in JSON.
    facts: Any = field(default=None, repr=False, compare=False)

    @property
    def failing(self) -> list[str]:
        return [f.id for f in self.checks if f.status == "fail"]

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
        }


def host_status(findings: list[Finding], probe_error: str | None = None) -> str:
    """Contract: any fail -> non-compliant; else any error (or probe failure) -> error."""
    if any(f.status == "fail" for f in findings):
        return NON_COMPLIANT
    if probe_error or any(f.status == "error" for f in findings):
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
