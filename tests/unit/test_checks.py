"""Checks on facts from real probe runs over small host trees (real sh, real grep)."""

from __future__ import annotations

from pathlib import Path

import pytest

from fleet.audit.checks import run_checks
from fleet.audit.facts import host_facts
from fleet.config.playbook import default_playbook_path, load_playbook
from fleet.errors import PlaybookError
from fleet.model import Finding, exit_code, host_status
from tests.helpers import run_probe, unreadable, write

PLAYBOOK = load_playbook(default_playbook_path())
HOT_LIST = "ffffffffa988bf40  r  tcp_sendmsg+0x0    [FTRACE]\n"


def findings(root: Path, window: int = 0, playbook=PLAYBOOK) -> dict[str, Finding]:
    out, _ = run_probe(root, window=window, extra=playbook.extra_files)
    return {f.id: f for f in run_checks(host_facts(out), playbook, window)}


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "h"
    write(
        r,
        "/proc/mounts",
        "proc /proc proc rw 0 0\ntracefs /sys/kernel/tracing tracefs rw 0 0\n"
        "debugfs /sys/kernel/debug debugfs rw 0 0\n",
    )
    for f in ("set_event", "kprobe_events", "uprobe_events", "dynamic_events", "enabled_functions"):
        write(r, f"/sys/kernel/tracing/{f}", "")
    write(r, "/sys/kernel/debug/kprobes/list", "")
    write(r, "/sys/kernel/debug/kprobes/enabled", "1\n")
    return r


def test_clean_host_passes_or_skips_every_check(root: Path) -> None:
    f = findings(root)
    assert {k: v.status for k, v in f.items()} == {
        "tracing.set_event": "pass",
        "tracing.probe_events": "pass",
        "kprobes.registered": "pass",
        "netdata.ebpf": "skip",
        "netdata.version": "skip",
        "bpf.tracing_programs": "skip",
        "cpu.system": "skip",
    }
    assert host_status(list(f.values())) == "compliant"


def test_enabled_tracepoint_fails_with_events_per_instance(root: Path) -> None:
    # The kernel lists probe events before tracepoints (captured-qemu/e2e/set_event.incident.txt).
    write(root, "/sys/kernel/tracing/set_event", "kprobes:x\nsched:sched_switch\n")
    write(root, "/sys/kernel/tracing/kprobe_events", "p:kprobes/x tcp_sendmsg\n")
    write(root, "/sys/kernel/tracing/instances/rasdaemon/set_event", "ras:mc_event\n")
    write(root, "/sys/kernel/tracing/instances/dbg/set_event", "irq:softirq_entry\n")
    f = findings(root)["tracing.set_event"]
    assert f.status == "fail"
    assert f.evidence["enabled"] == {
        ".": ["sched:sched_switch"],
        "instances/dbg": ["irq:softirq_entry"],
    }
    assert f.evidence["allowed"] == {"instances/rasdaemon": ["ras:mc_event"]}
    assert f.fix and "set_event" in f.fix


def test_a_probe_defined_in_a_tracepoint_group_does_not_hide_that_groups_tracepoints(
    root: Path,
) -> None:
    write(root, "/sys/kernel/tracing/kprobe_events", "p:sched/mine schedule\n")
    write(root, "/sys/kernel/tracing/set_event", "sched:sched_switch\n")
    f = findings(root)["tracing.set_event"]
    assert f.status == "fail"
    assert f.evidence["enabled"] == {".": ["sched:sched_switch"]}


def test_kprobes_list_in_the_kernels_ps_fallback_form_is_understood(root: Path) -> None:
    # report_probe() prints "%pS" when kallsyms has no symbol name for the probe's place.
    write(
        root,
        "/sys/kernel/debug/kprobes/list",
        "ffffffffc0a01234  k  0xffffffffc0a01234 \n"
        "ffffffff81a0b2c0  r  tcp_sendmsg+0x0/0x50 [FTRACE]\n",
    )
    f = findings(root)["kprobes.registered"]
    assert f.status == "fail"
    assert [(e["type"], e["symbol"]) for e in f.evidence["entries"]] == [
        ("k", "0xffffffffc0a01234"),
        ("r", "tcp_sendmsg"),
    ]


def test_a_kprobes_list_that_parses_to_nothing_is_an_error_not_empty(root: Path) -> None:
    write(root, "/sys/kernel/debug/kprobes/list", "garbage that no kernel prints\n")
    f = findings(root)["kprobes.registered"]
    assert f.status == "error"
    assert "line 1" in f.summary


def test_armed_kretprobe_on_hot_function_fails_critical(root: Path) -> None:
    write(root, "/sys/kernel/debug/kprobes/list", HOT_LIST)
    f = findings(root)["kprobes.registered"]
    assert (f.status, f.severity) == ("fail", "critical")
    assert f.evidence["entries"] == [
        {
            "type": "r",
            "symbol": "tcp_sendmsg",
            "offset": 0,
            "module": None,
            "flags": ["FTRACE"],
            "hot": True,
        }
    ]
    assert "tcp_sendmsg" in f.summary


