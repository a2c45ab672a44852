"""What a remediation, plan or rollback produced: per step, per host, per run (pure data),
and the contract's exit codes for them. Renderers read these without loading SSH."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fleet.model import ERROR, NON_COMPLIANT, UNREACHABLE, CpuFigures, Finding, HostResult
from fleet.remediate.verdict import Verdict

# Step statuses (contract): planned / applied / skipped / failed / rolled-back.
PLANNED, APPLIED, FAILED, ROLLED_BACK = "planned", "applied", "failed", "rolled-back"


@dataclass
class StepResult:
    id: str
    status: str
    before: dict[str, str] = field(default_factory=dict)
    after: dict[str, str] = field(default_factory=dict)
    error: str | None = None
    diff: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "id": self.id,
            "status": self.status,
            "before": self.before,
            "after": self.after,
        }
        if self.error:
            doc["error"] = self.error
        return doc


@dataclass
class HostRemediation:
    """One host's remediation (or plan, or rollback): the audit result it started from and
    what happened to it."""

    result: HostResult
    run_id: str
    steps: list[StepResult] = field(default_factory=list)
    cpu_before: CpuFigures | None = None
    cpu_after: CpuFigures | None = None
    verdict: Verdict | None = None
    checks_after: list[Finding] = field(default_factory=list)
    failed: bool = False
    # --verify profile: the host's profile before and after, and what they prove
    # (fleet.profile.result.HostProfile, fleet.profile.proof.Proof).
    profile_before: Any = None
    profile_after: Any = None
    proof: Any = None

    @property
    def name(self) -> str:
        return self.result.name

    @property
    def status(self) -> str:
        return self.result.status

    def to_json(self) -> dict[str, Any]:
        doc = self.result.to_json()
        doc.update(
            {
                "run_id": self.run_id,
                "steps": [s.to_json() for s in self.steps],
                "cpu_before": self.cpu_before.to_json() if self.cpu_before else None,
                "cpu_after": self.cpu_after.to_json() if self.cpu_after else None,
                "verdict": self.verdict.verdict if self.verdict else None,
                "verdict_reason": self.verdict.reason if self.verdict else None,
                "checks_after": [f.to_json() for f in self.checks_after],
                "failed": self.failed,
            }
        )
        if self.proof is not None:
            doc["proof"] = self.proof.verdict
            doc["proof_reason"] = self.proof.reason
            for key in ("profile_before", "profile_after"):
                prof = getattr(self, key)
                doc[key] = prof.to_json(stacks=5) if prof is not None else None
        return doc


@dataclass
class RemediationRun:
    run_id: str
    started_at: str
    finished_at: str
    hosts: list[HostRemediation]
    budget_note: str | None = None
    journal: Path | None = None  # the run's journal (a remediation or rollback)
    # The journal still holds writes of this run not undone: `fleet rollback` has work.
    undo_pending: bool = False


def rollback_exit_code(hosts: list[HostRemediation]) -> int:
    """Contract: 0 when every host was fully restored (whatever its compliance then); bit 1
    some host not fully restored; bit 4 unreachable or error."""
    code = 0
    for h in hosts:
        if h.status in (UNREACHABLE, ERROR):
            code |= 4
        elif h.failed:
            code |= 1
    return code


def remediation_exit_code(hosts: list[HostRemediation]) -> int:
    """Contract: bit 1 non-compliant / failed verification / not restored; bit 4 unreachable
    or error."""
    code = 0
    for h in hosts:
        if h.status in (UNREACHABLE, ERROR):
            code |= 4
        if h.failed and h.status not in (UNREACHABLE, ERROR):
            code |= 1
        if h.status == NON_COMPLIANT:
            code |= 1
    return code
