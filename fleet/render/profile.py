"""`fleet profile` output: the table, the verbose detail, the JSON document (pure)."""

from __future__ import annotations

from typing import Any

from tabulate import tabulate

from fleet.profile.result import HostProfile

PROFILE_SCHEMA = 1


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def render_profile_table(profiles: list[HostProfile]) -> str:
    rows = []
    for p in profiles:
        if p.status != "ok":
            rows.append([p.host, p.status, "", "", "", "", "", p.error or ""])
            continue
        rows.append(
            [
                p.host,
                p.samples if p.samples else "-",
                _pct(p.pct("probe")),
                _pct(p.pct("bpf")),
                _pct(p.pct("lock")),
                _pct(p.bpf_cpu_pct),
                p.top_hooked() or "-",
                ", ".join(p.sources) or "-",
            ]
        )
    headers = [
        "HOST",
        "SAMPLES",
        "% PROBES",
        "% BPF",
        "% SPIN LOCKS",
        "BPF CPU %",
        "TOP HOOKED FUNCTION",
        "SOURCE",
    ]
    return tabulate(rows, headers=headers, tablefmt="plain", disable_numparse=True) + "\n"


def render_profile_verbose(profiles: list[HostProfile], stacks: int = 5) -> str:
    """Per host: the top stacks, the BPF programs' run time, the probe hit rates, and why a
    source is missing."""
    out: list[str] = []
    for p in profiles:
        out.append(f"== {p.host} ({p.status})")
        if p.error:
            out.append(f"  error: {p.error}")
        if p.cpu:
            out.append(
                f"  CPU over {p.window_s:.1f} s: {p.cpu.system_pct:.1f} % system, "
                f"{p.cpu.user_pct:.1f} % user ({p.cpu.cpus} CPUs)"
            )
        if p.cost_cpu_s is not None:
            out.append(f"  the profile itself used {p.cost_cpu_s:.2f} s of the host's CPU")
        for source, why in p.unavailable.items():
            out.append(f"  no {source}: {why}")
        out.extend(f"  note: {n}" for n in p.notes)
        if p.shares and p.shares.hooked:
            hooked = ", ".join(f"{f} ({n})" for f, n in p.shares.hooked.most_common(5))
            out.append(f"  hooked functions (samples): {hooked}")
        if p.folded:
            out.append(f"  top stacks of {p.samples} samples:")
            for stack, n in p.folded.most_common(stacks):
                frames = stack.split(";")
                shown = ";".join([*frames[:1], "...", *frames[-6:]]) if len(frames) > 8 else stack
                out.append(f"    {n:6d}  {shown}")
        for prog in p.programs[:10]:
            owners = ",".join(prog.owners) or "owner unknown"
            out.append(
                f"  bpf prog {prog.id} {prog.name or '?'} ({prog.type}, {owners}): "
                f"{prog.cpu_pct:.3f} % CPU, {prog.calls_per_s:.0f} calls/s, "
                f"{prog.avg_ns:.0f} ns/call"
            )
        for hook in [h for h in p.hooks if h.hits_per_s or h.misses_per_s][:10]:
            out.append(
                f"  kprobe {hook.name}: {hook.hits_per_s:.0f} hits/s, "
                f"{hook.misses_per_s:.0f} misses/s"
            )
        if p.ring is not None and p.ring.total:
            out.append(f"  trace ring buffer: {p.ring.total:.0f} events/s")
        out.append("")
    return "\n".join(out) + ("\n" if out else "")


def profile_document(
    profiles: list[HostProfile], started_at: str, finished_at: str, window: int, frequency: int
) -> dict[str, Any]:
    return {
        "schema": PROFILE_SCHEMA,
        "command": "profile",
        "started_at": started_at,
        "finished_at": finished_at,
        "window_s": window,
        "frequency_hz": frequency,
        "hosts": [p.to_json() for p in profiles],
    }
