"""`fleet report --format html`: one self-contained file (inline CSS and SVG, no script, no
external asset), readable on a phone (rows become cards) and on a wall screen (type scales
with the viewport). Order: drift, summary counts, waivers, a row per host with its system CPU
over the history, then every check's evidence and remediation."""

from __future__ import annotations

import json
from html import escape

from fleet import __version__
from fleet.model import CPU_THRESHOLD_PCT, ERROR, WARN, Finding, HostResult
from fleet.render import drift_text
from fleet.render.flamegraph import FLAME_CSS, profiles_section
from fleet.report.data import CHECK_STATES, HOST_STATES, ReportData

CSS = """
:root{--bg:#fff;--fg:#1b1f24;--mut:#5b6470;--line:#d8dde3;--card:#f5f7f9;
--bad:#b42318;--bad-bg:#fde8e7;--ok:#1a7f37;--ok-bg:#e3f4e8;--warn:#9a6700;--warn-bg:#fff4d6;
--dark:#6e4fb5;--dark-bg:#efe9fb;--wv:#0b6e99;--wv-bg:#e2f2fa;--mute-bg:#eef0f2}
@media (prefers-color-scheme:dark){:root{--bg:#0f1216;--fg:#e6e9ed;--mut:#9aa4af;
--line:#2c333b;--card:#171c22;--bad:#ff8a80;--bad-bg:#3a1715;--ok:#7ee2a1;--ok-bg:#12301d;
--warn:#f2cc60;--warn-bg:#3a2e0c;--dark:#c6b3ff;--dark-bg:#2a2140;--wv:#7cc8ec;
--wv-bg:#0f2d3b;--mute-bg:#22282f}}
*{box-sizing:border-box}
html{font-size:clamp(15px,0.55vw + 10px,26px);-webkit-text-size-adjust:100%}
body{margin:0;background:var(--bg);color:var(--fg);
font-family:system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;line-height:1.4}
header,main,footer{max-width:120rem;margin:0 auto;padding:0 1rem}
h1{font-size:1.5rem;margin:1rem 0 .2rem}h2{font-size:1.2rem;margin:1.4rem 0 .5rem}
h3{font-size:1rem;margin:.8rem 0 .3rem}h4{font-size:.85rem;margin:.6rem 0 .2rem;color:var(--mut)}
.meta,footer{color:var(--mut);font-size:.85rem;overflow-wrap:anywhere}
code,pre{font-family:ui-monospace,"DejaVu Sans Mono",Menlo,Consolas,monospace;font-size:.85em}
pre{background:var(--card);border:1px solid var(--line);border-radius:6px;padding:.6rem;
margin:.2rem 0;white-space:pre-wrap;overflow-wrap:anywhere;max-height:28rem;overflow:auto}
.summary{display:grid;grid-template-columns:repeat(auto-fit,minmax(7.5rem,1fr));gap:.6rem}
.tile{background:var(--card);border:1px solid var(--line);border-radius:10px;padding:.6rem .8rem}
.tile .num{display:block;font-size:2.4rem;font-weight:700;line-height:1.1}
.tile .label{color:var(--mut);font-size:.85rem}
.tile.s-non-compliant .num{color:var(--bad)}.tile.s-compliant .num{color:var(--ok)}
.tile.s-error .num{color:var(--warn)}.tile.s-unreachable .num{color:var(--dark)}
.tile.s-waived .num{color:var(--wv)}
.drift{border:2px solid var(--line);border-radius:10px;padding:.2rem 1rem .8rem;margin:1rem 0}
.drift details>summary{cursor:pointer;font-weight:700;margin:.8rem 0 .3rem}
.drift.changed{border-color:var(--bad)}
.drift ul{margin:.2rem 0;padding-left:1.2rem}.drift li{margin:.15rem 0;overflow-wrap:anywhere}
.badge{display:inline-block;border-radius:999px;padding:0 .55em;font-size:.8em;font-weight:600;
white-space:nowrap}
.s-non-compliant.badge,.s-fail.badge{background:var(--bad-bg);color:var(--bad)}
.s-compliant.badge,.s-pass.badge{background:var(--ok-bg);color:var(--ok)}
.s-error.badge,.s-warn.badge{background:var(--warn-bg);color:var(--warn)}
.s-unreachable.badge{background:var(--dark-bg);color:var(--dark)}
.s-waived.badge{background:var(--wv-bg);color:var(--wv)}
.s-skip.badge{background:var(--mute-bg);color:var(--mut)}
table.hosts{width:100%;border-collapse:collapse}
table.hosts th{text-align:left;color:var(--mut);font-weight:600;font-size:.85rem;
border-bottom:2px solid var(--line);padding:.3rem .5rem}
table.hosts td{border-bottom:1px solid var(--line);padding:.35rem .5rem;vertical-align:middle;
overflow-wrap:anywhere}
td.cpu{white-space:nowrap}.pct{display:inline-block;min-width:3.6em;text-align:right}
svg.spark{width:8rem;height:2rem;vertical-align:middle;margin-left:.4rem}
svg.spark .line{fill:none;stroke:currentColor;stroke-width:1.6}
svg.spark .limit{stroke:var(--bad);stroke-width:1;stroke-dasharray:3 3}
svg.spark .frame{fill:var(--card);stroke:var(--line)}
.chips code{display:inline-block;margin:.1rem .3rem .1rem 0}
.chips .w{color:var(--wv)}.chips .x{color:var(--bad);font-weight:700}
details.host{border:1px solid var(--line);border-radius:8px;margin:.5rem 0;padding:.2rem .8rem}
details.host>summary{cursor:pointer;font-weight:600;padding:.3rem 0;overflow-wrap:anywhere}
.check{border-top:1px solid var(--line);padding:.5rem 0}
.check .head{display:flex;flex-wrap:wrap;gap:.4rem;align-items:baseline}
.sev{color:var(--mut);font-size:.85rem}
.waiver{color:var(--wv)}.waiver.expired{color:var(--bad);font-weight:600}
table.waivers{border-collapse:collapse;width:100%}
table.waivers td,table.waivers th{border-bottom:1px solid var(--line);padding:.3rem .5rem;
text-align:left;overflow-wrap:anywhere}
@media (max-width:700px){
table.hosts thead,table.waivers thead{display:none}
table.hosts tr,table.waivers tr{display:block;border:1px solid var(--line);border-radius:8px;
margin:.5rem 0;padding:.3rem .6rem}
table.hosts td,table.waivers td{display:block;position:relative;border:0;
padding:.15rem 0 .15rem 6.2rem;min-height:1.6rem}
table.hosts td::before,table.waivers td::before{content:attr(data-label);color:var(--mut);
position:absolute;left:0;top:.25rem;width:5.8rem;font-size:.85rem}
}
"""


