"""`fleet profile` against the lab over real SSH: the incident's hosts spend their samples in
probe machinery (the lab's perf replays samples captured from a real kernel under the
incident), the others do not; every output (table, JSON, folded files, HTML) says so."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

from fleet import lab
from fleet.profile.stacks import parse_folded
from tests.integration.conftest import fleet_argv, fleet_env, run_fleet


def test_the_incident_hosts_fail_the_probe_share_and_the_others_pass(
    lab6: lab.LabInfo, tmp_path: Path
) -> None:
    folded, page = tmp_path / "folded", tmp_path / "profile.html"
    proc = run_fleet(
        "profile", "-i", lab6.inventory, "--window", "1", "--json",
        "--folded", folded, "--html", page,
    )  # fmt: skip
    doc = json.loads(proc.stdout)
    hosts = {h["host"]: h for h in doc["hosts"]}
    assert proc.returncode == 5, proc.stderr  # non-compliant (1) | unreachable (4)
    assert doc["schema"] == 1 and doc["command"] == "profile"

    incident = hosts["incident-01"]
    checks = {c["id"]: c for c in incident["checks"]}
    assert incident["status"] == "non-compliant"
    assert checks["profile.probe_share"]["status"] == "fail"
    assert incident["shares_pct"]["probe"] > 10
    assert incident["sources"][0] == "perf" and incident["samples"] > 0
    assert {h["function"] for h in incident["hooked"]} >= {"tcp_sendmsg", "tcp_cleanup_rbuf"}

    clean = hosts["clean-02"]
    assert clean["status"] == "compliant"
    assert clean["shares_pct"]["probe"] == 0 and not clean["hooked"]
    assert hosts["down-06"]["status"] == "unreachable"

    # One folded file per host with samples, in the format flamegraph.pl reads.
    files = sorted(p.name for p in folded.iterdir())
    reached = [h for h, d in hosts.items() if d["samples"]]
    assert files == sorted(f"{h}.folded" for h in reached)
    stacks = parse_folded((folded / "incident-01.folded").read_text())
    assert sum(stacks.values()) == incident["samples"]
    assert any("kprobe_ftrace_handler" in s for s in stacks)

    html = page.read_text()
    assert html.count("<svg") == len(reached)
    assert "kprobe_ftrace_handler" in html and "profile.probe_share: fail" in html


def test_the_table_names_each_hosts_source_and_top_hooked_function(lab6: lab.LabInfo) -> None:
    proc = run_fleet("profile", "-i", lab6.inventory, "--window", "1", "--limit", "incident-01")
    assert proc.returncode == 1, proc.stderr
    header, row = proc.stdout.splitlines()[:2]
    assert header.split()[:3] == ["HOST", "SAMPLES", "%"]
    assert row.startswith("incident-01") and "perf" in row
    assert "tcp_" in row or "kretprobe under" in row


def test_a_client_killed_mid_window_leaves_bpf_stats_off_on_the_host(lab6: lab.LabInfo) -> None:
    stats = lab6.state_dir / "hosts" / "clean-02" / "proc/sys/kernel/bpf_stats_enabled"
    stats.parent.mkdir(parents=True, exist_ok=True)
    stats.write_text("0\n")
    client = subprocess.Popen(
        fleet_argv("profile", "-i", lab6.inventory, "--window", "3", "--limit", "clean-02"),
        env=fleet_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while stats.read_text() != "1\n" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert stats.read_text() == "1\n"  # switched on by the host's script
        client.send_signal(signal.SIGKILL)  # no goodbye: the connection just drops
        client.wait(timeout=10)
        # The host's shell finds the channel gone when it next writes (SIGPIPE), at the end
        # of its window, and switches the statistics back off on its way out.
        deadline = time.monotonic() + 30
        while stats.read_text() != "0\n" and time.monotonic() < deadline:
            time.sleep(0.1)
        assert stats.read_text() == "0\n"
    finally:
        if client.poll() is None:
            client.kill()
            client.wait()
        stats.unlink()
