"""`fleet report --format markdown`: GitHub/GitLab-flavoured Markdown, drift first."""

from __future__ import annotations

import json
import re

from fleet.model import ERROR, FAIL, WARN
from fleet.render import drift_text
from fleet.render.report_table import host_detail
from fleet.report.data import ReportData

_DRIFT_HEADERS = {
    "new_failures": ["host", "check", "severity", "waived"],
    "became_unreachable": ["host", "last reached", "error"],
    "flapping": ["host", "check", "changes"],
    "fixed": ["host", "check", "had failed since"],
    "still_failing": ["host", "check", "since", "waived"],
    "still_unreachable": ["host", "since", "error"],
}


def cell(text: str) -> str:
    """A table cell: one line, pipes escaped."""
    return re.sub(r"(?<!\\)\|", r"\\|", re.sub(r"\s+", " ", text)).strip()


# CommonMark lets a backslash escape any ASCII punctuation; these are the ones that start
# markup (emphasis, links, images, code, HTML, headings, tables, strikethrough).
_MARKUP = re.compile(r"([\\`*_\[\]<>#!|~&])")


def text(value: str) -> str:
    """Untrusted text (a host name, a remote error, a summary quoting a file) on one line,
    shown as written: no markup, no HTML, no table break."""
    return _MARKUP.sub(r"\\\1", re.sub(r"\s+", " ", value)).strip()


def table(headers: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(cell(h) for h in headers) + " |"]
    out.append("|" + "|".join("---" for _ in headers) + "|")
    out.extend("| " + " | ".join(cell(c) for c in row) + " |" for row in rows)
    return out


def fence(text: str, lang: str = "") -> list[str]:
    """A fenced block longer than any backtick run inside `text`."""
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    marks = "`" * max(3, longest + 1)
    return [f"{marks}{lang}", *text.rstrip("\n").splitlines(), marks]


def _drift(data: ReportData) -> list[str]:
    out = [f"## {drift_text.heading(data.drift)}", ""]
    for s in drift_text.sections(data.drift, data.run.started_at):
        headers = _DRIFT_HEADERS[s.key][: len(s.rows[0])]
        rows = table(headers, [[text(c) for c in row] for row in s.rows])
        if s.key.startswith("still_"):  # what goes on unchanged folds away
            summary = f"<details><summary>{s.title} ({len(s.rows)})</summary>"
            out += [summary, "", *rows, "", "</details>", ""]
        else:
            out += [f"**{s.title} ({len(s.rows)})**", "", *rows, ""]
    if not data.drift.changed and not data.drift.unavailable:
        out += ["No change since the previous run.", ""]
    return out


def _waivers(data: ReportData) -> list[str]:
    if not data.waivers.uses:
        return []
    rows = []
    for use in data.waivers.uses:
        w = use.waiver
        state = f"**EXPIRED** {w.expires}" if use.expired else f"until {w.expires}"
        matched = ", ".join(use.hosts) or "-"
        rows.append([w.source, w.host, f"`{w.check}`", state, w.owner, matched, w.reason])
    headers = ["waiver", "hosts", "check", "state", "owner", "matched", "reason"]
    return [f"## Waivers ({len(rows)})", "", *table(headers, rows), ""]


def _findings(data: ReportData) -> list[str]:
    out = ["## Findings", ""]
    for h in data.run.hosts:
        state = data.host_state(h)
        shown = [f for f in h.checks if f.status in (FAIL, WARN, ERROR)]
        if not shown and not h.error:
            continue
        out += [f"### {text(h.name)}: {state}", ""]
        if h.error:
            out += [f"- error: {text(h.error)}"]
        for f in shown:
            label = data.check_state(h, f).upper()
            mark = data.mark(h, f)
            note = ""
            if mark is not None:
                w = mark.waiver
                verb = "waiver expired" if mark.expired else "waived until"
                note = f" ({verb} {w.expires}, {w.owner}: {cell(w.reason)}; {w.source})"
            out.append(f"- **{label}** `{f.id}` [{f.severity}]: {text(f.summary)}{note}")
            body = ["", "  <details><summary>evidence and fix</summary>", ""]
            body += ["  " + line for line in fence(json.dumps(f.evidence, indent=2), "json")]
            if f.fix:
                body += ["", *("  " + line for line in fence(f.fix, "sh"))]
            body += ["", "  </details>"]
            out += body
        out.append("")
    return out


def render_markdown(data: ReportData) -> str:
    run = data.run
    run_ref = f"run {data.run_id}" if data.run_id is not None else "not recorded"
    out = [
        "# fleet report",
        "",
        f"{run_ref} · audit {run.started_at} to {run.finished_at} · "
        f"playbook `{data.playbook}` · source {data.source}",
        "",
    ]
    out += _drift(data)
    out += ["## Summary", "", f"**{data.summary_line()}**", ""]
    out += _waivers(data)
    rows = [
        [
            text(h.name),
            data.host_state(h),
            f"{h.cpu.system_pct:.1f}" if h.cpu else "-",
            text(host_detail(data, h)),
        ]
        for h in run.hosts
    ]
    out += ["## Hosts", "", *table(["host", "status", "sys %", "failing / waived / error"], rows)]
    out += ["", *_findings(data)]
    return "\n".join(out).rstrip("\n") + "\n"
