"""/proc/stat parsing and CPU utilisation between two samples (pure)."""

from __future__ import annotations

from dataclasses import dataclass

from fleet.model import CpuFigures, CpuShare


@dataclass(frozen=True)
class CpuTicks:
    """One `cpu`/`cpuN` line, USER_HZ ticks since boot (guest is already inside user)."""

    user: int = 0
    nice: int = 0
    system: int = 0
    idle: int = 0
    iowait: int = 0
    irq: int = 0
    softirq: int = 0
    steal: int = 0


def parse_proc_stat(text: str) -> dict[str, CpuTicks]:
    """Map `cpu` (aggregate) and `cpuN` to ticks. Old kernels print 4-9 columns: missing = 0."""
    out: dict[str, CpuTicks] = {}
    for line in text.splitlines():
        if not line.startswith("cpu"):
            continue
        name, *values = line.split()
        if len(values) < 4:
            raise ValueError(f"/proc/stat line too short: {line!r}")
        try:
            nums = [int(v) for v in values[:8]]
        except ValueError:
            raise ValueError(f"/proc/stat line not numeric: {line!r}") from None
        out[name] = CpuTicks(*nums)
    if not out:
        raise ValueError("/proc/stat has no cpu lines (file missing or unreadable)")
    return out


def _delta(a: CpuTicks, b: CpuTicks) -> tuple[dict[str, int], bool]:
    d = {}
    clamped = False
    for name in ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal"):
        v = getattr(b, name) - getattr(a, name)
        if v < 0:
            clamped, v = True, 0
        d[name] = v
    return d, clamped


def _share(cpu: int | None, d: dict[str, int]) -> CpuShare:
    user = d["user"] + d["nice"]
    system = d["system"] + d["irq"] + d["softirq"]
    busy = user + system + d["steal"]
    total = busy + d["idle"] + d["iowait"]
    if total == 0:
        return CpuShare(cpu, 0.0, 0.0, 0.0, 0)
    return CpuShare(
        cpu,
        round(100.0 * user / total, 2),
        round(100.0 * system / total, 2),
        round(100.0 * busy / total, 2),
        total,
    )


def cpu_between(
    first: dict[str, CpuTicks], second: dict[str, CpuTicks], cpus: frozenset[int] | None = None
) -> CpuFigures:
    """Utilisation between two samples. With `cpus`, only those CPUs count (e.g. fleet_cpus).

    Per-CPU lines are matched by number; a CPU missing from either sample (offline) is skipped.
    Without `cpus` the figures come from the per-CPU lines of online CPUs, so offline CPUs'
    frozen counters in the aggregate line do not dilute them.
    """
    per: list[CpuShare] = []
    totals = dict.fromkeys(
        ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal"), 0
    )
    clamped_any = False
    numbers = sorted(int(k[3:]) for k in second if k[3:].isdigit() and k in first)
    if cpus is not None:
        numbers = [n for n in numbers if n in cpus]
        if not numbers:
            raise ValueError("none of the CPUs in fleet_cpus is online in /proc/stat")
    if not numbers:
        # Kernels always print cpuN lines; fall back to the aggregate if a sample lacks them.
        if "cpu" not in first or "cpu" not in second:
            raise ValueError("/proc/stat samples have no common cpu lines")
        d, clamped_any = _delta(first["cpu"], second["cpu"])
        whole = _share(None, d)
        if whole.ticks == 0:
            raise ValueError("no CPU ticks elapsed between the two /proc/stat samples")
        return CpuFigures(
            whole.user_pct, whole.system_pct, whole.busy_pct, 0, whole.ticks, (), clamped_any
        )
    for n in numbers:
        d, clamped = _delta(first[f"cpu{n}"], second[f"cpu{n}"])
        clamped_any |= clamped
        per.append(_share(n, d))
        for k, v in d.items():
            totals[k] += v
    whole = _share(None, totals)
    if whole.ticks == 0:
        raise ValueError("no CPU ticks elapsed between the two /proc/stat samples")
    return CpuFigures(
        whole.user_pct,
        whole.system_pct,
        whole.busy_pct,
        len(numbers),
        whole.ticks,
        tuple(per),
        clamped_any,
    )