def _e(text: object) -> str:
    return escape(str(text), quote=True)


def sparkline(points: list[float | None], threshold: float, width: int = 120) -> str:
    """An inline SVG of system CPU % (0-100 scale) over the runs, gaps where unknown, a dashed
    line at the threshold and a dot on the latest value."""
    height, pad = 32, 2
    n = len(points)

    def xy(i: int, v: float) -> tuple[float, float]:
        x = pad + (width - 2 * pad) * (i / (n - 1) if n > 1 else 1.0)
        y = height - pad - (height - 2 * pad) * max(0.0, min(v, 100.0)) / 100
        return round(x, 1), round(y, 1)

    known = [v for v in points if v is not None]
    if known:
        last = known[-1]
        label = (
            f"system CPU over the last {n} run(s): latest {last:.1f}%, "
            f"min {min(known):.1f}%, max {max(known):.1f}%"
        )
    else:
        label = f"no CPU figures in the last {n} run(s)"
    parts = [
        f'<svg class="spark" viewBox="0 0 {width} {height}" role="img" aria-label="{_e(label)}">',
        f"<title>{_e(label)}</title>",
        f'<rect class="frame" x="0.5" y="0.5" width="{width - 1}" height="{height - 1}" rx="3"/>',
    ]
    _, ty = xy(0, threshold)
    parts.append(f'<line class="limit" x1="{pad}" x2="{width - pad}" y1="{ty}" y2="{ty}"/>')
    segment: list[str] = []
    segments: list[list[str]] = []
    for i, v in enumerate(points):
        if v is None:
            if segment:
                segments.append(segment)
            segment = []
            continue
        x, y = xy(i, v)
        segment.append(f"{x},{y}")
    if segment:
        segments.append(segment)
    for seg in segments:
        parts.append(f'<polyline class="line" points="{" ".join(seg)}"/>')
    last_i = max((i for i, v in enumerate(points) if v is not None), default=None)
    if last_i is not None:
        x, y = xy(last_i, points[last_i] or 0.0)
        parts.append(f'<circle cx="{x}" cy="{y}" r="2.4" fill="currentColor"/>')
    parts.append("</svg>")
    return "".join(parts)


