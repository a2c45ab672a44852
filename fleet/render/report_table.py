"""`fleet report --format table`: drift first, then waivers, then a row per host."""

from __future__ import annotations

from tabulate import tabulate

from fleet.model import ERROR, WARN, HostResult
from fleet.render import drift_text
from fleet.report.data import ReportData

STEADY_ROWS = 10  # rows of "still failing"/"still unreachable" in the terminal table


def host_detail(data: ReportData, h: HostResult) -> str:
    """Failing ids (an expired waiver says so), then waived ids, errors, warnings as a count."""
    if h.error and not h.checks:
        return h.error
    parts = []
    failing = []
    for f in data.failing(h):
        mark = data.mark(h, f)
        failing.append(f"{f.id} (waiver expired)" if mark and mark.expired else f.id)
    if failing:
        parts.append(", ".join(failing))
    waived = [f.id for f in data.waived(h)]
    if waived:
        parts.append("waived: " + ", ".join(waived))
    errors = [f.id for f in h.checks if f.status == ERROR]
    if errors:
        parts.append("error: " + ", ".join(errors))
    if h.error:
        parts.append(h.error)
    text = "; ".join(parts)
    warns = sum(f.status == WARN for f in h.checks)
    if warns:
        text += f" (+{warns} warn)" if text else f"{warns} warn"
    return text or "-"


def _indent(table: str, pad: str = "    ") -> list[str]:
    return [pad + line.rstrip() for line in table.splitlines()]


def render_drift(data: ReportData) -> list[str]:
    lines = [drift_text.heading(data.drift)]
    sections = drift_text.sections(data.drift, data.run.started_at)
    for s in sections:
        lines.append(f"  {s.title} ({len(s.rows)}):")
        rows = s.rows
        if s.key.startswith("still_") and len(rows) > STEADY_ROWS:
            rows = rows[:STEADY_ROWS]  # what goes on unchanged is not worth a screenful
        lines.extend(_indent(tabulate(rows, tablefmt="plain", disable_numparse=True)))
        if len(rows) < len(s.rows):
            lines.append(
                f"    ... and {len(s.rows) - len(rows)} more (all in markdown, html, json)"
            )
    if not data.drift.changed and not data.drift.unavailable:
        lines.append("  no change since the previous run")
    return lines


def render_waivers(data: ReportData) -> list[str]:
    if not data.waivers.uses:
        return []
    rows = []
    for use in data.waivers.uses:
        w = use.waiver
        state = f"EXPIRED {w.expires}" if use.expired else f"until {w.expires}"
        rows.append(
            [w.source, w.host, w.check, state, w.owner, ", ".join(use.hosts) or "-", w.reason]
        )
    table = tabulate(
        rows,
        headers=["WAIVER", "HOSTS", "CHECK", "STATE", "OWNER", "MATCHED", "REASON"],
        tablefmt="simple",
        disable_numparse=True,
    )
    return [f"Waivers ({len(rows)})", *_indent(table, "  ")]


def render_report_table(data: ReportData) -> str:
    lines = render_drift(data)
    lines.append("")
    waivers = render_waivers(data)
    if waivers:
        lines.extend([*waivers, ""])
    rows = [
        [
            h.name,
            data.host_state(h),
            f"{h.cpu.system_pct:.1f}" if h.cpu else "-",
            host_detail(data, h),
        ]
        for h in data.run.hosts
    ]
    lines.append(
        tabulate(
            rows,
            headers=["HOST", "STATUS", "SYS%", "FAILING CHECKS / WAIVED / ERROR"],
            tablefmt="simple",
            disable_numparse=True,
        )
    )
    lines.extend(["", data.summary_line()])
    return "\n".join(lines) + "\n"
