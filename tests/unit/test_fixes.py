"""Remediation planning (pure): netdata.conf edits, step plans from facts, the CPU verdict."""

from __future__ import annotations

from pathlib import Path

import pytest

from fleet.audit.cpu import parse_proc_stat
from fleet.audit.facts import host_facts
from fleet.audit.netdataconf import load_netdata_config, set_netdata_value
from fleet.config.playbook import load_playbook
from fleet.lab.trees import make_host_tree
from fleet.remediate.plan import PlanInput, plan_step, render_diff
from fleet.remediate.verdict import IMPROVED, NOT_MEASURED, UNCHANGED, WORSE, cpu_verdict, intervals
from tests.helpers import run_probe

STOCK = Path(__file__).parents[2] / "fleet/lab/stock/netdata.conf.1.36.1"


# --- netdata.conf -------------------------------------------------------------------------


def test_ebpf_line_goes_after_its_commented_default_and_nothing_else_moves() -> None:
    text = "[global]\n    run as user = netdata\n\n[plugins]\n    # apps = yes\n    # ebpf = yes\n"
    assert set_netdata_value(text, "plugins", "ebpf", "no") == text + "    ebpf = no\n"


def test_an_active_line_keeps_its_spacing_and_line_ending() -> None:
    text = "[plugins]\r\n\tebpf   =  yes  \r\n[web]\r\n"
    assert set_netdata_value(text, "plugins", "ebpf", "no") == (
        "[plugins]\r\n\tebpf   =  no  \r\n[web]\r\n"
    )


def test_other_case_sections_and_keys_are_not_netdatas_and_stay_as_they_are() -> None:
    # netdata compares names case-sensitively: [Plugins] EBPF is not [plugins] ebpf.
    text = "[Plugins]\r\n\tEBPF = no\r\n[web]\r\n"
    assert set_netdata_value(text, "plugins", "ebpf", "no") == (
        text + "\r\n[plugins]\r\n\tebpf = no\r\n"
    )


def test_every_active_line_of_the_key_changes_since_netdata_reads_the_last() -> None:
    text = "[plugins]\n    ebpf = yes\n    apps = yes\n    ebpf = on\n"
    assert set_netdata_value(text, "plugins", "ebpf", "no").count("ebpf = no") == 2


def test_a_missing_section_is_appended_after_a_blank_line() -> None:
    assert set_netdata_value("[global]\n  x = 1", "plugins", "ebpf", "no") == (
        "[global]\n  x = 1\n\n[plugins]\n\tebpf = no\n"
    )


def test_a_key_missing_from_its_section_goes_after_the_sections_last_line() -> None:
    text = "[plugins]\n  apps = yes\n\n[web]\n  bind to = 127.0.0.1\n"
    assert set_netdata_value(text, "plugins", "ebpf", "no") == (
        "[plugins]\n  apps = yes\n\tebpf = no\n\n[web]\n  bind to = 127.0.0.1\n"
    )


def test_a_key_hidden_in_the_tail_of_a_long_comment_is_edited_where_netdata_reads_it() -> None:
    text = "[plugins]\n#" + "x" * 8190 + "ebpf = yes\n"
    new = set_netdata_value(text, "plugins", "ebpf", "no")
    assert new == "[plugins]\n#" + "x" * 8190 + "ebpf = no\n"
    assert load_netdata_config(new).get("plugins", "ebpf").value == "no"  # type: ignore[union-attr]


def test_the_stock_netdata_conf_changes_by_one_inserted_line() -> None:
    stock = STOCK.read_text()
    new = set_netdata_value(stock + "[plugins]\n    # ebpf = yes\n", "plugins", "ebpf", "no")
    assert new.splitlines() == (stock + "[plugins]\n    # ebpf = yes\n    ebpf = no\n").splitlines()


# --- plans from a lab host's facts ----------------------------------------------------------


def facts_of(tmp_path: Path, scenario: str):  # type: ignore[no-untyped-def]
    root = tmp_path / scenario
    make_host_tree(root, scenario, 1)
    out, _proc = run_probe(root)
    return host_facts(out), root


