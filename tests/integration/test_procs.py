"""--procs: an audit's hosts over several worker processes, against the lab over real SSH."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

from fleet import lab
from fleet.lab.bastion import session_pids
from tests.integration.conftest import audit_json, fleet_argv, fleet_env, run_fleet


def _summary(doc: dict) -> list[tuple[str, str, list[str]]]:
    return [
        (h["name"], h["status"], sorted(c["id"] for c in h["checks"] if c["status"] == "fail"))
        for h in doc["hosts"]
    ]


def test_two_processes_give_one_processs_results_in_the_same_order(lab6: lab.LabInfo) -> None:
    rc1, one = audit_json("-i", lab6.inventory, "--cpu-window", "1", "--procs", "1")
    rc2, two = audit_json("-i", lab6.inventory, "--cpu-window", "1", "--procs", "2")
    assert rc1 == rc2 == 5
    assert _summary(one) == _summary(two)
    assert [h["name"] for h in two["hosts"]] == lab6.hosts


def test_the_profile_in_two_processes_keeps_the_hosts_order_and_verdicts(
    lab6: lab.LabInfo,
) -> None:
    runs = []
    for procs in ("1", "2"):
        proc = run_fleet(
            "profile", "-i", lab6.inventory, "--window", "1", "--json", "--procs", procs
        )
        runs.append(
            (proc.returncode, [(h["host"], h["status"]) for h in json.loads(proc.stdout)["hosts"]])
        )
    assert runs[0] == runs[1] and runs[0][0] == 5


def _start(info: lab.LabInfo, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        fleet_argv("audit", "-i", info.inventory, "--procs", "2", *args),
        env=fleet_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,  # its own process group: the test's Ctrl-C
    )


def _wait_for_workers(proc: subprocess.Popen[bytes]) -> list[int]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        workers = session_pids(proc.pid)  # the CLI's forked workers
        if len(workers) >= 2:
            return workers
        time.sleep(0.05)
    raise AssertionError(f"no workers under {proc.pid}")


def test_ctrl_c_stops_every_worker_at_once(lab6: lab.LabInfo) -> None:
    proc = _start(lab6, "--cpu-window", "30")
    try:
        workers = _wait_for_workers(proc)
        time.sleep(1)  # the workers are in their hosts' CPU window
        os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C sends
        proc.communicate(timeout=15)
        assert proc.returncode == 130
        deadline = time.monotonic() + 10
        while any(Path(f"/proc/{w}").exists() for w in workers) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not [w for w in workers if Path(f"/proc/{w}").exists()]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_a_worker_that_dies_leaves_its_hosts_as_errors_and_the_others_finish(
    lab6: lab.LabInfo,
) -> None:
    proc = _start(lab6, "--cpu-window", "5", "--json")
    try:
        workers = _wait_for_workers(proc)
        time.sleep(1)
        os.kill(min(workers), signal.SIGKILL)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    doc = json.loads(out)
    assert [h["name"] for h in doc["hosts"]] == lab6.hosts  # nobody dropped
    lost = [h for h in doc["hosts"] if (h["error"] or "").startswith("worker process lost")]
    kept = [h for h in doc["hosts"] if h not in lost]
    assert lost and all(h["status"] == "error" for h in lost)
    assert kept and all(not (h["error"] or "").startswith("worker") for h in kept)
    assert proc.returncode & 4, err
