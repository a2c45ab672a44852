"""One host's profile: where its CPU went over the window, and from which source (data)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from fleet.model import ERROR, UNREACHABLE, CpuFigures, Finding, host_status
from fleet.profile.counters import HookRate, ProgramUse, RingRate
from fleet.profile.stacks import KINDS, StackShares

# Sources, best first (the order): perf samples, BPF run time, hook counters.
PERF, BPF_STATS, KPROBE_PROFILE, RING_BUFFER = "perf", "bpf_stats", "kprobe_profile", "ring_buffer"


@dataclass
class HostProfile:
    host: str
    address: str
    port: int
    status: str  # ok | error | unreachable
    error: str | None = None
    window_s: float = 0.0
    frequency: int = 0
    sources: list[str] = field(default_factory=list)
    # why a source is missing, e.g. {"perf": "not installed"}
    unavailable: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    cpu: CpuFigures | None = None
    shares: StackShares | None = None
    folded: Counter[str] = field(default_factory=Counter)
    programs: list[ProgramUse] = field(default_factory=list)
    hooks: list[HookRate] = field(default_factory=list)
    ring: RingRate | None = None
    bpf_stats: str | None = None  # already-on | enabled-by-fleet | off-unwritable | unavailable
    findings: list[Finding] = field(default_factory=list)  # fleet.profile.checks
    cost_cpu_s: float | None = None  # CPU the profile itself used on the host (`times`)
    duration_s: float = 0.0

    @property
    def verdict(self) -> str:
        """The host's status as the audit names it (compliant, non_compliant, ...)."""
        if self.status == UNREACHABLE:
            return UNREACHABLE
        if self.status != "ok":
            return ERROR
        return host_status(self.findings)

    @property
    def samples(self) -> int:
        return self.shares.samples if self.shares else 0

    def pct(self, kind: str) -> float | None:
        """Share of perf samples in `kind` machinery; None without perf samples."""
        return self.shares.pct(kind) if self.shares and self.shares.samples else None

    @property
    def bpf_cpu_pct(self) -> float | None:
        """All BPF programs' run time over the window, as % of the host (BPF stats)."""
        if BPF_STATS not in self.sources:
            return None
        return round(sum(p.cpu_pct for p in self.programs), 3)

    def top_hooked(self) -> str | None:
        """The hooked function most samples were charged to; else the busiest probe event."""
        if self.shares and self.shares.hooked:
            return self.shares.hooked.most_common(1)[0][0]
        busy = [h for h in self.hooks if h.hits_per_s > 0]
        return busy[0].name if busy else None

    def to_json(self, stacks: int = 20) -> dict[str, Any]:
        sh = self.shares
        return {
            "host": self.host,
            "address": self.address,
            "port": self.port,
            "status": self.verdict,
            "error": self.error,
            "checks": [f.to_json() for f in self.findings],
            "window_s": self.window_s,
            "frequency_hz": self.frequency,
            "sources": self.sources,
            "unavailable": self.unavailable,
            "notes": self.notes,
            "bpf_stats": self.bpf_stats,
            "cpu": self.cpu.to_json() if self.cpu else None,
            "samples": self.samples,
            "shares_pct": {k: self.pct(k) for k in KINDS},
            "lock_under_probe_samples": sh.lock_under_probe if sh else 0,
            "hooked": [{"function": f, "samples": n} for f, n in sh.hooked.most_common()]
            if sh
            else [],
            "top_stacks": [{"stack": s, "samples": n} for s, n in self.folded.most_common(stacks)],
            "bpf_programs": [p.to_json() for p in self.programs],
            "bpf_cpu_pct": self.bpf_cpu_pct,
            "kprobe_hits": [h.to_json() for h in self.hooks],
            "ring_buffer_events_per_s": (
                {
                    "total": self.ring.total,
                    "per_cpu": {str(c): v for c, v in self.ring.per_cpu.items()},
                }
                if self.ring
                else None
            ),
            "cost_cpu_s": self.cost_cpu_s,
            "duration_s": round(self.duration_s, 3),
        }
