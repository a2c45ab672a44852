"""The counters a profile reads at each end of its window, parsed as their owners write them,
and turned into rates (pure).

- tracefs `kprobe_profile`: `"  %-44s %15lu %15lu\\n"` per probe event: name, hits, misses
  (kernel/trace/trace_kprobe.c, probes_profile_seq_show);
- tracefs `per_cpu/cpuN/stats`: `key: value` lines (ring buffer entries, overrun, ...);
- `bpftool prog show --json`: `run_time_ns`/`run_cnt` are printed only when non-zero, and move
  only while kernel.bpf_stats_enabled is 1; `pids` only when bpftool can read them;
- /proc/PID/fdinfo of a BPF program fd (no bpftool): `prog_id`, `run_time_ns`, `run_cnt`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any


def _lines(text: str) -> list[str]:
    return [line for line in text.split("\n") if line.strip(" \t")]


def parse_kprobe_profile(text: str) -> dict[str, tuple[int, int]]:
    """name -> (hits, misses). Names repeat only across groups; their counts add up."""
    out: dict[str, tuple[int, int]] = {}
    for line in _lines(text):
        parts = line.split()
        if len(parts) != 3 or not (parts[1].isdigit() and parts[2].isdigit()):
            raise ValueError(f"kprobe_profile line is not 'name hits misses': {line!r}")
        hits, misses = out.get(parts[0], (0, 0))
        out[parts[0]] = (hits + int(parts[1]), misses + int(parts[2]))
    return out


def parse_ring_stats(text: str) -> dict[str, int]:
    """per_cpu/cpuN/stats: the integer counters (timestamps are skipped)."""
    out: dict[str, int] = {}
    for line in _lines(text):
        key, sep, value = line.partition(":")
        if sep and value.strip().isdigit():
            out[key.strip()] = int(value.strip())
    return out


def ring_events(stats: dict[str, int]) -> int:
    """Events written to one CPU's buffer so far: still in it, overwritten, or read."""
    return stats.get("entries", 0) + stats.get("overrun", 0) + stats.get("read events", 0)


@dataclass(frozen=True)
class BpfProgram:
    """One loaded program at one moment; run_time_ns/run_cnt None when not reported."""

    id: int
    name: str
    type: str
    tag: str
    run_time_ns: int | None
    run_cnt: int | None
    owners: tuple[str, ...] = ()


def _owner(pid: Any) -> str | None:
    if isinstance(pid, dict) and "pid" in pid:
        return f"{pid.get('comm', '?')}[{pid['pid']}]"
    return None


def parse_bpftool_progs(text: str) -> dict[int, BpfProgram]:
    """`bpftool prog show --json`. Raises ValueError for anything else (an error object)."""
    doc = json.loads(text)
    if isinstance(doc, dict) and "error" in doc:
        raise ValueError(f"bpftool: {doc['error']}")
    if not isinstance(doc, list):
        raise ValueError("bpftool prog show --json did not print a list")
    out: dict[int, BpfProgram] = {}
    for p in doc:
        if not isinstance(p, dict) or not isinstance(p.get("id"), int):
            continue
        owners = tuple(o for o in (_owner(x) for x in p.get("pids", []) or []) if o)
        rt, rc = p.get("run_time_ns"), p.get("run_cnt")
        out[p["id"]] = BpfProgram(
            p["id"],
            str(p.get("name", "")),
            str(p.get("type", "")),
            str(p.get("tag", "")),
            rt if isinstance(rt, int) else None,
            rc if isinstance(rc, int) else None,
            owners,
        )
    return out