def test_globally_disarmed_kprobes_warn(root: Path) -> None:
    write(root, "/sys/kernel/debug/kprobes/list", HOT_LIST)
    write(root, "/sys/kernel/debug/kprobes/enabled", "0\n")
    assert findings(root)["kprobes.registered"].status == "warn"


def test_only_disabled_kprobes_pass(root: Path) -> None:
    write(
        root,
        "/sys/kernel/debug/kprobes/list",
        "ffffffffa988bf40  k  tcp_sendmsg+0x0    [DISABLED][FTRACE]\n",
    )
    assert findings(root)["kprobes.registered"].status == "pass"


def test_unreadable_enabled_file_is_an_error_never_empty(root: Path) -> None:
    write(root, "/sys/kernel/debug/kprobes/list", HOT_LIST)
    unreadable(root / "sys/kernel/debug/kprobes/enabled")
    f = findings(root)["kprobes.registered"]
    assert f.status == "error"
    assert "ENXIO" in f.summary


def test_a_file_linking_out_of_fleet_root_is_an_error_and_its_target_never_read(
    root: Path, tmp_path: Path
) -> None:
    secret = write(tmp_path, "/elsewhere/shadow", "root:$6$secret:19000::::::\n")
    set_event = root / "sys/kernel/tracing/set_event"
    set_event.unlink()
    set_event.symlink_to(secret)
    out, _ = run_probe(root, extra=PLAYBOOK.extra_files)
    assert "secret" not in str(out.files)
    f = {x.id: x for x in run_checks(host_facts(out), PLAYBOOK, 0)}["tracing.set_event"]
    assert f.status == "error" and "outside fleet_root" in f.summary


def test_kprobes_skip_when_debugfs_not_mounted(root: Path) -> None:
    mounts = "proc /proc proc rw 0 0\ntracefs /sys/kernel/tracing tracefs rw 0 0\n"
    write(root, "/proc/mounts", mounts)
    (root / "sys/kernel/debug/kprobes/list").unlink()
    (root / "sys/kernel/debug/kprobes/enabled").unlink()
    f = findings(root)["kprobes.registered"]
    assert f.status == "skip" and "debugfs is not mounted" in f.summary


def test_enabled_probe_event_fails_and_disabled_one_warns(root: Path) -> None:
    write(root, "/sys/kernel/tracing/kprobe_events", "r10:kprobes/a tcp_sendmsg\n")
    write(root, "/sys/kernel/tracing/events/kprobes/a/enable", "1\n")
    f = findings(root)["tracing.probe_events"]
    assert f.status == "fail"
    assert f.evidence["events"][0]["enabled_in"] == ["."]
    write(root, "/sys/kernel/tracing/events/kprobes/a/enable", "0\n")
    assert findings(root)["tracing.probe_events"].status == "warn"


def test_probe_event_enabled_only_in_an_instance_fails(root: Path) -> None:
    write(root, "/sys/kernel/tracing/uprobe_events", "p:uprobes/u /bin/bash:0x000000000002feb0\n")
    write(root, "/sys/kernel/tracing/events/uprobes/u/enable", "0\n")
    write(root, "/sys/kernel/tracing/instances/i1/set_event", "")
    write(root, "/sys/kernel/tracing/instances/i1/events/uprobes/u/enable", "1\n")
    f = findings(root)["tracing.probe_events"]
    assert f.status == "fail"
    assert f.evidence["events"][0]["enabled_in"] == ["instances/i1"]


def test_probe_event_disabled_but_kept_armed_by_a_trigger_fails(root: Path) -> None:
    # "0*": enable written 0 while a hist trigger is attached; the real kernel keeps the
    # probe armed and firing (tests/fixtures/captured-qemu/e2e, enable0_with_trigger).
    write(root, "/sys/kernel/tracing/kprobe_events", "p:netdata/tcp_sendmsg tcp_sendmsg\n")
    write(root, "/sys/kernel/tracing/events/netdata/tcp_sendmsg/enable", "0*\n")
    f = findings(root)["tracing.probe_events"]
    assert f.status == "fail"
    assert f.evidence["events"][0]["enabled_in"] == ["."]
    assert f.evidence["events"][0]["triggers_in"] == ["."]


def _netdata(root: Path, conf: str, version: str = "v1.36.1", plugin: bool = True) -> None:
    write(root, "/etc/netdata/netdata.conf", conf)
    nd = write(root, "/usr/sbin/netdata", f"#!/bin/sh\necho 'netdata {version}'\n")
    nd.chmod(0o755)
    if plugin:
        p = write(root, "/usr/libexec/netdata/plugins.d/ebpf.plugin", "#!/bin/sh\n")
        p.chmod(0o755)


