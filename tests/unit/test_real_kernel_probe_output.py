"""The whole pipeline on probe output captured from a real kernel (Debian 6.1 under QEMU).

tests/fixtures/captured-qemu/probe_sh.*: fleet/remote/probe.sh run in the guest (nonce FLEETNONCE,
root '/') with three kprobe events defined and enabled; once on a normal boot, once booted
with lockdown=integrity. See captured-qemu/SOURCES.md.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from fleet.audit.checks import run_checks
from fleet.audit.facts import host_facts
from fleet.config.playbook import default_playbook_path, load_playbook
from fleet.model import host_status
from fleet.remote.probe import parse_probe_output

CAPTURED = Path(__file__).resolve().parent.parent / "fixtures" / "captured-qemu"
PLAYBOOK = load_playbook(default_playbook_path())


def judge(stem: str) -> dict[str, object]:
    out = parse_probe_output(
        (CAPTURED / f"{stem}.txt").read_text(),
        (CAPTURED / f"{stem}.stderr.txt").read_text(),
        "FLEETNONCE",
        "/",
    )
    facts = host_facts(out)
    findings = run_checks(facts, PLAYBOOK, 0)
    return {
        "out": out,
        "facts": facts,
        "by_id": {f.id: f for f in findings},
        "status": host_status(findings),
    }


@pytest.mark.parametrize("stem", ["probe_sh.c_enabled", "probe_sh.c_enabled.busybox_sh"])
def test_enabled_kprobe_events_on_a_real_kernel_fail_the_right_checks(stem: str) -> None:
    r = judge(stem)
    by_id = r["by_id"]
    assert r["out"].complete
    assert r["facts"].kernel == "6.1.0-56-amd64"
    kp = by_id["kprobes.registered"]
    assert kp.status == "fail"
    assert sorted(e["symbol"] for e in kp.evidence["entries"]) == [
        "tcp_cleanup_rbuf",
        "tcp_sendmsg",
        "udp_sendmsg",
    ]
    assert all(e["hot"] for e in kp.evidence["entries"])
    pe = by_id["tracing.probe_events"]
    assert pe.status == "fail"
    assert {e["name"] for e in pe.evidence["events"]} == {
        "kprobes/fleet_tcp_sendmsg",
        "kprobes/fleet_tcp_cleanup_rbuf",
        "kprobes/fleet_udp_sendmsg",
    }
    # kprobes:* lines in set_event belong to probe_events, not to the tracepoint check.
    assert by_id["tracing.set_event"].status == "pass"
    assert by_id["netdata.ebpf"].status == "skip"
    assert r["status"] == "non-compliant"


@pytest.mark.parametrize(
    "stem", ["probe_sh.lockdown.enabled", "probe_sh.lockdown.enabled.busybox_sh"]
)
def test_integrity_lockdown_makes_armed_state_unknown_not_empty(stem: str) -> None:
    r = judge(stem)
    kp = r["by_id"]["kprobes.registered"]
    assert kp.status == "error"
    assert "EPERM" in kp.summary and "lockdown is 'integrity'" in kp.summary
    assert r["facts"].kprobes_enabled.read.errno == "EPERM"
    assert r["facts"].kprobes_list.value is not None