def progs_from_fdinfo(
    fdinfo: list[tuple[int, dict[str, str]]], comms: dict[int, str]
) -> dict[int, BpfProgram]:
    """The same from /proc/PID/fdinfo (fds of other kinds have no prog_id and are skipped)."""
    out: dict[int, BpfProgram] = {}
    for pid, f in fdinfo:
        if not f.get("prog_id", "").isdigit():
            continue
        pid_owner = f"{comms.get(pid, '?')}[{pid}]"
        pid_id = int(f["prog_id"])
        seen = out.get(pid_id)
        owners = (*seen.owners, pid_owner) if seen else (pid_owner,)
        rt, rc = f.get("run_time_ns", ""), f.get("run_cnt", "")
        out[pid_id] = BpfProgram(
            pid_id,
            "",
            f.get("prog_type", ""),
            f.get("prog_tag", ""),
            int(rt) if rt.isdigit() else None,
            int(rc) if rc.isdigit() else None,
            tuple(dict.fromkeys(owners)),
        )
    return out


@dataclass(frozen=True)
class ProgramUse:
    """A program over the window: bpftop's numbers (CPU as % of the whole host)."""

    id: int
    name: str
    type: str
    owners: tuple[str, ...]
    run_time_ns: int
    runs: int
    cpu_pct: float  # of the host's capacity (all CPUs)
    calls_per_s: float
    avg_ns: float

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "type": self.type,
            "owners": list(self.owners),
            "run_time_ns": self.run_time_ns,
            "runs": self.runs,
            "cpu_pct": self.cpu_pct,
            "calls_per_s": self.calls_per_s,
            "avg_ns": self.avg_ns,
        }


def program_use(
    before: dict[int, BpfProgram], after: dict[int, BpfProgram], seconds: float, cpus: int
) -> list[ProgramUse]:
    """Programs present at both ends, busiest first. A program without counters at the
    start counts from zero (bpftool omits zero counters)."""
    out: list[ProgramUse] = []
    if seconds <= 0:
        return out
    for pid, b in after.items():
        a = before.get(pid)
        if a is None or b.run_time_ns is None:
            continue
        ns = b.run_time_ns - (a.run_time_ns or 0)
        runs = (b.run_cnt or 0) - (a.run_cnt or 0)
        if ns < 0 or runs < 0:  # reloaded under the same id cannot happen; a reset can
            continue
        out.append(
            ProgramUse(
                pid,
                b.name or a.name,
                b.type,
                b.owners or a.owners,
                ns,
                runs,
                round(100.0 * ns / (seconds * 1e9 * max(cpus, 1)), 3),
                round(runs / seconds, 1),
                round(ns / runs, 1) if runs else 0.0,
            )
        )
    out.sort(key=lambda u: (-u.run_time_ns, u.id))
    return out


@dataclass(frozen=True)
class HookRate:
    name: str
    hits_per_s: float
    misses_per_s: float

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "hits_per_s": self.hits_per_s, "misses_per_s": self.misses_per_s}


def hook_rates(
    before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]], seconds: float
) -> list[HookRate]:
    """Per probe event: hits and misses a second over the window, busiest first."""
    if seconds <= 0:
        return []
    out = []
    for name, (hits, misses) in after.items():
        h0, m0 = before.get(name, (0, 0))
        out.append(
            HookRate(
                name, round(max(hits - h0, 0) / seconds, 1), round(max(misses - m0, 0) / seconds, 1)
            )
        )
    out.sort(key=lambda r: (-r.hits_per_s, r.name))
    return out


@dataclass(frozen=True)
class RingRate:
    """Trace events written a second, per CPU and in all."""

    per_cpu: dict[int, float] = field(default_factory=dict)

    @property
    def total(self) -> float:
        return round(sum(self.per_cpu.values()), 1)


def ring_rate(
    before: dict[int, dict[str, int]], after: dict[int, dict[str, int]], seconds: float
) -> RingRate:
    if seconds <= 0:
        return RingRate()
    per = {
        cpu: round(max(ring_events(after[cpu]) - ring_events(before[cpu]), 0) / seconds, 1)
        for cpu in sorted(after)
        if cpu in before
    }
    return RingRate(per)


def parse_uptime(text: str) -> float:
    """/proc/uptime: seconds since boot (first field)."""
    return float(text.split()[0])