def test_netdata_ebpf_commented_default_is_on_when_plugin_installed(root: Path) -> None:
    _netdata(root, "[global]\n    run as user = netdata\n[plugins]\n    # ebpf = yes\n")
    write(root, "/proc/1301/comm", "ebpf.plugin\n")
    f = findings(root)
    assert f["netdata.ebpf"].status == "fail"
    assert "absent (commented)" in f["netdata.ebpf"].summary
    assert f["netdata.ebpf"].evidence["ebpf_plugin_pids"] == [1301]
    assert f["netdata.version"].status == "warn"


def test_netdata_without_ebpf_plugin_binary_is_off(root: Path) -> None:
    # Debian 12's netdata-core ships no ebpf.plugin: config presence is not eBPF on.
    captured = Path(__file__).resolve().parent.parent / "fixtures/captured/netdata-debian12"
    _netdata(root, (captured / "etc/netdata/netdata.conf").read_text(), "v1.37.1", plugin=False)
    f = findings(root)
    assert f["netdata.ebpf"].status == "pass"
    assert f["netdata.version"].status == "pass"


def test_netdata_ebpf_off_but_plugin_still_running_warns(root: Path) -> None:
    _netdata(root, "[plugins]\n\tebpf = no\n")
    write(root, "/proc/1301/comm", "ebpf.plugin\n")
    assert findings(root)["netdata.ebpf"].status == "warn"


def test_netdata_ebpf_explicit_yes_fails_even_when_not_running(root: Path) -> None:
    _netdata(root, "[plugins]\n  ebpf = yes\n")
    f = findings(root)["netdata.ebpf"]
    assert f.status == "fail" and "not running now" in f.summary


def test_bpftool_tracing_programs_warn_with_owners(root: Path) -> None:
    progs = (
        '[{"id":7,"type":"kprobe","name":"netdata_tcp_sen","pids":[{"pid":1301,'
        '"comm":"ebpf.plugin"}]},{"id":8,"type":"cgroup_skb","name":"sd_fw_egress"}]'
    )
    write(root, "/var/lib/progs.json", progs)
    bt = write(root, "/usr/sbin/bpftool", f"#!/bin/sh\ncat '{root}/var/lib/progs.json'\n")
    bt.chmod(0o755)
    f = findings(root)["bpf.tracing_programs"]
    assert f.status == "warn"
    assert f.evidence["programs"] == [
        {
            "id": 7,
            "type": "kprobe",
            "name": "netdata_tcp_sen",
            "owners": [{"pid": 1301, "comm": "ebpf.plugin"}],
        }
    ]
    assert "ebpf.plugin(1301)" in f.summary


def test_bpf_stats_left_on_is_a_warning_even_with_no_tracing_program(root: Path) -> None:
    # fleet profile switches kernel.bpf_stats_enabled off after its window; 1 here means
    # someone (or a killed profile) left every BPF run being timed.
    bt = write(root, "/usr/sbin/bpftool", "#!/bin/sh\necho '[]'\n")
    bt.chmod(0o755)
    write(root, "/proc/sys/kernel/bpf_stats_enabled", "0\n")
    assert findings(root)["bpf.tracing_programs"].status == "pass"
    write(root, "/proc/sys/kernel/bpf_stats_enabled", "1\n")
    f = findings(root)["bpf.tracing_programs"]
    assert f.status == "warn" and "bpf_stats_enabled is 1" in f.summary
    assert f.evidence["bpf_stats_enabled"] is True


@pytest.mark.parametrize(
    "output",
    [
        "not json at all",
        '{"id": 7}',
        "[null]",
        '[{"id": 7, "type": "kprobe", "pids": 1301}]',
        '[{"id": 7, "type": "kprobe", "pids": [null]}]',
        '[{"id": 7, "type": "kprobe", "pids": [{"pid": "x"}]}]',
        '[{"id": "7", "type": "kprobe"}]',
    ],
)
def test_a_bpftool_answer_fleet_cannot_read_is_an_error_not_a_skip(root: Path, output: str) -> None:
    write(root, "/var/lib/progs.json", output)
    bt = write(root, "/usr/sbin/bpftool", f"#!/bin/sh\ncat '{root}/var/lib/progs.json'\n")
    bt.chmod(0o755)
    f = findings(root)["bpf.tracing_programs"]
    assert f.status == "error"
    assert "bpftool output unparsable" in f.summary