def _threshold(h: HostResult) -> float:
    for f in h.checks:
        if f.id == "cpu.system" and isinstance(f.evidence.get("threshold_pct"), int | float):
            return float(f.evidence["threshold_pct"])
    return CPU_THRESHOLD_PCT


def _drift(data: ReportData) -> str:
    drift = data.drift
    changed = " changed" if drift.changed else ""
    out = [f'<section id="drift" class="drift{changed}" aria-labelledby="drift-h">']
    out.append(f'<h2 id="drift-h">{_e(drift_text.heading(drift))}</h2>')
    for s in drift_text.sections(drift, data.run.started_at):
        # What goes on unchanged (still failing, still down) folds away; changes stay open.
        steady = s.key.startswith("still_")
        tag = "details" if steady else "div"
        out.append(f'<{tag} class="drift-group" data-drift="{s.key}">')
        title = f'{_e(s.title)} <span class="n">{len(s.rows)}</span>'
        out.append(f"<summary>{title}</summary><ul>" if steady else f"<h3>{title}</h3><ul>")
        for row in s.rows:
            host, rest = row[0], [c for c in row[1:] if c]
            out.append(
                f"<li><strong>{_e(host)}</strong> " + " · ".join(_e(c) for c in rest) + "</li>"
            )
        out.append(f"</ul></{tag}>")
    if not drift.changed and not drift.unavailable:
        out.append("<p>No change since the previous run.</p>")
    out.append("</section>")
    return "\n".join(out)


def _summary(data: ReportData) -> str:
    counts = data.host_counts()
    tiles = [("hosts", counts["hosts"])] + [(s, counts[s]) for s in HOST_STATES]
    out = ['<section id="summary" class="summary" aria-label="summary">']
    for key, value in tiles:
        out.append(
            f'<div class="tile s-{key}"><span class="num" data-count="{key}">{value}</span>'
            f'<span class="label">{_e(key)}</span></div>'
        )
    out.append("</section>")
    return "\n".join(out)


def _waivers(data: ReportData) -> str:
    if not data.waivers.uses:
        return ""
    out = ['<section id="waivers"><h2>Waivers</h2><table class="waivers">']
    out.append(
        "<thead><tr><th>Waiver</th><th>Hosts</th><th>Check</th><th>State</th><th>Owner</th>"
        "<th>Matched</th><th>Reason</th></tr></thead><tbody>"
    )
    for use in data.waivers.uses:
        w = use.waiver
        state = (
            f'<span class="waiver expired">EXPIRED {w.expires}</span>'
            if use.expired
            else f'<span class="waiver">until {w.expires}</span>'
        )
        cells = [
            ("Waiver", _e(w.source)),
            ("Hosts", f"<code>{_e(w.host)}</code>"),
            ("Check", f"<code>{_e(w.check)}</code>"),
            ("State", state),
            ("Owner", _e(w.owner)),
            ("Matched", _e(", ".join(use.hosts) or "-")),
            ("Reason", _e(w.reason)),
        ]
        out.append("<tr>" + "".join(f'<td data-label="{k}">{v}</td>' for k, v in cells) + "</tr>")
    out.append("</tbody></table></section>")
    return "\n".join(out)


def _chips(data: ReportData, h: HostResult) -> str:
    if h.error and not h.checks:
        return _e(h.error)
    chips = []
    for f in data.failing(h):
        mark = data.mark(h, f)
        note = ' <span class="x">waiver expired</span>' if mark and mark.expired else ""
        chips.append(f"<code>{_e(f.id)}</code>{note}")
    chips += [
        f'<code class="w">{_e(f.id)}</code> <span class="w">waived</span>' for f in data.waived(h)
    ]
    chips += [
        f'<code>{_e(f.id)}</code> <span class="badge s-error">error</span>'
        for f in h.checks
        if f.status == ERROR
    ]
    if h.error:
        chips.append(_e(h.error))
    warns = sum(f.status == WARN for f in h.checks)
    if warns:
        chips.append(f'<span class="sev">+{warns} warn</span>')
    return " ".join(chips) or "-"


