"""A profile run's output read into a HostProfile (pure)."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import replace

from fleet.audit.cpu import cpu_between, parse_proc_stat
from fleet.profile.counters import (
    BpfProgram,
    hook_rates,
    parse_bpftool_progs,
    parse_kprobe_profile,
    parse_ring_stats,
    parse_uptime,
    program_use,
    progs_from_fdinfo,
    ring_rate,
)
from fleet.profile.result import BPF_STATS, KPROBE_PROFILE, PERF, RING_BUFFER, HostProfile
from fleet.profile.stacks import FoldedFormatError, classify, fold_perf_script, parse_folded
from fleet.remote.probe import CommandRun, FileRead, ProbeOutput

# POSIX `times`: "0m0.004000s 0m0.012000s" for the shell, then for its children.
_TIMES = re.compile(r"(\d+)m([\d.]+)s")
# perf's own words when the kernel refuses it (perf_event_paranoid, no CAP_PERFMON).
_PERF_DENIED = ("Access to performance monitoring", "perf_event_paranoid", "Permission denied")


def _read(snap: dict[str, FileRead], suffix: str) -> FileRead | None:
    for path, read in snap.items():
        if path.endswith(suffix):
            return read
    return None


def _ring(snap: dict[str, FileRead]) -> dict[int, dict[str, int]]:
    out: dict[int, dict[str, int]] = {}
    for path, read in snap.items():
        parts = path.split("/")
        if read.ok and len(parts) > 2 and parts[-1] == "stats" and parts[-3] == "per_cpu":
            cpu = parts[-2].removeprefix("cpu")
            if cpu.isdigit():
                out[int(cpu)] = parse_ring_stats(read.text or "")
    return out


def _programs(out: ProbeOutput, k: str) -> dict[int, BpfProgram] | None:
    run = out.commands.get(f"bpf{k}")
    if run is not None and run.rc == 0:
        progs = parse_bpftool_progs(run.stdout)
        held = progs_from_fdinfo(out.snapshot_fdinfo.get("owners", []), out.procs)
        return {
            i: replace(p, owners=held[i].owners) if not p.owners and i in held else p
            for i, p in progs.items()
        }
    if k in out.snapshot_fdinfo:
        return progs_from_fdinfo(out.snapshot_fdinfo[k], out.procs)
    return None


def _perf(run: CommandRun, mode: str) -> tuple[Counter[str] | None, str | None]:
    """Folded stacks from perf's section, or why there are none."""
    if run.rc != 0:
        err = " ".join(run.stderr.split())
        if any(d in run.stderr for d in _PERF_DENIED):
            return None, "not permitted (perf_event_paranoid; run as root or with CAP_PERFMON)"
        if run.rc == 127:
            return None, "not installed"
        return None, f"perf record exited {run.rc}: {err[:160] or 'no message'}"
    try:
        folded = parse_folded(run.stdout) if mode == "folded" else fold_perf_script(run.stdout)
    except FoldedFormatError as exc:
        return None, f"unreadable perf output: {exc}"
    if not folded:
        return None, "perf recorded no samples"
    return folded, None


def judge_profile(out: ProbeOutput, host: str, address: str, port: int, window: int) -> HostProfile:
    """Everything the window's two snapshots and perf's samples say about the host.
    `window`: the seconds asked for, the measure of last resort (no /proc/uptime, no ticks)."""
    prof = HostProfile(host, address, port, "ok")
    prof.bpf_stats = out.env.get("bpfstats")
    s1, s2 = out.snapshots.get("1", {}), out.snapshots.get("2", {})
    up1, up2 = _read(s1, "/proc/uptime"), _read(s2, "/proc/uptime")
    seconds = 0.0
    if up1 and up2 and up1.ok and up2.ok:
        seconds = parse_uptime(up2.text or "") - parse_uptime(up1.text or "")
    st1, st2 = _read(s1, "/proc/stat"), _read(s2, "/proc/stat")
    if st1 and st2 and st1.ok and st2.ok:
        try:
            prof.cpu = cpu_between(parse_proc_stat(st1.text or ""), parse_proc_stat(st2.text or ""))
        except ValueError as exc:
            prof.notes.append(f"CPU split: {exc}")
    if seconds <= 0 and prof.cpu and prof.cpu.cpus:
        # No /proc/uptime: the window from the ticks every CPU counted (USER_HZ is 100).
        seconds = prof.cpu.ticks / prof.cpu.cpus / 100.0
    if seconds <= 0:
        seconds = float(window)
        prof.notes.append(f"window taken as the {window} s asked for: no clock moved on the host")
    prof.window_s = round(seconds, 3)
    cpus = prof.cpu.cpus if prof.cpu and prof.cpu.cpus else 1

    perf = out.commands.get("perf")
    if perf is None:
        prof.unavailable[PERF] = "not installed" if out.env.get("perf") == "absent" else "not run"
    else:
        folded, why = _perf(perf, out.env.get("perf_output", "raw"))
        if folded is None:
            prof.unavailable[PERF] = why or "no samples"
        else:
            prof.sources.append(PERF)
            prof.folded = folded
            prof.shares = classify(folded)

    before, after = _programs(out, "1"), _programs(out, "2")
    if before is None or after is None:
        prof.unavailable[BPF_STATS] = "no bpftool and no readable fdinfo"
    elif prof.bpf_stats in ("unavailable", "off-unwritable", None):
        prof.unavailable[BPF_STATS] = {
            "unavailable": "kernel.bpf_stats_enabled missing (kernel before 5.1)",
            "off-unwritable": "kernel.bpf_stats_enabled is 0 and could not be switched on",
        }.get(prof.bpf_stats or "", "no BPF statistics state")
    else:
        prof.sources.append(BPF_STATS)
        prof.programs = program_use(before, after, seconds, cpus)
        if prof.bpf_stats == "enabled-by-fleet":
            end = {
                "restored": "switched off again",
                "restore-failed": "COULD NOT be switched off: sysctl -w kernel.bpf_stats_enabled=0",
            }.get(
                out.env.get("bpfstats_end", ""),
                "its switch-off was not seen (output cut short; fleet audit warns if it stayed on)",
            )
            prof.notes.append(f"kernel.bpf_stats_enabled was 0: switched on for the window, {end}")

    kp1, kp2 = _read(s1, "/kprobe_profile"), _read(s2, "/kprobe_profile")
    if kp1 and kp2 and kp1.ok and kp2.ok:
        prof.sources.append(KPROBE_PROFILE)
        prof.hooks = hook_rates(
            parse_kprobe_profile(kp1.text or ""), parse_kprobe_profile(kp2.text or ""), seconds
        )
    else:
        prof.unavailable[KPROBE_PROFILE] = (
            (kp2 or kp1).describe_error() if (kp2 or kp1) else "no tracefs"
        )
    r1, r2 = _ring(s1), _ring(s2)
    if r1 and r2:
        prof.sources.append(RING_BUFFER)
        prof.ring = ring_rate(r1, r2, seconds)
    cost = out.sections.get("times")
    if cost is not None:
        prof.cost_cpu_s = round(sum(int(m) * 60 + float(s) for m, s in _TIMES.findall(cost)), 3)
    if not out.complete:
        prof.status = "error"
        prof.error = "profile output incomplete"
    return prof
