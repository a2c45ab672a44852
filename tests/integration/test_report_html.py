"""The HTML report in real headless Chromium: the DOM's summary numbers, no sideways scroll
on a phone, type that grows on a wall screen, a CPU chart per host, and screenshots."""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleet import lab
from tests.browser import Chromium, find_chromium
from tests.integration.test_report import report

OUTPUT = Path(__file__).resolve().parents[1] / "output"  # gitignored


@pytest.fixture(scope="module")
def chromium() -> Iterator[Chromium]:
    binary = find_chromium()
    if binary is None:
        message = "chromium not installed: apt-get install -y chromium (make test does, as root)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    browser = Chromium(binary)
    try:
        yield browser
    finally:
        browser.close()


def png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", head[16:24])
    return width, height


COUNTS_JS = (
    "Object.fromEntries([...document.querySelectorAll('[data-count]')]"
    ".map(e => [e.dataset.count, Number(e.textContent)]))"
)
OVERFLOW_JS = "document.documentElement.scrollWidth - window.innerWidth"
FONT_JS = "parseFloat(getComputedStyle(document.documentElement).fontSize)"


def test_html_report_in_chromium_on_a_phone_and_a_wall_screen(
    lab6: lab.LabInfo, tmp_path: Path, chromium: Chromium, capsys: pytest.CaptureFixture[str]
) -> None:
    state, page_file, doc_file = tmp_path / "state", tmp_path / "report.html", tmp_path / "r.json"
    for _ in range(2):  # two runs: the CPU charts have a history to draw
        proc = report(
            state,
            *("-i", lab6.inventory, "--cpu-window", "1"),
            *("--format", f"html:{page_file}", "--format", f"json:{doc_file}"),
        )
        assert proc.returncode == 5, proc.stderr
    summary = json.loads(doc_file.read_text())["summary"]
    url = page_file.resolve().as_uri()

    phone = chromium.open(url, 390, 844, mobile=True)
    counts = phone.evaluate(COUNTS_JS)
    assert counts == {
        "hosts": summary["hosts"],
        "compliant": summary["compliant"],
        "non-compliant": summary["non_compliant"],
        "error": summary["error"],
        "unreachable": summary["unreachable"],
        "waived": 0,
    }
    assert counts["hosts"] == 6 and counts["non-compliant"] == 3
    assert phone.evaluate("document.querySelector('main').firstElementChild.id") == "drift"
    # one chart per host; the reached ones drew both runs
    points = phone.evaluate(
        "[...document.querySelectorAll('tr.host')].map(r => [r.dataset.host, "
        "[...r.querySelectorAll('svg.spark polyline')].map(p => p.points.numberOfItems)])"
    )
    assert [name for name, _ in points] == lab6.hosts
    assert dict(points)[lab6.hosts[0]] == [2] and dict(points)[lab6.hosts[5]] == []
    assert phone.evaluate(OVERFLOW_JS) <= 0  # no sideways scrolling on a phone
    phone.evaluate("document.querySelectorAll('details').forEach(d => d.open = true)")
    assert phone.evaluate(OVERFLOW_JS) <= 0  # not even with every check's evidence open
    assert phone.evaluate(
        "[...document.querySelectorAll('pre.fix')].some(p => "
        "p.textContent.includes('echo 0 > /sys/kernel/debug/kprobes/enabled'))"
    )
    phone.evaluate("document.querySelectorAll('details.host').forEach(d => d.open = false)")
    phone_font = phone.evaluate(FONT_JS)
    phone_shot = phone.screenshot(OUTPUT / "report-phone.png")

    wall = chromium.open(url, 1920, 1080)
    assert wall.evaluate(COUNTS_JS) == counts
    assert wall.evaluate(OVERFLOW_JS) <= 0
    assert wall.evaluate(FONT_JS) > phone_font  # type grows with the screen
    wall_shot = wall.screenshot(OUTPUT / "report-wall.png", full_page=False)

    assert png_size(phone_shot)[0] == 390 and png_size(phone_shot)[1] > 844
    assert png_size(wall_shot) == (1920, 1080)
    assert phone_shot.stat().st_size > 20_000 and wall_shot.stat().st_size > 20_000  # not blank
    with capsys.disabled():
        print(f"\nscreenshots: {phone_shot} {wall_shot}")


FLAME_JS = (
    "Object.fromEntries([...document.querySelectorAll('#profiles section.host')].map(s => ["
    "s.querySelector('h2').textContent, {"
    "graphs: s.querySelectorAll('svg.flame').length, "
    "probe: [...s.querySelectorAll('svg.flame rect')].filter("
    "r => r.getAttribute('fill') === '#d62728').length, "
    "frames: s.querySelectorAll('svg.flame rect').length}]))"
)


def test_report_profile_draws_a_flame_graph_per_host_with_probe_frames_in_red(
    lab6: lab.LabInfo, tmp_path: Path, chromium: Chromium
) -> None:
    page_file, prom = tmp_path / "report.html", tmp_path / "fleet.prom"
    proc = report(
        tmp_path / "state",
        *("-i", lab6.inventory, "--cpu-window", "1", "--profile"),
        *("--format", f"html:{page_file}", "--format", f"prometheus:{prom}"),
    )
    assert proc.returncode == 5, proc.stderr
    wall = chromium.open(page_file.resolve().as_uri(), 1920, 1080)
    graphs = wall.evaluate(FLAME_JS)
    reached = [h for h in lab6.hosts if not h.startswith("down")]
    assert sorted(graphs) == sorted(reached)  # an unreachable host has no profile to draw
    assert all(graphs[h]["graphs"] == 1 and graphs[h]["frames"] > 20 for h in reached)
    assert graphs["incident-01"]["probe"] > 0  # kprobe machinery, in the probe colour
    assert graphs["clean-02"]["probe"] == 0
    wall.evaluate("document.getElementById('profiles').scrollIntoView()")
    shot = wall.screenshot(OUTPUT / "profile-flamegraph.png", full_page=False)
    assert png_size(shot)[0] >= 1920
    phone = chromium.open(page_file.resolve().as_uri(), 390, 844, mobile=True)
    assert phone.evaluate(OVERFLOW_JS) <= 0  # the graphs scale down to a phone

    text = prom.read_text()
    assert 'fleet_host_profile_share_ratio{host="incident-01",kind="hooks"}' in text
    tool = shutil.which("promtool") or shutil.which(
        "promtool", path=str(Path(sys.executable).parent)
    )
    if tool is not None:  # its own tests fail under CI without it (tests/unit/test_alert_rules.py)
        lint = subprocess.run([tool, "check", "metrics"], input=text.encode(), capture_output=True)
        assert lint.returncode == 0, lint.stdout.decode() + lint.stderr.decode()
