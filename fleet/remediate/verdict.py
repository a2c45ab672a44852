"""Did the fix help? The CPU verdict from per-second samples before and after (pure).

One pair of samples cannot tell a change from noise: under emulation single 10 s samples of
one unchanged state ranged 8-55% system. So each side is a series of one-second intervals,
and a change counts only when the means differ by more than both the playbook's minimum and
twice the standard error of their difference.
"""

from __future__ import annotations

import itertools
import math
import statistics
from dataclasses import dataclass

from fleet.audit.cpu import cpu_between, parse_proc_stat
from fleet.model import CpuFigures

USER_HZ = 100  # the unit of /proc/stat on every Linux ABI (sysconf(_SC_CLK_TCK))
# An interval with fewer ticks than this share of the expected ones lost its clock
# (an emulated or heavily stolen CPU): its split cannot be trusted.
MIN_TICK_SHARE = 0.5

IMPROVED = "improved"
UNCHANGED = "unchanged"
WORSE = "worse"
NOT_MEASURED = "not-measured"


def intervals(samples: list[str], cpus: frozenset[int] | None = None) -> list[CpuFigures]:
    """CPU figures of each consecutive pair of /proc/stat samples (a second apart)."""
    parsed = [parse_proc_stat(s) for s in samples]
    out = []
    for a, b in itertools.pairwise(parsed):
        try:
            out.append(cpu_between(a, b, cpus))
        except ValueError:
            continue
    return out


@dataclass(frozen=True)
class Verdict:
    verdict: str
    reason: str
    before_mean: float | None = None
    after_mean: float | None = None
    margin: float | None = None


def _usable(series: list[CpuFigures]) -> tuple[list[float], str | None]:
    if len(series) < 2:
        return [], f"{len(series)} one-second interval(s); need at least 2 (--cpu-window >= 2)"
    short = [f for f in series if f.cpus and f.ticks < MIN_TICK_SHARE * USER_HZ * f.cpus]
    if len(short) * 2 > len(series):
        return [], (
            f"{len(short)} of {len(series)} intervals lost ticks (clock of an emulated or "
            "stolen CPU): the split is not trustworthy"
        )
    return [f.system_pct for f in series if f not in short], None


def cpu_verdict(
    before: list[CpuFigures], after: list[CpuFigures], min_change_pct: float = 2.0
) -> Verdict:
    b, why_b = _usable(before)
    a, why_a = _usable(after)
    if why_b or why_a:
        return Verdict(NOT_MEASURED, f"{'before' if why_b else 'after'}: {why_b or why_a}")
    mb, ma = statistics.fmean(b), statistics.fmean(a)
    se = math.sqrt(statistics.variance(b) / len(b) + statistics.variance(a) / len(a))
    margin = round(max(min_change_pct, 2 * se), 2)
    delta = ma - mb
    mb, ma = round(mb, 2), round(ma, 2)
    if delta <= -margin:
        return Verdict(IMPROVED, f"system {mb}% -> {ma}% (beyond noise {margin})", mb, ma, margin)
    if delta >= margin:
        return Verdict(WORSE, f"system {mb}% -> {ma}% (beyond noise {margin})", mb, ma, margin)
    return Verdict(UNCHANGED, f"system {mb}% -> {ma}% (within noise {margin})", mb, ma, margin)
