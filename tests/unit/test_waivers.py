"""Waivers: the file format (errors name file:line), matching, expiry, what they never hide."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from fleet.errors import UsageError
from fleet.report.waivers import WaiverError, apply_waivers, load_waivers
from tests.reportkit import host, waiver

TODAY = date(2026, 11, 26)

GOOD = """\
# accepted risks
waivers:
  - host: "half-fixed-*"
    check: netdata.ebpf
    reason: netdata 1.37 rollout is CHG-1234
    owner: ops@example.com
    expires: 2026-12-31

  - host: incident-01
    check: "cpu.*"
    reason: load test
    owner: perf@example.com
    expires: "2026-01-01"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "waivers.yml"
    path.write_text(text)
    return path


def test_file_is_read_with_each_waiver_naming_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    first, second = load_waivers(path)
    assert (first.host, first.check, first.owner) == (
        "half-fixed-*",
        "netdata.ebpf",
        "ops@example.com",
    )
    assert first.expires == date(2026, 12, 31) and first.source == f"{path}:3"
    assert second.expires == date(2026, 1, 1) and second.source == f"{path}:9"


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        (GOOD.replace("    owner: ops@example.com\n", ""), 3, "missing 'owner'"),
        (GOOD.replace("2026-12-31", "soon"), 3, "'expires' must be a date"),
        (
            GOOD.replace("    reason: load test\n", "    reasn: load test\n"),
            9,
            "unknown key 'reasn'",
        ),
        (GOOD.replace("check: netdata.ebpf", "check: ''"), 3, "'check' must be a non-empty string"),
        ("waivers:\n  - just a string\n", 1, "expected a mapping"),
        ("waiver:\n  - host: a\n", 1, "expected one key, 'waivers:'"),
        ("waivers:\n  - host: a\n    host: b\n", 3, "duplicate key 'host'"),
        ("waivers: [\n", 2, ""),
    ],
)
def test_bad_files_are_one_error_naming_file_and_line(
    tmp_path: Path, text: str, line: int, message: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(WaiverError) as exc:
        load_waivers(path)
    assert str(exc.value).startswith(f"{path}:{line}:"), exc.value
    assert message in str(exc.value)
    assert isinstance(exc.value, UsageError)  # exit 2 at the CLI


def test_missing_file_and_empty_file(tmp_path: Path) -> None:
    with pytest.raises(WaiverError, match="no such file"):
        load_waivers(tmp_path / "nope.yml")
    assert load_waivers(write(tmp_path, "")) == []
    assert load_waivers(write(tmp_path, "waivers: []\n")) == []


def test_an_active_waiver_marks_the_failure_waived_on_matching_hosts_only() -> None:
    hosts = [
        host("half-fixed-03", failing=("netdata.ebpf",)),
        host("incident-01", failing=("netdata.ebpf",)),
    ]
    outcome = apply_waivers(hosts, [waiver("half-fixed-*")], TODAY)
    assert outcome.waived == frozenset({("half-fixed-03", "netdata.ebpf")})
    assert outcome.uses[0].hosts == ("half-fixed-03",) and not outcome.uses[0].expired
    assert outcome.warnings() == []


def test_errors_and_warnings_are_never_waived() -> None:
    hosts = [host("a", errors=("netdata.ebpf",)), host("b", warns=("netdata.ebpf",))]
    outcome = apply_waivers(hosts, [waiver("*")], TODAY)
    assert outcome.marks == {} and outcome.uses[0].hosts == ()


def test_expired_waiver_waives_nothing_and_says_so_naming_file_and_line() -> None:
    hosts = [host("incident-01", failing=("cpu.system",))]
    old = waiver("incident-*", "cpu.*", expires=date(2026, 1, 1), line=9)
    outcome = apply_waivers(hosts, [old], TODAY)
    assert outcome.waived == frozenset()
    assert outcome.marks[("incident-01", "cpu.system")].expired
    (warning,) = outcome.warnings()
    assert warning.startswith("w.yml:9: waiver of cpu.* on 'incident-*'")
    assert "expired on 2026-01-01" in warning and "incident-01 counts again" in warning


def test_a_waiver_expires_on_its_expiry_day() -> None:
    hosts = [host("a", failing=("netdata.ebpf",))]
    w = waiver("a", expires=TODAY)
    assert apply_waivers(hosts, [w], date(2026, 11, 25)).waived
    assert not apply_waivers(hosts, [w], TODAY).waived


def test_a_renewed_waiver_below_the_expired_one_wins() -> None:
    hosts = [host("a", failing=("netdata.ebpf",))]
    old, new = waiver("a", expires=date(2026, 1, 1), line=2), waiver("a", line=8)
    outcome = apply_waivers(hosts, [old, new], TODAY)
    assert outcome.marks[("a", "netdata.ebpf")].waiver.source == "w.yml:8"
    assert outcome.waived
    # the old one still warns: it should be deleted
    assert [w.split(":")[1] for w in outcome.warnings()] == ["2"]


def test_an_expired_waiver_that_matches_nothing_still_warns() -> None:
    outcome = apply_waivers([host("a")], [waiver("a", expires=date(2025, 1, 1))], TODAY)
    assert "matches no failing check now: remove it" in outcome.warnings()[0]
