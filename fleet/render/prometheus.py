"""`fleet report --format prometheus`: text exposition for node_exporter's textfile collector.

No sample timestamps (the collector refuses them); HELP and TYPE lines are constants, so every
file fleet writes agrees on them (node_exporter fails the scrape when two files disagree).
Statuses are state sets: one series per possible status, 1 for the current one, so a status
change never leaves a stale series behind and `== 1` alerts work.
"""

from __future__ import annotations

from collections.abc import Iterable

from fleet.model import UNREACHABLE, parse_time
from fleet.report.data import CHECK_STATES, HOST_STATES, ReportData

HELP = {
    "fleet_check_status": "Result of a check on a host in the last fleet report: 1 for the "
    "status in the status label, 0 for the others (waived: a failure under a waiver in effect).",
    "fleet_host_up": "Whether the last fleet report reached the host over SSH (1) or not (0).",
    "fleet_host_status": "Status of a host in the last fleet report: 1 for the status in the "
    "status label, 0 for the others.",
    "fleet_host_cpu_system_ratio": "System CPU (system+irq+softirq) of the host over the "
    "audit's CPU window in the last fleet report, as a ratio of capacity (0 to 1).",
    "fleet_last_run_timestamp_seconds": "When the audit of the last fleet report finished, "
    "in seconds since the Unix epoch.",
    "fleet_hosts": "Hosts in the last fleet report, by status.",
    "fleet_checks": "Host checks in the last fleet report, by status.",
    "fleet_drift": "Changes since the previous fleet report, by kind.",
    "fleet_waivers": "Waivers in the waiver file of the last fleet report, by state.",
    "fleet_host_profile_samples": "perf samples of the host's profile in the last fleet "
    "report (fleet report --profile).",
    "fleet_host_profile_share_ratio": "Share of the host's perf samples in kprobe, BPF, "
    "tracing or spin-lock frames (kind label; hooks: kprobe or BPF, counted once; lock: "
    "spinning at the leaf), 0 to 1.",
    "fleet_bpf_program_cpu_ratio": "CPU of one BPF program over the profile window, as a "
    "ratio of the host's capacity (all CPUs), from kernel.bpf_stats run time.",
}


def escape(value: str) -> str:
    """A label value: backslash, double quote and newline escaped."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(labels: dict[str, str]) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{escape(v)}"' for k, v in labels.items()) + "}"


def _family(name: str, samples: Iterable[tuple[dict[str, str], float]]) -> list[str]:
    lines = [f"# HELP {name} {HELP[name]}", f"# TYPE {name} gauge"]
    for labels, value in samples:
        text = (
            repr(float(value))
            if isinstance(value, float) and not value.is_integer()
            else (str(int(value)))
        )
        lines.append(f"{name}{_labels(labels)} {text}")
    return lines


def render_prometheus(data: ReportData) -> str:
    run = data.run
    checks = []
    host_status = []
    up = []
    cpu = []
    for h in run.hosts:
        up.append(({"host": h.name}, 0 if h.status == UNREACHABLE else 1))
        state = data.host_state(h)
        host_status += [({"host": h.name, "status": s}, int(s == state)) for s in HOST_STATES]
        if h.cpu is not None:
            cpu.append(({"host": h.name}, round(h.cpu.system_pct / 100, 6)))
        for f in h.checks:
            current = data.check_state(h, f)
            checks += [
                (
                    {"host": h.name, "check": f.id, "severity": f.severity, "status": s},
                    int(s == current),
                )
                for s in CHECK_STATES
            ]
    hosts = data.host_counts()
    check_counts = data.check_counts()
    drift = data.drift
    drift_counts = {
        "new_failures": len(drift.new_failures),
        "fixed": len(drift.fixed),
        "still_failing": len(drift.still_failing),
        "became_unreachable": len(drift.became_unreachable),
        "still_unreachable": len(drift.still_unreachable),
        "flapping": len(drift.flapping),
    }
    samples, shares, programs = [], [], []
    for h in run.hosts:
        p = h.profile
        if p is None or p.status != "ok":
            continue
        if p.samples:
            samples.append(({"host": h.name}, p.samples))
            shares += [
                ({"host": h.name, "kind": k}, round(p.shares.pct(k) / 100, 6))
                for k in ("probe", "bpf", "tracing", "lock")
            ]
            shares.append(({"host": h.name, "kind": "hooks"}, round(p.shares.hooks_pct / 100, 6)))
        programs += [
            (
                {"host": h.name, "id": str(u.id), "name": u.name, "type": u.type},
                round(u.cpu_pct / 100, 6),
            )
            for u in p.programs
        ]
    uses = data.waivers.uses
    waivers = {"active": sum(not u.expired for u in uses), "expired": sum(u.expired for u in uses)}
    lines: list[str] = []
    lines += _family("fleet_check_status", checks)
    lines += _family("fleet_host_up", up)
    lines += _family("fleet_host_status", host_status)
    lines += _family("fleet_host_cpu_system_ratio", cpu)
    lines += _family(
        "fleet_last_run_timestamp_seconds",
        [({}, float(int(parse_time(run.finished_at).timestamp())))],
    )
    lines += _family("fleet_hosts", [({"status": s}, hosts[s]) for s in HOST_STATES])
    lines += _family("fleet_checks", [({"status": s}, check_counts[s]) for s in CHECK_STATES])
    lines += _family("fleet_drift", [({"kind": k}, v) for k, v in drift_counts.items()])
    lines += _family("fleet_waivers", [({"state": k}, v) for k, v in waivers.items()])
    # Without --profile these families have no samples (their HELP and TYPE stay constant).
    lines += _family("fleet_host_profile_samples", samples)
    lines += _family("fleet_host_profile_share_ratio", shares)
    lines += _family("fleet_bpf_program_cpu_ratio", programs)
    return "\n".join(lines) + "\n"
