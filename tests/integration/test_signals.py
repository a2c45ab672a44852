"""SIGINT, SIGTERM and SIGKILL at each point of a remediation, then `fleet rollback`: every
host ends byte for byte as it was (real lab sshd, the real CLI in a child process).

SIGINT/SIGTERM: the host in hand stops at the next step boundary and undoes what it applied
(or, when every step is in, finishes without the CPU measure), releases its lock, and the run
prints its id and exits 130/143. SIGKILL leaves the lock and the journal; rollback takes both
over."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from fleet import lab
from tests.integration.conftest import fleet_argv, fleet_env, run_fleet
from tests.integration.test_remediate import (
    _with_host_vars,
    fleet_lab,
    root,
    snapshot,
)

pytestmark = [pytest.mark.integration, pytest.mark.faults]
__all__ = ["fleet_lab"]

LOCK = "run/fleet-remediate.lock"
POINTS = ["locked", "netdata-restart", "second-step", "verifying"]


def _records(journal_dir: Path) -> list[dict[str, object]]:
    out = []
    for path in journal_dir.glob("*.jsonl"):
        for line in path.read_text().splitlines():
            if line.strip():
                out.append(json.loads(line))
    return out


def _reached(point: str, tree: Path, journal_dir: Path, hold: Path) -> bool:
    recs = _records(journal_dir) if journal_dir.is_dir() else []
    intents = [r for r in recs if r["type"] == "intent"]
    results = [r for r in recs if r["type"] == "result"]
    if point == "locked":
        return (tree / LOCK).is_dir()
    if point == "netdata-restart":  # the restart runs and waits on `hold`: mid-step, surely
        return bool(intents) and not (tree / "proc/1301").exists()
    if point == "second-step":
        return len(intents) >= 2
    return len(results) >= 3


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL], ids=str)
@pytest.mark.parametrize("point", POINTS)
def test_a_signal_at_any_point_leaves_nothing_that_rollback_cannot_restore(
    fleet_lab: lab.LabInfo, tmp_path: Path, sig: signal.Signals, point: str
) -> None:
    tree = root(fleet_lab, "incident")
    before = snapshot(tree)
    hold = tmp_path / "hold-restart"
    if point == "netdata-restart":
        hold.touch()
    restart = f"{tree}/usr/sbin/netdata-restart && while [ -e {hold} ]; do sleep 0.1; done"
    inventory = _with_host_vars(
        fleet_lab, tmp_path / "inv.yml", tree.name, fleet_netdata_restart=restart
    )
    journal_dir = Path(os.environ["FLEET_STATE_DIR"]) / "journal"
    argv = fleet_argv(
        "remediate", "-i", str(inventory), "--host", tree.name, "--apply", "--yes",
        "--cpu-window", "2", "--settle", "1",
    )  # fmt: skip
    proc = subprocess.Popen(
        argv, env=fleet_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        stop = time.monotonic() + 90
        while not _reached(point, tree, journal_dir, hold):
            assert proc.poll() is None, f"remediate ended before {point}: {proc.communicate()}"
            assert time.monotonic() < stop, f"never reached {point}"
            time.sleep(0.02)
        os.kill(proc.pid, sig)
        if point == "netdata-restart":
            time.sleep(0.3)  # the signal is in before the restart returns
            hold.unlink()
        _out, err = proc.communicate(timeout=120)
    finally:
        hold.unlink(missing_ok=True)
        proc.kill()
        proc.wait()
    run_id = re.search(r"\d{8}T\d{6}Z-[0-9a-f]{6}", err)
    if sig == signal.SIGKILL:
        assert proc.returncode == -signal.SIGKILL
    else:
        assert proc.returncode == 128 + sig, err
        assert run_id and f"fleet: run {run_id[0]}" in err, err
        assert "Traceback" not in err
        assert not (tree / LOCK).exists(), "the lock outlived a clean stop"
        if point in ("locked", "netdata-restart"):
            # Stopped mid-way: undone on the spot, and nothing to undo is offered.
            assert snapshot(tree) == before
            assert "undo with" not in err
        elif point == "verifying":
            assert "undo with: fleet rollback" in err  # finished: the changes stay

    # Whatever happened, rollback brings the host back byte for byte and leaves no lock.
    back = run_fleet("rollback", "-i", fleet_lab.inventory, "--host", tree.name, timeout=300)
    assert back.returncode == 0, back.stderr
    if sig != signal.SIGKILL and point in ("locked", "netdata-restart"):
        assert "nothing to roll back" in back.stderr
    if (tree / LOCK).exists():
        # Killed before its first write: nothing to roll back, only the lock. Its owner's pid
        # is gone, so the next run on this controller takes it over at once (--lock-ttl is
        # for owners elsewhere).
        assert sig == signal.SIGKILL and point == "locked"
        again = run_fleet(*argv[argv.index("remediate") :], "--json", timeout=300)
        assert "took over a stale lock" in again.stdout and "is gone" in again.stdout
        back = run_fleet("rollback", "-i", fleet_lab.inventory, "--host", tree.name, timeout=300)
        assert back.returncode == 0, back.stderr
    assert snapshot(tree) == before
    assert not (tree / LOCK).exists()
