"""Flame graphs as inline SVG, and the page `fleet profile --html` writes (pure).

One graph per host from its folded stacks: the root at the bottom, each frame as wide as its
samples, probe / BPF / tracing / spin-lock frames coloured apart from the rest so the cost of
the hooks shows at a glance. No script: a frame's <title> is its tooltip.
"""

from __future__ import annotations

import html
import zlib
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from fleet.config.playbook import ProfileLimits
from fleet.profile.result import HostProfile
from fleet.profile.stacks import frame_kind

WIDTH = 1200
ROW = 17
MIN_WIDTH = 0.5  # px: narrower frames are left out (their samples still count above)
KIND_COLORS = {
    "probe": "#d62728",  # kprobe/kretprobe machinery
    "bpf": "#9467bd",  # BPF programs, trampolines, map helpers
    "tracing": "#ff7f0e",  # tracepoint / ftrace / ring buffer
    "lock": "#1f77b4",  # spinning on a lock
}
KIND_LABELS = {
    "probe": "kprobe / kretprobe",
    "bpf": "BPF program or map",
    "tracing": "tracepoint / ring buffer",
    "lock": "spin lock",
}


@dataclass
class _Node:
    name: str
    count: int = 0
    children: dict[str, _Node] = field(default_factory=dict)


def _tree(folded: Counter[str]) -> _Node:
    root = _Node("all")
    for stack, count in folded.items():
        root.count += count
        node = root
        for frame in stack.split(";"):
            node = node.children.setdefault(frame, _Node(frame))
            node.count += count
    return root


def _color(name: str, depth: int) -> str:
    kind = frame_kind(name) if depth > 1 else None  # depth 1 is the process name
    if kind:
        return KIND_COLORS[kind]
    # Other frames in pale sand shades, so the machinery's strong colours stand out; stable
    # per name (the same function, the same shade in every graph).
    h = zlib.crc32(name.encode()) & 0xFFFF
    return f"rgb({222 + h % 30},{210 + (h >> 5) % 30},{160 + (h >> 10) % 45})"


def flame_svg(folded: Counter[str], title: str = "") -> str:
    """An SVG flame graph of folded stacks (empty graph when there are none)."""
    root = _tree(folded)
    total = root.count or 1
    boxes: list[tuple[_Node, float, int, float]] = []
    todo: list[tuple[_Node, float, int]] = [(root, 0.0, 0)]
    while todo:
        node, x, depth = todo.pop()
        w = WIDTH * node.count / total
        if w < MIN_WIDTH:
            continue
        boxes.append((node, x, depth, w))
        cx = x
        for child in sorted(node.children.values(), key=lambda c: c.name):
            todo.append((child, cx, depth + 1))
            cx += WIDTH * child.count / total
    height = (max(d for _, _, d, _ in boxes) + 1) * ROW + 4
    rects = []
    for node, x, depth, w in boxes:
        y = height - (depth + 1) * ROW
        label = html.escape(node.name)
        tip = f"{label} ({node.count} samples, {100.0 * node.count / total:.2f}%)"
        text = (
            f'<text x="{x + 3:.1f}" y="{y + 12}">{html.escape(_fit(node.name, w))}</text>'
            if w > 30
            else ""
        )
        rects.append(
            f'<g><title>{tip}</title><rect x="{x:.1f}" y="{y}" width="{w:.1f}" '
            f'height="{ROW - 1}" fill="{_color(node.name, depth)}" rx="2"/>{text}</g>'
        )
    body = "\n".join(rects)
    aria = html.escape(title or "flame graph", quote=True)
    return (
        f'<svg class="flame" role="img" aria-label="{aria}" viewBox="0 0 {WIDTH} {height}" '
        f'width="100%" xmlns="http://www.w3.org/2000/svg" '
        f'font-family="monospace" font-size="11">\n{body}\n</svg>'
    )


def _fit(name: str, width: float) -> str:
    chars = int((width - 6) / 6.6)
    return name if len(name) <= chars else name[: max(chars - 2, 0)] + ".."


def legend() -> str:
    items = "".join(
        f'<span class="key"><i style="background:{KIND_COLORS[k]}"></i>{KIND_LABELS[k]}</span>'
        for k in KIND_COLORS
    )
    return f'<p class="legend">{items}</p>'


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}%"


