"""Does a remediation prove the cause? The profile before and after (pure).

The CPU verdict says the host got cheaper; the proof says why: the samples that sat in
kprobe and BPF machinery are gone. `proven` needs perf samples after the fix with no kprobe
or BPF frame left and the hooks' share at or under the playbook's line; a profile that
could not measure it says `not-measured`, never `proven`."""

from __future__ import annotations

from dataclasses import dataclass

from fleet.config.playbook import ProfileLimits
from fleet.profile.result import HostProfile

PROVEN, NOT_PROVEN, NOT_MEASURED = "proven", "not-proven", "not-measured"


@dataclass(frozen=True)
class Proof:
    verdict: str
    reason: str


def _share(p: HostProfile | None) -> str:
    if p is None or not p.shares or not p.samples:
        return "-"
    return f"{p.shares.hooks_pct:.1f}%"


def profile_proof(
    before: HostProfile | None, after: HostProfile | None, limits: ProfileLimits
) -> Proof:
    if after is None or after.status != "ok":
        why = after.error if after is not None else "no profile after the fix"
        return Proof(NOT_MEASURED, f"profile after the fix failed: {why}")
    if not after.shares or not after.samples:
        return Proof(
            NOT_MEASURED, f"no perf samples after the fix ({after.unavailable.get('perf')})"
        )
    change = f"kprobe/BPF share {_share(before)} -> {_share(after)} of samples"
    left = after.shares.in_hooks
    if left:
        hooked = ", ".join(f for f, _ in after.shares.hooked.most_common(3)) or "unattributed"
        return Proof(NOT_PROVEN, f"{change}; {left} samples still in probes ({hooked})")
    if after.shares.hooks_pct > limits.probe_share_pct:  # cannot happen without frames left
        return Proof(NOT_PROVEN, change)
    firing = [h.name for h in after.hooks if h.hits_per_s > 0]
    gone = "no kprobe or BPF frame remains"
    if firing:
        return Proof(
            PROVEN, f"{change}; {gone} (kprobes still counting hits: {', '.join(firing[:3])})"
        )
    return Proof(PROVEN, f"{change}; {gone}")