def test_incident_host_plans_every_step_with_its_undo(tmp_path: Path) -> None:
    facts, root = facts_of(tmp_path, "incident")
    conf = (root / "etc/netdata/netdata.conf").read_text()
    inp = PlanInput(
        "systemctl restart netdata",
        {"/etc/netdata/netdata.conf": (conf, None)},
        {"netdata.ebpf": "fail"},
        ("ras:*",),
    )
    netdata = plan_step("netdata.ebpf_off", facts, inp)
    assert netdata is not None and [o.mode for o in netdata.ops] == ["file", "run"]
    assert netdata.undo[0].data == conf and netdata.undo[0].expect == netdata.ops[0].data
    events = plan_step("tracing.probe_events_off", facts, inp)
    assert events is not None
    assert [(o.path, o.expect, o.data) for o in events.ops] == [
        ("/sys/kernel/tracing/events/kprobes/fleet_tcp_sendmsg/enable", "1\n", "0\n")
    ]
    set_event = plan_step("tracing.set_event_clear", facts, inp)
    assert set_event is not None and set_event.ops[0].mode == "trunc"
    assert set_event.undo[0].mode == "append" and "sched:sched_switch" in set_event.undo[0].data
    disarm = plan_step("kprobes.disarm", facts, inp)
    assert disarm is not None and disarm.ops[0].data == "0\n"
    assert any("1 -> 0" in line for line in render_diff(disarm))


def test_an_event_with_triggers_is_disabled_and_expected_to_read_0_star(tmp_path: Path) -> None:
    # A real 6.1 kernel reads "1*" while triggers are attached and "0*" after `echo 0`: the
    # probe stays armed for the triggers (tests/fixtures/captured-qemu/e2e, enable0_with_trigger).
    root = tmp_path / "incident"
    make_host_tree(root, "incident", 1)
    (root / "sys/kernel/tracing/events/kprobes/fleet_tcp_sendmsg/enable").write_text("1*\n")
    out, _proc = run_probe(root)
    facts = host_facts(out)
    assert facts.event_enable["kprobes/fleet_tcp_sendmsg"][""] == "1*"
    step = plan_step("tracing.probe_events_off", facts, PlanInput("true"))
    assert step is not None
    path = "/sys/kernel/tracing/events/kprobes/fleet_tcp_sendmsg/enable"
    assert [(o.path, o.expect, o.data) for o in step.ops] == [(path, "1*\n", "0\n")]
    assert [(o.expect, o.data) for o in step.undo] == [("0*\n", "1\n")]
    # Once it reads "0*" there is nothing an enable write can do: the step plans nothing.
    (root / path.lstrip("/")).write_text("0*\n")
    out, _proc = run_probe(root)
    assert plan_step("tracing.probe_events_off", host_facts(out), PlanInput("true")) is None


def test_allowed_events_stay_and_the_others_go_one_token_each(tmp_path: Path) -> None:
    facts, _root = facts_of(tmp_path, "incident")
    inp = PlanInput("true", set_event_allow=("sched:*",))
    step = plan_step("tracing.set_event_clear", facts, inp)
    assert step is not None
    op = step.ops[0]
    assert op.mode == "append"
    assert "!irq:softirq_entry" in op.data.splitlines()
    assert not any(t.startswith("!sched:") for t in op.data.splitlines())
    assert step.changes[0].after == "sched:sched_switch\nsched:sched_wakeup\n"


def test_a_clean_host_plans_nothing(tmp_path: Path) -> None:
    facts, _root = facts_of(tmp_path, "clean")
    inp = PlanInput("true", check_status={"netdata.ebpf": "pass"}, set_event_allow=("ras:*",))
    steps = ["netdata.ebpf_off", "tracing.probe_events_off", "tracing.set_event_clear"]
    assert [plan_step(s, facts, inp) for s in [*steps, "kprobes.disarm"]] == [None] * 4


def test_locked_down_kprobes_are_reported_not_written(tmp_path: Path) -> None:
    facts, _root = facts_of(tmp_path, "lockdown")
    step = plan_step("kprobes.disarm", facts, PlanInput("true"))
    assert step is not None and not step.ops
    assert step.blocked is not None and "ENXIO" in step.blocked and "integrity" in step.blocked


