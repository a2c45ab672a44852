"""The profile's checks: is CPU going to probes and BPF, is it spinning on locks (pure)."""

from __future__ import annotations

from typing import Any

from fleet.config.playbook import ProfileLimits
from fleet.model import ERROR, FAIL, PASS, SKIP, WARN, Finding
from fleet.profile.result import HostProfile

_FIX_PROBES = (
    "fleet remediate --host <host> --apply   # netdata eBPF off, probes and events cleared\n"
    "# by hand, live: echo 0 > /sys/kernel/debug/kprobes/enabled"
)
_FIX_LOCKS = "fleet profile --host <host> -v   # which stacks spin, and under which hook"


def _evidence(p: HostProfile) -> dict[str, Any]:
    return {
        "sources": p.sources,
        "samples": p.samples,
        "window_s": p.window_s,
    }


def check_probe_share(p: HostProfile, limits: ProfileLimits) -> Finding:
    cid, sev = "profile.probe_share", "high"
    if p.status != "ok":
        return Finding(cid, ERROR, sev, f"no profile: {p.error}")
    limit = limits.probe_share_pct
    ev = _evidence(p) | {"limit_pct": limit}
    if p.shares and p.shares.samples:
        share = p.shares.hooks_pct
        ev |= {"share_pct": share, "hooked": dict(p.shares.hooked.most_common(5))}
        where = f" (top: {p.top_hooked()})" if p.top_hooked() else ""
        text = f"{share:.1f}% of {p.samples} samples in kprobe/BPF machinery{where}"
        if share > limit:
            return Finding(cid, FAIL, sev, f"{text}, limit {limit:g}%", ev, _FIX_PROBES)
        return Finding(cid, PASS, sev, text, ev)
    if p.bpf_cpu_pct is not None:
        ev |= {"bpf_cpu_pct": p.bpf_cpu_pct, "perf": p.unavailable.get("perf")}
        text = f"BPF programs ran {p.bpf_cpu_pct:.2f}% of the host's CPU (no perf samples)"
        if p.bpf_cpu_pct > limit:
            return Finding(cid, FAIL, sev, f"{text}, limit {limit:g}%", ev, _FIX_PROBES)
        firing = [h for h in p.hooks if h.hits_per_s > 0]
        if firing:
            # kprobe_profile counts hits, not time: firing probes with no CPU measure of
            # their own are not a pass.
            ev["kprobe_hits_per_s"] = {h.name: h.hits_per_s for h in firing[:5]}
            return Finding(
                cid, WARN, sev, f"{text}; {len(firing)} kprobe(s) firing", ev, _FIX_PROBES
            )
        return Finding(cid, PASS, sev, text, ev)
    firing = [h for h in p.hooks if h.hits_per_s > 0]
    if firing:
        ev["kprobe_hits_per_s"] = {h.name: h.hits_per_s for h in firing[:5]}
        top = firing[0]
        return Finding(
            cid,
            WARN,
            sev,
            f"{len(firing)} kprobe(s) firing ({top.name} {top.hits_per_s:.0f}/s); "
            "no perf or BPF statistics to measure their cost",
            ev,
            _FIX_PROBES,
        )
    why = "; ".join(f"{k}: {v}" for k, v in p.unavailable.items())
    return Finding(cid, SKIP, sev, f"nothing measured the probes' cost ({why})", ev)


def check_lock_spin(p: HostProfile, limits: ProfileLimits) -> Finding:
    cid, sev = "profile.lock_spin", "medium"
    if p.status != "ok":
        return Finding(cid, ERROR, sev, f"no profile: {p.error}")
    if not (p.shares and p.shares.samples):
        return Finding(
            cid, SKIP, sev, f"no perf samples ({p.unavailable.get('perf', 'none')})", _evidence(p)
        )
    limit = limits.lock_spin_pct
    share = p.shares.pct("lock")
    under = round(100.0 * p.shares.lock_under_probe / p.shares.samples, 2)
    ev = _evidence(p) | {"share_pct": share, "under_probes_pct": under, "limit_pct": limit}
    text = f"{share:.1f}% of {p.samples} samples spinning on locks ({under:.1f}% under probes)"
    if share > limit:
        return Finding(cid, FAIL, sev, f"{text}, limit {limit:g}%", ev, _FIX_LOCKS)
    return Finding(cid, PASS, sev, text, ev)


def profile_findings(p: HostProfile, limits: ProfileLimits) -> list[Finding]:
    return [check_probe_share(p, limits), check_lock_spin(p, limits)]
