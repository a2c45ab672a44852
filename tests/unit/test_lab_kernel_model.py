"""The lab kernel model reacts to shell writes the way the Debian 6.1 kernel did
(tests/fixtures/captured-qemu: the a_..g_ states of one manual kprobe)."""

from __future__ import annotations

import dataclasses
import subprocess
from pathlib import Path

import pytest

from fleet.lab import kernelmodel, trees
from fleet.lab.trees import make_host_tree

CAPTURED = Path(__file__).parents[1] / "fixtures/captured-qemu"


@pytest.fixture
def incident(tmp_path: Path) -> Path:
    root = tmp_path / "incident-01"
    make_host_tree(root, "incident", 1)
    return root


def sh(root: Path, script: str) -> None:
    """A client's shell command in the host's tracing dirs, then the model's turn."""
    subprocess.run(["sh", "-c", script], cwd=root / "sys/kernel", check=True)
    kernelmodel.reconcile(root)


def read(root: Path, rel: str) -> str:
    return (root / "sys/kernel" / rel).read_text()


def test_disabling_a_kprobe_event_drops_it_from_set_event_and_marks_it_disabled(
    incident: Path,
) -> None:
    assert "kprobes:fleet_tcp_sendmsg\n" in read(incident, "tracing/set_event")
    sh(incident, "echo 0 > tracing/events/kprobes/fleet_tcp_sendmsg/enable")
    assert "kprobes:" not in read(incident, "tracing/set_event")
    assert read(incident, "tracing/events/kprobes/enable") == "0\n"
    manual = [
        line
        for line in read(incident, "debug/kprobes/list").splitlines()
        if "  k  tcp_sendmsg+0x0" in line
    ]
    assert manual == [manual[0].split("    ")[0] + "    [DISABLED][FTRACE]"]
    # netdata's return probe on the same function still hooks it through ftrace.
    assert "tcp_sendmsg (1) R    \ttramp: 0x" in read(incident, "tracing/enabled_functions")


def test_truncating_set_event_disables_every_event_of_that_instance(incident: Path) -> None:
    sh(incident, "echo > tracing/set_event")
    assert read(incident, "tracing/set_event") == ""
    assert read(incident, "tracing/events/sched/sched_switch/enable") == "0\n"
    assert read(incident, "tracing/events/kprobes/fleet_tcp_sendmsg/enable") == "0\n"
    assert read(incident, "tracing/events/enable") == "0\n"


def test_appended_tokens_enable_and_disable_one_event_each(incident: Path) -> None:
    sh(incident, "echo '!sched:sched_switch' >> tracing/set_event")
    assert "sched:sched_switch" not in read(incident, "tracing/set_event")
    assert "sched:sched_wakeup\n" in read(incident, "tracing/set_event")
    sh(incident, "echo > tracing/set_event; echo 'irq:*' >> tracing/set_event")
    # The kernel's order, not alphabetical (captured-qemu/e2e/set_event.incident.txt).
    assert read(incident, "tracing/set_event") == "irq:softirq_exit\nirq:softirq_entry\n"


def test_set_event_lists_probe_events_first_then_tracepoints_in_kernel_order(
    incident: Path,
) -> None:
    assert read(incident, "tracing/set_event").splitlines() == [
        "kprobes:fleet_tcp_sendmsg",
        "irq:softirq_exit",
        "irq:softirq_entry",
        "sched:sched_switch",
        "sched:sched_wakeup",
        "syscalls:sys_enter_sendto",
        "net:netif_receive_skb",
        "net:net_dev_xmit",
        "skb:kfree_skb",
    ]
    # Enabling in another order changes nothing: the list's order is the kernel's.
    sh(incident, "echo > tracing/set_event")
    for event in ("skb:kfree_skb", "irq:softirq_entry", "kprobes:fleet_tcp_sendmsg"):
        sh(incident, f"echo {event} >> tracing/set_event")
    assert read(incident, "tracing/set_event") == (
        "kprobes:fleet_tcp_sendmsg\nirq:softirq_entry\nskb:kfree_skb\n"
    )


def test_lab_tracepoint_order_agrees_with_every_captured_set_event() -> None:
    order = trees._TRACEPOINT_ORDER
    captured = [
        CAPTURED / "e2e/set_event.incident.txt",
        CAPTURED / "e2e/instances_rasdaemon_set_event.incident.txt",
        CAPTURED.parent / "captured/set_event.enabled.txt",
    ]
    for path in captured:
        listed = [e for e in path.read_text().splitlines() if e in order]
        assert listed == sorted(listed, key=order.index), path
    kernel = (CAPTURED / "e2e/set_event.incident.txt").read_text().splitlines()
    points = [e for e in kernel if e.partition(":")[0] not in ("kprobes", "netdata")]
    assert [e for e in order if e in points] == points