def host_section(p: HostProfile, heading: str | None = None) -> str:
    """One host: its figures in a line, then its flame graph (or why there is none)."""
    name = html.escape(heading or p.host)
    if p.status != "ok":
        err = html.escape(p.error or "")
        return f'<section class="host"><h2>{name}</h2><p class="err">{err}</p></section>'
    facts = (
        f"{p.samples} samples over {p.window_s:.1f} s · probes {_pct(p.pct('probe'))} · "
        f"BPF {_pct(p.pct('bpf'))} · spin locks {_pct(p.pct('lock'))} · "
        f"top hooked function: {p.top_hooked() or '-'} · source: {', '.join(p.sources) or '-'}"
    )
    checks = "".join(
        f'<li class="{f.status}">{html.escape(f.id)}: {f.status} — {html.escape(f.summary)}</li>'
        for f in p.findings
    )
    graph = (
        flame_svg(p.folded, f"flame graph of {p.host}")
        if p.folded
        else f"<p>No perf samples: {html.escape(p.unavailable.get('perf', '-'))}</p>"
    )
    return (
        f'<section class="host"><h2>{name}</h2><p>{html.escape(facts)}</p>'
        f"<ul>{checks}</ul>{graph}</section>"
    )


# What a flame graph section needs of a page's style (the report's page includes it too).
FLAME_CSS = """
.legend .key{margin-right:1.2em;white-space:nowrap}
.legend i{display:inline-block;width:.9em;height:.9em;margin-right:.3em;vertical-align:-.1em}
li.fail{color:#b00020} li.warn{color:#8a5a00} li.error{color:#b00020}
svg.flame{border:1px solid #ddd;background:#fafafa}
svg.flame text{fill:#111;pointer-events:none}
.err{color:#b00020}
"""
STYLE = (
    """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}
h1{font-size:1.4em} h2{font-size:1.1em;margin:1.2em 0 .3em}
"""
    + FLAME_CSS
)


def profiles_section(profiles: list[HostProfile], heading: str) -> str:
    """The flame graphs of several hosts under one heading, with the colours' legend."""
    if not profiles:
        return ""
    hosts = "\n".join(host_section(p) for p in profiles)
    return f'<section id="profiles"><h2>{html.escape(heading)}</h2>{legend()}\n{hosts}</section>'


def before_after_page(hosts: list[Any], when: str) -> str:
    """fleet remediate --verify profile --html: per host, its flame graph before the fix
    and after, and what they prove (hosts: fleet.remediate.results.HostRemediation)."""
    parts = []
    for h in hosts:
        proof = (
            f"<p><b>{html.escape(h.proof.verdict)}</b>: {html.escape(h.proof.reason)}</p>"
            if h.proof
            else ""
        )
        pair = "".join(
            host_section(p, f"{h.name} {label}")
            for label, p in (("before", h.profile_before), ("after", h.profile_after))
            if p is not None
        )
        parts.append(f'<section class="pair"><h2>{html.escape(h.name)}</h2>{proof}{pair}</section>')
    return (
        "<!doctype html>\n<html lang=en><head><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width,initial-scale=1">'
        f"<title>fleet remediate {html.escape(when)}</title><style>{STYLE}</style></head><body>"
        f"<h1>fleet remediate: profiles before and after · {html.escape(when)}</h1>"
        f"{legend()}\n{''.join(parts)}\n</body></html>\n"
    )


def profile_page(profiles: list[HostProfile], limits: ProfileLimits, when: str) -> str:
    """The whole page: a legend and one section per host."""
    sections = "\n".join(host_section(p) for p in profiles)
    return (
        "<!doctype html>\n<html lang=en><head><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width,initial-scale=1">'
        f"<title>fleet profile {html.escape(when)}</title><style>{STYLE}</style></head><body>"
        f"<h1>fleet profile · {len(profiles)} host(s) · {html.escape(when)}</h1>"
        f"<p>Limits: probes and BPF {limits.probe_share_pct:g}% of samples, spin locks "
        f"{limits.lock_spin_pct:g}%.</p>{legend()}\n{sections}\n</body></html>\n"
    )
