"""The human formats (table, markdown, html) put drift first and never hide a waived failure;
the JSON format is the audit's schema 1 document plus `drift` and `waivers`."""

from __future__ import annotations

import json
import re
from datetime import date
from html.parser import HTMLParser

from fleet.render.html import render_html, sparkline
from fleet.render.json_out import audit_document
from fleet.render.markdown import render_markdown
from fleet.render.report_json import report_document
from fleet.render.report_table import render_report_table
from fleet.report.data import ReportData
from fleet.report.drift import CheckMark, HostPast, Past, RunRef, compute_drift
from tests.reportkit import host, report_data, run, waiver

PREV = RunRef(4, "2026-11-25T06:00:00Z")


def drifting() -> ReportData:
    """a: netdata.ebpf fixed, cpu.system new; b: went dark; c: waived failure going on."""
    hosts = [
        host("a", failing=("cpu.system",)),
        host("b", unreachable="connect to 192.0.2.1:22: Connection refused"),
        host("c", failing=("netdata.ebpf",)),
    ]
    was = {
        "a": HostPast(
            "non-compliant",
            None,
            PREV.started_at,
            {
                "netdata.ebpf": CheckMark("fail", "2026-11-20T06:00:00Z"),
                "cpu.system": CheckMark("pass"),
            },
        ),
        "b": HostPast("compliant", None, PREV.started_at, {}),
        "c": HostPast(
            "non-compliant",
            None,
            PREV.started_at,
            {"netdata.ebpf": CheckMark("fail", "2026-11-01T06:00:00Z")},
        ),
    }
    drift, _ = compute_drift(
        hosts, run(hosts).started_at, Past(PREV, was), frozenset({("c", "netdata.ebpf")})
    )
    return report_data(hosts, waivers=[waiver("c")], drift=drift)


def test_table_starts_with_drift_then_waivers_then_hosts() -> None:
    text = render_report_table(drifting())
    assert text.startswith("Drift since run 4 (2026-11-25T06:00:00Z)\n")
    order = [
        text.index(s)
        for s in (
            "New failures (1)",
            "Became unreachable (1)",
            "Fixed (1)",
            "Still failing (1)",
            "Waivers (1)",
            "HOST ",
        )
    ]
    assert order == sorted(order)
    assert re.search(
        r"^\s+a\s+netdata\.ebpf\s+had failed since 2026-11-20T06:00:00Z \(6d 0h\)$", text, re.M
    )
    assert re.search(r"^c\s+waived\s+4\.0\s+waived: netdata\.ebpf$", text, re.M)
    assert text.rstrip().endswith(
        "3 host(s): 0 compliant, 1 non-compliant, 1 waived, 0 error, 1 unreachable"
    )


def test_table_shortens_what_goes_on_unchanged_but_never_the_changes() -> None:
    hosts = [host(f"h{i:02d}", failing=("netdata.ebpf",)) for i in range(15)]
    was = {
        h.name: HostPast(
            "non-compliant",
            None,
            PREV.started_at,
            {"netdata.ebpf": CheckMark("fail", PREV.started_at)},
        )
        for h in hosts[:12]
    }
    drift, _ = compute_drift(hosts, run(hosts).started_at, Past(PREV, was))
    text = render_report_table(report_data(hosts, drift=drift))
    assert "  New failures (3):" in text and "  Still failing (12):" in text
    assert "    ... and 2 more (all in markdown, html, json)" in text
    assert len([line for line in text.splitlines() if "since 2026-11-25" in line]) == 10


def test_table_says_when_nothing_changed() -> None:
    data = report_data([host("a")])
    assert "Drift: first run in the history" in render_report_table(data)


def test_an_expired_waiver_is_named_next_to_the_failure() -> None:
    data = report_data(
        [host("a", failing=("netdata.ebpf",))], waivers=[waiver("a", expires=date(2026, 1, 1))]
    )
    text = render_report_table(data)
    assert re.search(r"^a\s+non-compliant\s+4\.0\s+netdata\.ebpf \(waiver expired\)$", text, re.M)
    assert "EXPIRED 2026-01-01" in text
    assert data.exit_code() == 1


def test_exit_code_ignores_waived_failures_only() -> None:
    assert (
        report_data([host("a", failing=("netdata.ebpf",))], waivers=[waiver("a")]).exit_code() == 0
    )
    assert report_data([host("a", failing=("netdata.ebpf",))]).exit_code() == 1
    assert (
        report_data(
            [host("a", failing=("netdata.ebpf",)), host("b", unreachable="x")],
            waivers=[waiver("a")],
        ).exit_code()
        == 4
    )