def test_instances_have_every_probe_event_disabled_until_enabled_there(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The incident with rasdaemon's instance, as in the e2e capture: the instance has an
    # enable file for the top instance's probe event, reading 0
    # (captured-qemu/e2e/instances_rasdaemon_events_kprobes_ip_rcv_enable.events_off.txt).
    plan = dataclasses.replace(trees._PLANS["incident"], rasdaemon=True)
    monkeypatch.setitem(trees._PLANS, "incident", plan)
    root = tmp_path / "incident-01"
    make_host_tree(root, "incident", 1)
    inst = "tracing/instances/rasdaemon"
    assert read(root, f"{inst}/events/kprobes/fleet_tcp_sendmsg/enable") == "0\n"
    assert read(root, f"{inst}/events/kprobes/enable") == "0\n"
    assert read(root, f"{inst}/set_event") == "ras:aer_event\nras:mc_event\n"
    # Enabled there, it comes last in the instance's list (the dynamic event walked in
    # first, added at the head: captured-qemu/e2e/instances_rasdaemon_set_event.incident.txt).
    sh(root, f"echo 1 > {inst}/events/kprobes/fleet_tcp_sendmsg/enable")
    assert read(root, f"{inst}/set_event") == (
        "ras:aer_event\nras:mc_event\nkprobes:fleet_tcp_sendmsg\n"
    )
    assert read(root, f"{inst}/events/kprobes/enable") == "1\n"
    # Off in the top instance but on in rasdaemon's: the probe stays armed (e2e
    # events_enable0: ip_rcv kept counting while enabled in the instance).
    sh(root, "echo 0 > tracing/events/kprobes/enable")
    assert "kprobes:" not in read(root, "tracing/set_event")
    manual = [
        line for line in read(root, "debug/kprobes/list").splitlines() if " k  tcp_sendmsg" in line
    ]
    assert manual[0].endswith("    [FTRACE]")
    # Off in both: [DISABLED].
    sh(root, f"echo '!kprobes:*' >> {inst}/set_event")
    assert read(root, f"{inst}/events/kprobes/fleet_tcp_sendmsg/enable") == "0\n"
    assert read(root, f"{inst}/set_event") == "ras:aer_event\nras:mc_event\n"
    manual = [
        line for line in read(root, "debug/kprobes/list").splitlines() if " k  tcp_sendmsg" in line
    ]
    assert manual[0].endswith("    [DISABLED][FTRACE]")


def test_global_disarm_keeps_the_list_and_empties_kprobe_ftrace_entries(incident: Path) -> None:
    listed = read(incident, "debug/kprobes/list")
    sh(incident, "echo 0 > debug/kprobes/enabled")
    assert read(incident, "debug/kprobes/list") == listed
    functions = read(incident, "tracing/enabled_functions")
    assert "kprobe_ftrace_handler" not in functions
    # A BPF trampoline is not a kprobe: disarming leaves it.
    assert "direct-->bpf_trampoline_" in functions
    sh(incident, "echo 1 > debug/kprobes/enabled")
    assert "kprobe_ftrace_handler" in read(incident, "tracing/enabled_functions")


def test_undoing_every_write_restores_every_file_byte_for_byte(incident: Path) -> None:
    files = sorted(p for p in (incident / "sys").rglob("*") if p.is_file())
    before = {p: p.read_bytes() for p in files}
    old_set_event = read(incident, "tracing/set_event")
    sh(incident, "echo 0 > tracing/events/kprobes/fleet_tcp_sendmsg/enable")
    sh(incident, "echo > tracing/set_event; echo 0 > debug/kprobes/enabled")
    assert {p: p.read_bytes() for p in files} != before
    tokens = " ".join(f"'{e}'" for e in old_set_event.split() if not e.startswith("kprobes:"))
    sh(incident, "echo 1 > debug/kprobes/enabled")
    sh(incident, f"for e in {tokens}; do echo \"$e\" >> tracing/set_event; done")
    sh(incident, "echo 1 > tracing/events/kprobes/fleet_tcp_sendmsg/enable")
    assert {p: p.read_bytes() for p in files} == before


def test_a_value_the_kernel_would_refuse_changes_nothing(incident: Path) -> None:
    sh(incident, "echo maybe > debug/kprobes/enabled")
    assert read(incident, "debug/kprobes/enabled") == "1\n"


def test_lockdown_refusal_is_never_overwritten(tmp_path: Path) -> None:
    root = tmp_path / "lockdown-01"
    make_host_tree(root, "lockdown", 1)
    enabled = root / "sys/kernel/debug/kprobes/enabled"
    assert enabled.is_socket()
    kernelmodel.reconcile(root)
    assert enabled.is_socket()
