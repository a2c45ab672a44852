"""The human view: one row per host (or per group of identical hosts), `-v` adds evidence."""

from __future__ import annotations

import json
import re
from collections import OrderedDict
from typing import Any

from tabulate import tabulate

from fleet.model import COMPLIANT, ERROR, FAIL, NON_COMPLIANT, UNREACHABLE, WARN, HostResult
from fleet.render.json_out import summary

_COLORS = {
    "compliant": "32",
    "non-compliant": "31",
    "unreachable": "35",
    "error": "33",
    "pass": "32",
    "fail": "31",
    "warn": "33",
    "skip": "90",
}


def _paint(text: str, key: str, color: bool) -> str:
    code = _COLORS.get(key)
    return f"\033[{code}m{text}\033[0m" if color and code else text


def _sys(h: HostResult) -> str:
    return f"{h.cpu.system_pct:.1f}" if h.cpu else "-"


# Text from hosts reaches the terminal: C0/C1 controls (ESC sequences can rewrite the
# screen or the title), DEL and bidi overrides are shown as escapes, never sent raw.
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def terminal_safe(text: str) -> str:
    return _UNSAFE.sub(
        lambda m: f"\\x{ord(m[0]):02x}" if ord(m[0]) < 0x100 else f"\\u{ord(m[0]):04x}", text
    )


def one_line(text: str) -> str:
    """Remote or user text on one terminal line: control characters and newlines escaped."""
    return terminal_safe(text).replace("\n", "\\n")


def _detail(h: HostResult) -> str:
    """Failing check ids first (what to fix), then errors; warnings only as a count (-v)."""
    return one_line(_detail_text(h))


def _detail_text(h: HostResult) -> str:
    if h.error and not h.checks:
        return h.error
    text = ", ".join(h.failing)
    errors = [f.id for f in h.checks if f.status == ERROR]
    if errors:
        text += ("; " if text else "") + "error: " + ", ".join(errors)
    if h.error:
        text += ("; " if text else "") + h.error
    warns = sum(f.status == WARN for f in h.checks)
    if warns:
        text += f" (+{warns} warn)" if text else f"{warns} warn"
    return text or "-"


def _group_key(h: HostResult) -> tuple[Any, ...]:
    # Unreachable hosts group by the kind of error, not its exact text (ports differ).
    err = (h.error or "").split(":")[0] if h.status == UNREACHABLE else h.error
    return (
        h.status,
        tuple(h.failing),
        tuple((f.id, f.status) for f in h.checks if f.status in (WARN, ERROR)),
        err,
    )


def render_table(
    hosts: list[HostResult],
    group: bool | None = None,
    color: bool = False,
    group_threshold: int = 12,
) -> str:
    """Rows per host; with many hosts, hosts with identical findings share one row."""
    if group is None:
        group = len(hosts) > group_threshold
    rows = []
    if group:
        groups: OrderedDict[tuple[Any, ...], list[HostResult]] = OrderedDict()
        for h in hosts:
            groups.setdefault(_group_key(h), []).append(h)
        # Worst first: what needs a person comes before what is fine.
        rank = {NON_COMPLIANT: 0, ERROR: 1, UNREACHABLE: 2, COMPLIANT: 3}
        for members in sorted(groups.values(), key=lambda m: rank.get(m[0].status, 9)):
            first = members[0]
            names = (
                first.name
                if len(members) == 1
                else (
                    f"{len(members)} hosts: {', '.join(m.name for m in members[:3])}"
                    + (", ..." if len(members) > 3 else "")
                )
            )
            cpus = [m.cpu.system_pct for m in members if m.cpu]
            sys_text = (
                "-"
                if not cpus
                else (f"{cpus[0]:.1f}" if len(cpus) == 1 else f"{min(cpus):.1f}-{max(cpus):.1f}")
            )
            rows.append(
                [names, _paint(first.status, first.status, color), sys_text, _detail(first)]
            )
    else:
        for h in hosts:
            rows.append([h.name, _paint(h.status, h.status, color), _sys(h), _detail(h)])
    table = tabulate(
        rows,
        headers=["HOST", "STATUS", "SYS%", "FAILING CHECKS / ERROR"],
        tablefmt="simple",
        disable_numparse=True,
    )
    s = summary(hosts)
    line = (
        f"{s['hosts']} host(s): {s['compliant']} compliant, {s['non_compliant']} non-compliant, "
        f"{s['error']} error, {s['unreachable']} unreachable"
    )
    return f"{table}\n\n{line}\n"


def _evidence_lines(evidence: dict[str, Any], indent: str) -> list[str]:
    lines = []
    for key, value in evidence.items():
        if isinstance(value, list) and value and isinstance(value[0], dict):
            lines.append(f"{indent}{key}:")
            for item in value[:25]:
                lines.append(
                    f"{indent}  - " + ", ".join(f"{k}={_short(v)}" for k, v in item.items())
                )
            if len(value) > 25:
                lines.append(f"{indent}  ... {len(value) - 25} more")
        else:
            lines.append(f"{indent}{key}: {_short(value)}")
    return lines


def _short(value: Any) -> str:
    if isinstance(value, str):
        return one_line(value)
    text = json.dumps(value, separators=(",", ":"))  # escapes controls itself
    return text if len(text) <= 160 else text[:157] + "..."


def render_verbose(hosts: list[HostResult], color: bool = False) -> str:
    """Every host's checks with evidence and, for fail/warn, the remediation to paste."""
    out = []
    for h in hosts:
        where = f"{h.address}:{h.port}"
        kernel = f", kernel {one_line(h.kernel)}" if h.kernel else ""
        out.append(
            f"{h.name}  {_paint(h.status, h.status, color)}  ({where}{kernel}, {h.duration_s:.2f}s)"
        )
        if h.error:
            out.append(f"  error: {one_line(h.error)}")
        for f in h.checks:
            out.append(
                f"  {_paint(f.status.upper(), f.status, color):4}  {f.id}  [{f.severity}]  "
                f"{one_line(f.summary)}"
            )
            if f.status in (FAIL, WARN, ERROR):
                out.extend(_evidence_lines(f.evidence, "        "))
            if f.fix:
                out.append("        fix:")
                out.extend(f"          {line}" for line in f.fix.splitlines())
        out.append("")
    return "\n".join(out)
