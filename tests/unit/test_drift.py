"""Drift between runs (pure): new, fixed, still failing since, unreachable, flapping."""

from __future__ import annotations

from fleet.report.drift import (
    FLAP_WINDOW,
    CheckMark,
    HostPast,
    Past,
    RunRef,
    compute_drift,
    duration,
)
from tests.reportkit import host

T0 = "2026-11-20T06:00:00Z"
NOW = "2026-11-26T06:00:00Z"
PREV = RunRef(7, "2026-11-25T06:00:00Z")


def past_of(checks: dict[str, str]) -> HostPast:
    """A host reached in the previous run with these check statuses (failing since T0)."""
    marks = {cid: CheckMark(st, T0 if st == "fail" else None) for cid, st in checks.items()}
    return HostPast("non-compliant", None, PREV.started_at, marks, {})


def test_first_run_reports_every_failure_and_unreachable_host_as_new() -> None:
    hosts = [host("a", failing=("netdata.ebpf",)), host("b", unreachable="refused")]
    drift, streaks = compute_drift(hosts, NOW, Past())
    assert drift.previous_run is None
    assert [(c.host, c.check, c.since) for c in drift.new_failures] == [("a", "netdata.ebpf", NOW)]
    assert [(h.host, h.last_reached) for h in drift.became_unreachable] == [("b", None)]
    assert drift.changed
    assert streaks.failing_since == {("a", "netdata.ebpf"): NOW}
    assert streaks.unreachable_since == {"b": NOW}


def test_new_fixed_and_still_failing_against_the_previous_run() -> None:
    past = Past(
        PREV,
        {"a": past_of({"netdata.ebpf": "fail", "cpu.system": "pass", "tracing.set_event": "fail"})},
    )
    now = host("a", failing=("cpu.system", "tracing.set_event"))
    drift, streaks = compute_drift([now], NOW, past)
    assert [c.check for c in drift.new_failures] == ["cpu.system"]
    assert [(c.check, c.since) for c in drift.fixed] == [("netdata.ebpf", T0)]
    assert [(c.check, c.since) for c in drift.still_failing] == [("tracing.set_event", T0)]
    # the stored streak keeps the first-seen time, so the next run still knows it
    assert streaks.failing_since == {("a", "cpu.system"): NOW, ("a", "tracing.set_event"): T0}
    assert drift.previous_run == PREV


def test_a_failure_that_turns_into_an_error_is_not_fixed() -> None:
    past = Past(PREV, {"a": past_of({"kprobes.registered": "fail"})})
    drift, _ = compute_drift([host("a", errors=("kprobes.registered",))], NOW, past)
    assert drift.fixed == () and drift.new_failures == ()


def test_nothing_changed_is_not_drift_even_with_failures_going_on() -> None:
    past = Past(PREV, {"a": past_of({"netdata.ebpf": "fail"})})
    drift, _ = compute_drift([host("a", failing=("netdata.ebpf",))], NOW, past)
    assert not drift.changed and len(drift.still_failing) == 1


def test_host_back_from_unreachable_compares_with_its_last_reached_run() -> None:
    # Last audit: unreachable. Before that it was reached with netdata.ebpf failing.
    before = HostPast(
        "unreachable",
        "2026-11-24T06:00:00Z",
        "2026-11-23T06:00:00Z",
        {"netdata.ebpf": CheckMark("fail", T0), "cpu.system": CheckMark("pass")},
        {},
    )
    drift, _ = compute_drift([host("a", failing=("netdata.ebpf",))], NOW, Past(PREV, {"a": before}))
    assert drift.new_failures == () and drift.fixed == ()
    assert [(c.check, c.since) for c in drift.still_failing] == [("netdata.ebpf", T0)]


