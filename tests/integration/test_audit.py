"""fleet audit over a real sshd lab: every scenario, the JSON contract, exit codes, output."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from fleet import lab
from tests.integration.conftest import audit_json, by_name, fleet_env, run_fleet, statuses

HOST_KEYS = {"name", "address", "port", "status", "error", "duration_s", "checks", "cpu"}
CHECK_KEYS = {"id", "status", "severity", "summary", "evidence", "fix"}
CHECK_IDS = [
    "tracing.set_event",
    "tracing.probe_events",
    "kprobes.registered",
    "netdata.ebpf",
    "netdata.version",
    "bpf.tracing_programs",
    "cpu.system",
]
ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


def test_json_document_follows_the_contract(lab6: lab.LabInfo) -> None:
    rc, doc = audit_json("-i", lab6.inventory, "--cpu-window", "1")
    assert rc == 5  # bit 1 non-compliant + bit 4 unreachable/error
    assert set(doc) == {
        "schema",
        "command",
        "started_at",
        "finished_at",
        "playbook",
        "hosts",
        "summary",
    }
    assert doc["schema"] == 1 and doc["command"] == "audit"
    assert ISO_Z.match(doc["started_at"]) and ISO_Z.match(doc["finished_at"])
    assert doc["summary"] == {
        "hosts": 6,
        "compliant": 1,
        "non_compliant": 3,
        "unreachable": 1,
        "error": 1,
    }
    assert [h["name"] for h in doc["hosts"]] == lab6.hosts  # inventory order
    for host in doc["hosts"]:
        assert set(host) == HOST_KEYS
        assert host["address"] == "127.0.0.1" and isinstance(host["port"], int)
        if host["status"] == "unreachable":
            assert host["checks"] == [] and host["cpu"] is None and host["error"]
            continue
        assert [c["id"] for c in host["checks"]] == CHECK_IDS
        for check in host["checks"]:
            assert set(check) == CHECK_KEYS
            assert check["status"] in ("pass", "fail", "warn", "skip", "error")
        cpu = host["cpu"]
        assert set(cpu) == {"user_pct", "system_pct", "busy_pct", "cpus", "per_cpu"}
        assert cpu["cpus"] == len(cpu["per_cpu"]) and isinstance(cpu["cpus"], int)
        assert set(cpu["per_cpu"][0]) == {"cpu", "user_pct", "system_pct", "busy_pct"}


def test_every_scenario_gets_its_verdict(lab6: lab.LabInfo) -> None:
    _, doc = audit_json("-i", lab6.inventory, "--cpu-window", "1")
    hosts = by_name(doc)
    incident, clean, half, tracefs_only, lockdown, down = (hosts[n] for n in lab6.hosts)

    assert incident["status"] == "non-compliant"
    assert statuses(incident) == {
        "tracing.set_event": "fail",
        "tracing.probe_events": "fail",
        "kprobes.registered": "fail",
        "netdata.ebpf": "fail",
        "netdata.version": "warn",
        "bpf.tracing_programs": "warn",
        "cpu.system": "fail",
    }
    kprobes = next(c for c in incident["checks"] if c["id"] == "kprobes.registered")
    hot = {e["symbol"] for e in kprobes["evidence"]["entries"] if e["hot"]}
    assert {"tcp_sendmsg", "tcp_cleanup_rbuf", "udp_sendmsg", "tcp_v4_connect"} <= hot
    assert incident["cpu"]["system_pct"] > 25

    assert clean["status"] == "compliant"
    set_event = next(c for c in clean["checks"] if c["id"] == "tracing.set_event")
    assert set_event["evidence"]["allowed"] == {
        "instances/rasdaemon": ["ras:aer_event", "ras:mc_event"]
    }
    assert clean["cpu"]["system_pct"] < 25

    assert half["status"] == "non-compliant"
    assert statuses(half)["netdata.ebpf"] == "fail"
    assert statuses(half)["kprobes.registered"] == "warn"  # disarmed, list unchanged

    assert tracefs_only["status"] == "non-compliant"
    assert statuses(tracefs_only)["tracing.set_event"] == "fail"
    assert statuses(tracefs_only)["kprobes.registered"] == "skip"
    assert statuses(tracefs_only)["tracing.probe_events"] == "warn"
    assert statuses(tracefs_only)["netdata.ebpf"] == "skip"

    assert lockdown["status"] == "error"
    kp = next(c for c in lockdown["checks"] if c["id"] == "kprobes.registered")
    assert kp["status"] == "error" and "unknown" in kp["summary"]
    assert "ENXIO" in kp["summary"]  # the lab's refusal (docs/lab.md); EPERM on a kernel

    assert down["status"] == "unreachable"
    assert "refused" in down["error"]


def test_table_has_a_row_per_host_and_a_summary(lab6: lab.LabInfo) -> None:
    proc = run_fleet("audit", "-i", lab6.inventory, "--cpu-window", "0")
    assert proc.returncode == 5
    for name in lab6.hosts:
        assert re.search(rf"^{re.escape(name)}\s", proc.stdout, re.M), proc.stdout
    assert "6 host(s): 1 compliant, 3 non-compliant, 1 error, 1 unreachable" in proc.stdout
    assert "Traceback" not in proc.stderr


def test_verbose_shows_evidence_and_the_fix_to_paste(lab6: lab.LabInfo) -> None:
    proc = run_fleet(
        "audit", "-i", lab6.inventory, "--cpu-window", "0", "-v", "--limit", "incident-*"
    )
    assert proc.returncode == 1
    assert "FAIL  kprobes.registered  [critical]" in proc.stdout
    assert "echo 0 > /sys/kernel/debug/kprobes/enabled" in proc.stdout
    assert "symbol=tcp_sendmsg" in proc.stdout


def test_limit_selects_and_compliant_selection_exits_zero(lab6: lab.LabInfo) -> None:
    rc, doc = audit_json("-i", lab6.inventory, "--cpu-window", "0", "--limit", "lab_clean")
    assert rc == 0
    assert [h["name"] for h in doc["hosts"]] == [lab6.hosts[1]]


def test_output_file_is_written(lab6: lab.LabInfo, tmp_path: Path) -> None:
    out = tmp_path / "audit.json"
    proc = run_fleet(
        "audit",
        "-i",
        lab6.inventory,
        "--cpu-window",
        "0",
        "--json",
        "-o",
        out,
        "--limit",
        "clean-*",
    )
    assert proc.returncode == 0 and proc.stdout == ""
    assert '"schema": 1' in out.read_text()


def test_unknown_pattern_is_exit_2_one_line_no_host_contacted(lab6: lab.LabInfo) -> None:
    proc = run_fleet("audit", "-i", lab6.inventory, "--limit", "web9")
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.strip().count("\n") == 0
    assert "web9" in proc.stderr and str(lab6.inventory) in proc.stderr


def test_broken_inventory_names_file_and_line(tmp_path: Path) -> None:
    inv = tmp_path / "bad.yml"
    inv.write_text("all:\n  hosts:\n    a: {ansible_port: 22\n")
    proc = run_fleet("audit", "-i", inv)
    assert proc.returncode == 2
    assert re.search(rf"{re.escape(str(inv))}:\d+:", proc.stderr)
    assert "Traceback" not in proc.stderr


def test_missing_playbook_is_exit_2(lab6: lab.LabInfo, tmp_path: Path) -> None:
    proc = run_fleet("audit", "-i", lab6.inventory, "--playbook", tmp_path / "nope.yml")
    assert proc.returncode == 2 and "nope.yml: no such file" in proc.stderr


def test_bad_flag_value_is_exit_2(lab6: lab.LabInfo) -> None:
    proc = run_fleet("audit", "-i", lab6.inventory, "--forks", "0")
    assert proc.returncode == 2 and "--forks" in proc.stderr


def test_many_hosts_are_grouped_by_identical_findings_worst_first(tmp_path: Path) -> None:
    info = lab.up(tmp_path / "lab30", hosts=30, scenario="mixed")
    try:
        proc = run_fleet("audit", "-i", info.inventory, "--cpu-window", "0")
    finally:
        lab.down(info.state_dir)
    assert proc.returncode == 5
    rows = [line for line in proc.stdout.splitlines() if line.startswith("5 hosts: ")]
    assert len(rows) == 6  # one row per scenario, 5 hosts each
    status_of = re.compile(r"\s(non-compliant|compliant|error|unreachable)\s")
    order = [status_of.search(row).group(1) for row in rows]
    assert order == [
        "non-compliant",
        "non-compliant",
        "non-compliant",
        "error",
        "unreachable",
        "compliant",
    ]
    assert "30 host(s): 5 compliant, 15 non-compliant, 5 error, 5 unreachable" in proc.stdout


def test_ctrl_c_stops_at_once_without_waiting_for_cpu_windows(lab6: lab.LabInfo) -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "fleet.cli",
            "audit",
            "-i",
            str(lab6.inventory),
            "--cpu-window",
            "60",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=fleet_env(),
    )
    try:
        time.sleep(2)  # every reachable host is inside its 60 s window now
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=20)  # far less than the 60 s window
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130
    assert "interrupted" in err and "Traceback" not in err