def _hosts(data: ReportData) -> str:
    out = ['<section id="hosts"><h2>Hosts</h2><table class="hosts">']
    out.append(
        "<thead><tr><th>Host</th><th>Status</th><th>System CPU</th>"
        "<th>Failing checks</th></tr></thead><tbody>"
    )
    for i, h in enumerate(data.run.hosts):
        state = data.host_state(h)
        series = [v for _, v in data.cpu_history.get(h.name, [])]
        if not series:
            series = [h.cpu.system_pct if h.cpu else None]
        pct = f"{h.cpu.system_pct:.1f}%" if h.cpu else "-"
        out.append(
            f'<tr class="host" data-host="{_e(h.name)}" data-status="{state}">'
            f'<td data-label="Host"><a href="#h{i}">{_e(h.name)}</a></td>'
            f'<td data-label="Status"><span class="badge s-{state}">{state}</span></td>'
            f'<td data-label="System CPU" class="cpu"><span class="pct">{pct}</span>'
            f"{sparkline(series, _threshold(h))}</td>"
            f'<td data-label="Failing" class="chips">{_chips(data, h)}</td></tr>'
        )
    out.append("</tbody></table></section>")
    return "\n".join(out)


def _check(data: ReportData, h: HostResult, f: Finding) -> str:
    state = data.check_state(h, f)
    out = [f'<div class="check" data-check="{_e(f.id)}" data-status="{state}">']
    out.append(
        f'<div class="head"><span class="badge s-{state}">{state.upper()}</span>'
        f'<code>{_e(f.id)}</code><span class="sev">{_e(f.severity)}</span></div>'
    )
    out.append(f"<p>{_e(f.summary)}</p>")
    mark = data.mark(h, f)
    if mark is not None:
        w = mark.waiver
        if mark.expired:
            out.append(
                f'<p class="waiver expired">Waiver expired on {w.expires} ({_e(w.source)}, '
                f"{_e(w.owner)}): this failure counts again.</p>"
            )
        else:
            out.append(
                f'<p class="waiver">Waived until {w.expires} by {_e(w.owner)}: '
                f"{_e(w.reason)} ({_e(w.source)})</p>"
            )
    if f.evidence:
        out.append(f"<h4>Evidence</h4><pre>{_e(json.dumps(f.evidence, indent=2))}</pre>")
    if f.fix:
        out.append(f'<h4>Remediation</h4><pre class="fix">{_e(f.fix)}</pre>')
    out.append("</div>")
    return "\n".join(out)


def _details(data: ReportData) -> str:
    out = ['<section id="checks"><h2>Checks, evidence and remediation</h2>']
    rank = {s: i for i, s in enumerate(CHECK_STATES)}
    for i, h in enumerate(data.run.hosts):
        state = data.host_state(h)
        out.append(
            f'<details class="host" id="h{i}"><summary>{_e(h.name)} '
            f'<span class="badge s-{state}">{state}</span></summary>'
        )
        if h.error:
            out.append(f"<p>{_e(h.error)}</p>")
        checks = sorted(h.checks, key=lambda f: rank.get(data.check_state(h, f), 9))
        out.extend(_check(data, h, f) for f in checks)
        out.append("</details>")
    out.append("</section>")
    return "\n".join(out)


def render_html(data: ReportData) -> str:
    run = data.run
    counts = data.host_counts()
    title = (
        f"fleet report: {counts['non-compliant']} non-compliant of {counts['hosts']} hosts, "
        f"{run.started_at}"
    )
    run_ref = f"run {data.run_id}" if data.run_id is not None else "not recorded"
    meta = (
        f"{run_ref} · audit {run.started_at} to {run.finished_at} · playbook "
        f"<code>{_e(data.playbook)}</code> · source {_e(data.source)}"
    )
    body = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f'<meta name="generator" content="fleet {__version__}">',
        f"<title>{_e(title)}</title>",
        f"<style>{CSS}{FLAME_CSS}</style></head><body>",
        f'<header><h1>fleet report</h1><p class="meta">{meta}</p></header>',
        "<main>",
        _drift(data),
        _summary(data),
        f'<p class="meta" id="summary-line">{_e(data.summary_line())}</p>',
        _waivers(data),
        _hosts(data),
        _details(data),
        profiles_section(
            [h.profile for h in run.hosts if h.profile is not None],
            "Where the CPU goes (fleet profile)",
        ),
        "</main>",
        f"<footer><p>fleet {__version__} · exit code {data.exit_code()}</p></footer>",
        "</body></html>",
    ]
    return "\n".join(b for b in body if b) + "\n"