def test_became_unreachable_then_still_unreachable_since_the_first_miss() -> None:
    reached = past_of({"netdata.ebpf": "pass"})
    drift, streaks = compute_drift(
        [host("a", unreachable="timed out")], NOW, Past(PREV, {"a": reached})
    )
    assert [(h.host, h.error, h.last_reached) for h in drift.became_unreachable] == [
        ("a", "timed out", PREV.started_at)
    ]
    assert drift.changed and not drift.fixed  # unreachable is not "fixed"

    dark = HostPast("unreachable", streaks.unreachable_since["a"], PREV.started_at, {}, {})
    later = "2026-11-27T06:00:00Z"
    drift2, streaks2 = compute_drift(
        [host("a", unreachable="timed out")], later, Past(PREV, {"a": dark})
    )
    assert drift2.became_unreachable == ()
    assert [(h.host, h.since) for h in drift2.still_unreachable] == [("a", NOW)]
    assert streaks2.unreachable_since == {"a": NOW}
    assert not drift2.changed


def test_hosts_outside_this_run_are_not_reported() -> None:
    past = Past(PREV, {"gone": past_of({"netdata.ebpf": "fail"})})
    drift, _ = compute_drift([host("a")], NOW, past)
    assert drift.fixed == () and drift.became_unreachable == ()


def test_a_check_that_keeps_changing_is_flapping() -> None:
    recent = {"cpu.system": ["pass", "fail", "pass", "fail", "pass"]}
    before = HostPast("compliant", None, PREV.started_at, {"cpu.system": CheckMark("pass")}, recent)
    drift, _ = compute_drift([host("a", failing=("cpu.system",))], NOW, Past(PREV, {"a": before}))
    assert [(f.host, f.check, f.changes, f.runs) for f in drift.flapping] == [
        ("a", "cpu.system", 5, 6)
    ]
    assert drift.changed


def test_two_changes_are_not_flapping_and_the_window_forgets_old_ones() -> None:
    steady = {"cpu.system": ["fail", "pass", "pass"]}
    before = HostPast("compliant", None, PREV.started_at, {"cpu.system": CheckMark("pass")}, steady)
    drift, _ = compute_drift([host("a", failing=("cpu.system",))], NOW, Past(PREV, {"a": before}))
    assert drift.flapping == ()

    # three changes long ago, then quiet: outside the window of the last FLAP_WINDOW runs
    old = ["fail", "pass", "fail", "pass"] + ["pass"] * (FLAP_WINDOW - 1)
    before = HostPast(
        "compliant", None, PREV.started_at, {"cpu.system": CheckMark("pass")}, {"cpu.system": old}
    )
    drift, _ = compute_drift([host("a")], NOW, Past(PREV, {"a": before}))
    assert drift.flapping == ()


def test_waived_failures_are_still_drift_but_marked_waived() -> None:
    drift, _ = compute_drift(
        [host("a", failing=("netdata.ebpf",))], NOW, Past(), frozenset({("a", "netdata.ebpf")})
    )
    assert [(c.check, c.waived) for c in drift.new_failures] == [("netdata.ebpf", True)]


def test_json_has_every_list_and_the_changed_flag() -> None:
    drift, _ = compute_drift([host("a", failing=("netdata.ebpf",))], NOW, Past())
    doc = drift.to_json()
    assert set(doc) == {
        "previous_run",
        "changed",
        "new_failures",
        "fixed",
        "still_failing",
        "became_unreachable",
        "still_unreachable",
        "flapping",
        "unavailable",
    }
    assert doc["new_failures"][0] == {
        "host": "a",
        "check": "netdata.ebpf",
        "severity": "high",
        "since": NOW,
        "waived": False,
    }


def test_durations_read_like_a_person_would_say_them() -> None:
    assert duration(NOW, NOW) == "just now"
    assert duration("2026-11-26T05:59:15Z", NOW) == "45s"
    assert duration("2026-11-26T05:53:00Z", NOW) == "7m"
    assert duration("2026-11-26T00:48:00Z", NOW) == "5h 12m"
    assert duration(T0, NOW) == "6d 0h"