def test_netdata_configured_off_but_still_running_is_only_restarted(tmp_path: Path) -> None:
    facts, _root = facts_of(tmp_path, "incident")
    step = plan_step(
        "netdata.ebpf_off",
        facts,
        PlanInput("rc-service netdata restart", check_status={"netdata.ebpf": "warn"}),
    )
    assert step is not None and [o.mode for o in step.ops] == ["run"] and not step.undo


def test_unreadable_netdata_conf_blocks_the_step(tmp_path: Path) -> None:
    facts, _root = facts_of(tmp_path, "incident")
    denied = (None, "cat: netdata.conf: Permission denied")
    inp = PlanInput("true", {"/etc/netdata/netdata.conf": denied}, {"netdata.ebpf": "fail"})
    step = plan_step("netdata.ebpf_off", facts, inp)
    assert step is not None and step.blocked is not None and "Permission denied" in step.blocked


def test_the_shipped_playbook_lists_the_steps_in_kernel_order() -> None:
    pb = load_playbook(Path(__file__).parents[2] / "playbooks/kernel-tracing.yml")
    assert [f.id for f in pb.fixes] == [
        "netdata.ebpf_off",
        "tracing.probe_events_off",
        "tracing.set_event_clear",
        "kprobes.disarm",
    ]


def test_a_playbook_with_fixes_out_of_order_is_refused(tmp_path: Path) -> None:
    from fleet.errors import PlaybookError

    path = tmp_path / "pb.yml"
    path.write_text(
        "checks:\n  - id: cpu.system\nfixes:\n  - id: kprobes.disarm\n  - id: netdata.ebpf_off\n"
    )
    with pytest.raises(PlaybookError, match=r"pb.yml:5: fix netdata.ebpf_off must come before"):
        load_playbook(path)


# --- the CPU verdict ----------------------------------------------------------------------


def stat_series(sys_pcts: list[float], cpus: int = 4, hz: int = 100) -> list[str]:
    """/proc/stat samples a second apart with the given system share in each interval."""
    samples = []
    user = system = idle = 0
    for i in range(len(sys_pcts) + 1):
        lines = [f"cpu  {user * cpus} 0 {system * cpus} {idle * cpus} 0 0 0 0 0 0"]
        lines += [f"cpu{n} {user} 0 {system} {idle} 0 0 0 0 0 0" for n in range(cpus)]
        samples.append("\n".join(lines) + "\n")
        if i < len(sys_pcts):
            s = round(sys_pcts[i] * hz / 100)
            system += s
            user += 5
            idle += hz - s - 5
    return samples


def test_a_fall_beyond_the_noise_is_improved() -> None:
    before = intervals(stat_series([74, 77, 75, 76, 73]))
    after = intervals(stat_series([4, 5, 3, 4, 5]))
    v = cpu_verdict(before, after, 2.0)
    assert v.verdict == IMPROVED and v.before_mean == 75.0 and v.after_mean == 4.2


def test_a_change_within_the_spread_of_the_samples_is_unchanged() -> None:
    before = intervals(stat_series([8, 55, 20, 40, 12]))
    after = intervals(stat_series([30, 10, 45, 15, 25]))
    assert cpu_verdict(before, after, 2.0).verdict == UNCHANGED


def test_a_rise_beyond_the_noise_is_worse() -> None:
    v = cpu_verdict(intervals(stat_series([5, 6, 5])), intervals(stat_series([40, 42, 41])))
    assert v.verdict == WORSE


def test_one_interval_or_lost_ticks_is_not_measured() -> None:
    one = cpu_verdict(intervals(stat_series([70])), intervals(stat_series([5])))
    assert one.verdict == NOT_MEASURED and "at least 2" in one.reason
    lossy = intervals(stat_series([70, 72, 71], hz=30))  # an emulated CPU's missing ticks
    v = cpu_verdict(lossy, intervals(stat_series([5, 5, 5])))
    assert v.verdict == NOT_MEASURED and "lost ticks" in v.reason


def test_interval_parsing_uses_each_consecutive_pair() -> None:
    samples = stat_series([10, 20, 30])
    assert [round(f.system_pct) for f in intervals(samples)] == [10, 20, 30]
    assert parse_proc_stat(samples[0])["cpu0"].system == 0