def test_markdown_puts_drift_before_the_summary_and_escapes_cells() -> None:
    data = drifting()
    data.run.hosts[0].checks[3] = (
        data.run.hosts[0]
        .checks[3]
        .__class__(
            "cpu.system", "fail", "high", "a | pipe and ```fence```", {"x": "```"}, "echo hi"
        )
    )
    text = render_markdown(data)
    assert text.index("## Drift since run 4") < text.index("## Summary") < text.index("## Hosts")
    assert "| a | cpu.system | high |  |" in text
    assert "<details><summary>Still failing (1)</summary>" in text
    assert "a \\| pipe" in text
    assert "````json" in text  # a fence longer than the backticks inside
    assert "- **WAIVED** `netdata.ebpf` [high]" in text
    assert "waived until 2099-01-01, ops@example.com: vendor fix pending; w.yml:2" in text


def test_markdown_shows_hostile_host_names_and_errors_as_written() -> None:
    data = report_data([host("a", failing=("netdata.ebpf",))])
    h = data.run.hosts[0]
    h.name = "evil|<img src=x onerror=alert(1)>**[x](http://e)**`#"
    h.error = "line1\n| broken | table |\n<script>"
    text = render_markdown(data)
    # Every markup character is escaped (CommonMark shows "\\<" as "<", as text).
    hostile = [line for line in text.splitlines() if "evil" in line or "line1" in line]
    assert len(hostile) == 3  # the hosts row, the heading, the error
    assert not any(
        re.search(r"(?<!\\)[<>*`#]|(?<!\\)\]\(", s.removeprefix("### ")) for s in hostile
    )
    row = next(line for line in text.splitlines() if "onerror" in line and line.startswith("|"))
    assert row.count(" | ") == 3  # four cells: the name did not add any
    assert "| evil\\|\\<img src" in text
    assert "### evil\\|\\<img src=x onerror=alert(1)\\>\\*\\*\\[x\\](http://e)" in text
    assert "- error: line1 \\| broken \\| table \\| \\<script\\>" in text


def test_json_is_the_audit_document_plus_drift_and_waivers() -> None:
    data = drifting()
    doc = report_document(data)
    audit = audit_document(data.run, "report", data.playbook)
    assert {k: v for k, v in doc.items() if k not in ("drift", "waivers")} == audit
    assert doc["command"] == "report" and doc["schema"] == 1
    assert doc["drift"]["run_id"] == 1
    assert doc["drift"]["previous_run"] == {"id": 4, "started_at": PREV.started_at}
    assert [c["check"] for c in doc["drift"]["fixed"]] == ["netdata.ebpf"]
    assert doc["waivers"] == [
        {
            "host": "c",
            "check": "netdata.ebpf",
            "reason": "vendor fix pending",
            "owner": "ops@example.com",
            "expires": "2099-01-01",
            "source": "w.yml:2",
            "expired": False,
            "hosts": ["c"],
        }
    ]
    # the hosts keep the audit's own statuses: a waived failure is still "fail" there
    c = next(h for h in doc["hosts"] if h["name"] == "c")
    assert c["status"] == "non-compliant"
    json.dumps(doc)


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def test_html_is_self_contained_and_escapes_what_it_shows() -> None:
    data = drifting()
    data.run.hosts[0].checks[3].evidence["html"] = "<script>alert(1)</script>"
    text = render_html(data)
    parser = _Tags()
    parser.feed(text)
    tags = [t for t, _ in parser.tags]
    assert "script" not in tags and "link" not in tags and "img" not in tags
    assert "iframe" not in tags
    for _, attrs in parser.tags:
        for key in ("src", "href"):
            value = attrs.get(key)
            assert value is None or value.startswith("#"), value
    assert "http://" not in text.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "https://" not in text and "@import" not in text and "url(" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text


def test_html_order_and_content() -> None:
    text = render_html(drifting())
    assert text.index('id="drift"') < text.index('id="summary"') < text.index('id="hosts"')
    counts = dict(re.findall(r'data-count="([a-z-]+)">(\d+)<', text))
    assert counts == {
        "hosts": "3",
        "non-compliant": "1",
        "error": "0",
        "unreachable": "1",
        "waived": "1",
        "compliant": "0",
    }
    assert text.count('<svg class="spark"') == 3
    assert 'data-drift="new_failures"' in text and 'data-drift="fixed"' in text
    assert "Waived until 2099-01-01 by ops@example.com" in text
    assert '<pre class="fix">echo 0 &gt; /sys/kernel/debug/kprobes/enabled</pre>' in text


def test_sparkline_draws_gaps_the_threshold_and_the_latest_point() -> None:
    svg = sparkline([10.0, None, 50.0, 80.0], 25.0)
    assert svg.count("<polyline") == 2  # the unknown run splits the line
    assert 'class="limit"' in svg and "<circle" in svg
    assert "latest 80.0%, min 10.0%, max 80.0%" in svg
    assert "<polyline" not in sparkline([None, None], 25.0)