@pytest.mark.parametrize("tree", ["missing", "empty", "garbage-mounts"])
def test_a_fleet_root_with_no_linux_in_it_is_an_error_never_compliant(
    tmp_path: Path, tree: str
) -> None:
    root = tmp_path / "typo"
    if tree == "empty":
        root.mkdir()
    if tree == "garbage-mounts":  # no proc line: whatever this is, it is not the kernel's
        write(root, "/proc/mounts", "\x00\xff not a mount table\n")
    f = findings(root, window=1)
    assert {k: v.status for k, v in f.items()} == dict.fromkeys(f, "error")
    assert "/proc/mounts" in f["tracing.set_event"].summary
    assert host_status(list(f.values()), None) == "error"


def test_bpf_fentry_trampoline_seen_in_enabled_functions(root: Path) -> None:
    write(
        root,
        "/sys/kernel/tracing/enabled_functions",
        # 6.1 t_show(): " R" (the direct ops save regs), "  " (no ipmodify), " D", TAB.
        "tcp_v4_connect (1) R   D\ttramp: ftrace_regs_caller+0x0/0x65"
        " (call_direct_funcs+0x0/0x20)\n"
        "\tdirect-->bpf_trampoline_6442516263+0x0/0x89\n",
    )
    f = findings(root)["bpf.tracing_programs"]
    assert f.evidence["fentry_trampolines"] == ["tcp_v4_connect"]
    assert f.status in ("warn",)


def test_cpu_over_threshold_fails(root: Path) -> None:
    write(root, "/proc/stat", "cpu  0 0 0 0 0 0 0 0 0 0\ncpu0 0 0 0 0 0 0 0 0 0 0\n")
    out, _ = run_probe(root, window=1)
    out.stat2 = "cpu  0 0 0 0 0 0 0 0 0 0\ncpu0 10 0 60 30 0 0 0 0 0 0\n"
    f = {x.id: x for x in run_checks(host_facts(out), PLAYBOOK, 1)}["cpu.system"]
    assert f.status == "fail" and f.evidence["system_pct"] == 60.0


def test_user_file_checks_from_yaml_alone(root: Path, tmp_path: Path) -> None:
    pb = tmp_path / "custom.yml"
    pb.write_text(
        "checks:\n"
        "  - id: custom.kptr\n    type: file\n    path: /proc/sys/kernel/kptr_restrict\n"
        "    test: {equals: '1'}\n    severity: low\n"
        "    remediation: sysctl -w kernel.kptr_restrict=1\n"
        "  - id: custom.no_events\n    type: file\n    path: /sys/kernel/tracing/set_event\n"
        "    test: {empty: true}\n"
        "  - id: custom.ebpf_off\n    type: file\n    path: /etc/netdata/netdata.conf\n"
        "    test: {ini: {section: plugins, key: ebpf, equals: 'no'}}\n    when_absent: pass\n"
    )
    write(root, "/proc/sys/kernel/kptr_restrict", "0\n")
    write(root, "/sys/kernel/tracing/set_event", "sched:sched_switch\n")
    f = findings(root, playbook=load_playbook(pb))
    assert f["custom.kptr"].status == "fail"
    assert f["custom.kptr"].fix == "sysctl -w kernel.kptr_restrict=1"
    assert f["custom.no_events"].status == "fail"
    assert f["custom.ebpf_off"].status == "pass"
    write(root, "/proc/sys/kernel/kptr_restrict", "1\n")
    write(root, "/sys/kernel/tracing/set_event", "")
    write(root, "/etc/netdata/netdata.conf", "[plugins]\n ebpf = yes\n")
    f = findings(root, playbook=load_playbook(pb))
    assert [f[k].status for k in ("custom.kptr", "custom.no_events", "custom.ebpf_off")] == [
        "pass",
        "pass",
        "fail",
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("checks:\n  - id: nope.check\n", "unknown check"),
        ("checks:\n  - id: tracing.set_event\n    severity: huge\n", "severity 'huge'"),
        (
            "checks:\n  - id: a\n    type: file\n    path: rel/path\n    test: {equals: x}\n",
            "absolute",
        ),
        (
            "checks:\n  - id: a\n    type: file\n    path: /x\n    test: {matches: x}\n",
            "test must be",
        ),
        ("checks: [\n", ":2:"),
        ("checks:\n  - id: cpu.system\n  - id: cpu.system\n", "duplicate check id"),
    ],
)
def test_bad_playbook_is_one_line_error_with_file_and_line(
    tmp_path: Path, text: str, message: str
) -> None:
    pb = tmp_path / "bad.yml"
    pb.write_text(text)
    with pytest.raises(PlaybookError, match=message) as exc:
        load_playbook(pb)
    assert str(exc.value).startswith(str(pb))
    assert "\n" not in str(exc.value)


def test_exit_code_bits_follow_the_contract() -> None:
    assert exit_code(["compliant"]) == 0
    assert exit_code(["compliant", "non-compliant"]) == 1
    assert exit_code(["unreachable"]) == 4
    assert exit_code(["error", "non-compliant"]) == 5
