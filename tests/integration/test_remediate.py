"""fleet remediate and fleet rollback against the real-sshd lab, whose kernel model makes
writes ripple the way a kernel's do (fleet/lab/kernelmodel.py)."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from fleet import lab
from tests.helpers import immutable, process_cmdlines, snapshot
from tests.integration.conftest import fleet_argv, fleet_env, run_fleet

pytestmark = pytest.mark.integration

ENABLE = "sys/kernel/tracing/events/kprobes/fleet_tcp_sendmsg/enable"


@pytest.fixture
def fleet_lab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[lab.LabInfo]:
    """A lab of its own (remediation changes it) and a state dir of its own (journals)."""
    monkeypatch.setenv("FLEET_STATE_DIR", str(tmp_path / "fleet-state"))
    info = lab.up(tmp_path / "lab", hosts=6, scenario="mixed")
    try:
        yield info
    finally:
        lab.down(info.state_dir)


def root(info: lab.LabInfo, kind: str) -> Path:
    name = next(h for h in info.hosts if h.startswith(kind))
    return (info.state_dir / "hosts" / name).resolve()


def remediate(info: lab.LabInfo, *args: str, inventory: Path | None = None) -> tuple[int, Any]:
    proc = run_fleet("remediate", "-i", inventory or info.inventory, "--json", *args, timeout=300)
    assert proc.stdout, proc.stderr
    return proc.returncode, json.loads(proc.stdout)


def apply(info: lab.LabInfo, host: str, *args: str, **kw: Any) -> tuple[int, Any]:
    return remediate(
        info,
        "--host",
        host,
        "--apply",
        "--yes",
        "--cpu-window",
        "2",
        "--settle",
        "0",
        *args,
        **kw,
    )


def rollback(info: lab.LabInfo, *args: str) -> tuple[int, Any]:
    proc = run_fleet("rollback", "-i", info.inventory, "--json", *args, timeout=300)
    assert proc.stdout, proc.stderr
    return proc.returncode, json.loads(proc.stdout)


def steps(host: dict[str, Any]) -> list[tuple[str, str]]:
    return [(s["id"], s["status"]) for s in host["steps"]]


def sshd_log(info: lab.LabInfo) -> str:
    return (info.state_dir / "sshd.log").read_text()


# --- plan ----------------------------------------------------------------------------------


def test_plan_changes_nothing_and_shows_each_step_as_a_diff(fleet_lab: lab.LabInfo) -> None:
    trees = {name: (fleet_lab.state_dir / "hosts" / name).resolve() for name in fleet_lab.hosts}
    before = {name: snapshot(t) for name, t in trees.items()}
    proc = run_fleet("remediate", "-i", fleet_lab.inventory, "--host", "all")
    assert proc.returncode == 5, proc.stderr  # planned changes + the down host
    plan = proc.stdout
    assert "+    ebpf = no" in plan  # netdata.conf as a unified diff
    assert "/sys/kernel/tracing/events/kprobes/fleet_tcp_sendmsg/enable: 1 -> 0" in plan
    assert "-sched:sched_switch" in plan
    assert "clean-02: nothing to change (compliant)" in plan
    skipped = r"lockdown-05: .*\n  \[skipped\] kprobes.disarm: .* - .*ENXIO.*integrity"
    assert re.search(skipped, plan)
    assert "nothing was changed" in plan
    assert {name: snapshot(t) for name, t in trees.items()} == before
    assert "Starting session" in sshd_log(fleet_lab)  # it did reach the hosts
    assert not list(Path(os.environ["FLEET_STATE_DIR"]).glob("journal/*.jsonl"))
    # The JSON carries whole netdata.conf files from the hosts: written for the user only.
    out = Path(os.environ["FLEET_STATE_DIR"]).parent / "plan.json"
    proc = run_fleet("remediate", "-i", fleet_lab.inventory, "--host", "incident*", "--json",
                     "-o", out)
    assert proc.returncode == 1, proc.stderr
    assert "ebpf = no" in out.read_text() and stat.S_IMODE(out.stat().st_mode) == 0o600


def test_apply_without_a_terminal_needs_yes(fleet_lab: lab.LabInfo) -> None:
    proc = run_fleet("remediate", "-i", fleet_lab.inventory, "--host", "incident*", "--apply")
    assert proc.returncode == 2
    assert (
        proc.stderr.strip() == "fleet: error: --apply without a terminal to confirm on: add --yes"
    )


# --- apply, verify, idempotence, rollback -------------------------------------------------


def test_apply_fixes_verifies_and_rollback_restores_byte_for_byte(
    fleet_lab: lab.LabInfo,
) -> None:
    tree = root(fleet_lab, "incident")
    before = snapshot(tree)
    rc, doc = apply(fleet_lab, "incident*", "--cpu-window", "3")
    host = doc["hosts"][0]
    assert rc == 0, host
    assert steps(host) == [
        ("netdata.ebpf_off", "applied"),
        ("tracing.probe_events_off", "applied"),
        ("tracing.set_event_clear", "applied"),
    ]  # netdata gone and events off: no armed kprobe was left to disarm
    assert host["status"] == "compliant" and host["failed"] is False
    assert {c["status"] for c in host["checks_after"]} <= {"pass", "skip", "warn"}
    assert host["cpu_before"]["system_pct"] > 25 > host["cpu_after"]["system_pct"]
    assert host["verdict"] == "improved"
    assert re.fullmatch(r"\d{8}T\d{6}Z-[0-9a-f]{6}", host["run_id"])

    # The kernel state, read from the tree itself rather than through fleet.
    assert (tree / "sys/kernel/tracing/set_event").read_text() == ""
    assert (tree / ENABLE).read_text() == "0\n"
    assert (tree / "sys/kernel/tracing/kprobe_events").read_text() != ""  # definition kept
    assert "[DISABLED]" in (tree / "sys/kernel/debug/kprobes/list").read_text()
    assert not (tree / "proc/1301").exists()  # ebpf.plugin exited
    conf = (tree / "etc/netdata/netdata.conf").read_text()
    backup = tree / f"etc/netdata/netdata.conf.fleet-{host['run_id']}.bak"
    assert backup.read_bytes() == before["etc/netdata/netdata.conf"]
    assert conf == before["etc/netdata/netdata.conf"].decode().replace(
        "    # ebpf = yes\n", "    # ebpf = yes\n    ebpf = no\n"
    )

    # A second apply finds nothing to do.
    rc, again = apply(fleet_lab, "incident*")
    assert rc == 0 and again["hosts"][0]["steps"] == []

    rc, back = rollback(fleet_lab, "--host", "incident*")
    assert rc == 0, back
    assert steps(back["hosts"][0]) == [  # in the order they were undone: last first
        ("tracing.set_event_clear", "rolled-back"),
        ("tracing.probe_events_off", "rolled-back"),
        ("netdata.ebpf_off", "rolled-back"),
    ]
    assert back["hosts"][0]["status"] == "non-compliant"  # as the re-audit finds it
    assert snapshot(tree) == before  # no backup, no lock, no directory left behind
    # Rolling back again has nothing left to do.
    proc = run_fleet("rollback", "-i", fleet_lab.inventory, "--host", "incident*")
    assert proc.returncode == 0 and "nothing to roll back" in proc.stderr


def test_one_connection_per_host_carries_every_exec(fleet_lab: lab.LabInfo) -> None:
    log_before = len(sshd_log(fleet_lab).splitlines())
    rc, _doc = apply(fleet_lab, "incident*")
    assert rc == 0
    new = sshd_log(fleet_lab).splitlines()[log_before:]
    assert sum("Accepted publickey" in line for line in new) == 1
    # lock, before-probe, read netdata.conf, netdata step, wait-probe, 2 x (probe + step),
    # probe for the kprobes step, after-probe, unlock.
    assert sum("Starting session: forced-command" in line for line in new) == 12


# --- failures and their undo --------------------------------------------------------------


def test_read_only_target_fails_its_step_and_leaves_everything_else_unchanged(
    fleet_lab: lab.LabInfo,
) -> None:
    tree = root(fleet_lab, "incident")
    with immutable(tree / ENABLE):  # reads "1", every write refused (EPERM), root's too
        before = snapshot(tree)
        rc, doc = apply(fleet_lab, "incident*")
        after = snapshot(tree)
    host = doc["hosts"][0]
    assert rc == 1
    assert steps(host) == [
        ("netdata.ebpf_off", "rolled-back"),
        ("tracing.probe_events_off", "failed"),
    ]
    error = host["steps"][1]["error"]
    assert error.startswith(f"/{ENABLE}: ") and "(EPERM)" in error
    assert "earlier steps rolled back" in host["error"]
    assert host["verdict"] == "not-measured"
    assert after == before


def test_failure_after_the_second_step_rolls_back_both_and_its_own_writes(
    fleet_lab: lab.LabInfo,
) -> None:
    tree = root(fleet_lab, "incident")
    # A trace instance whose set_event cannot be written: step 3 clears the top instance
    # first, then fails here.
    fault = tree / "sys/kernel/tracing/instances/fault"
    fault.mkdir()
    # A set_event that reads like the kernel's and refuses every write, root's included.
    (fault / "set_event").write_text("sched:sched_switch\n")
    subprocess.run(["chattr", "+i", str(fault / "set_event")], check=True)
    try:
        before = snapshot(tree)
        rc, doc = apply(fleet_lab, "incident*")
    finally:
        subprocess.run(["chattr", "-i", str(fault / "set_event")], check=True)
    host = doc["hosts"][0]
    assert rc == 1
    assert steps(host) == [
        ("netdata.ebpf_off", "rolled-back"),
        ("tracing.probe_events_off", "rolled-back"),
        ("tracing.set_event_clear", "failed"),
    ]
    assert "instances/fault/set_event" in host["steps"][2]["error"]
    assert snapshot(tree) == before  # the top set_event it had cleared is back too


def test_kill_9_mid_run_is_completed_by_rollback(fleet_lab: lab.LabInfo, tmp_path: Path) -> None:
    tree = root(fleet_lab, "incident")
    before = snapshot(tree)
    hold = tmp_path / "hold-restart"
    hold.touch()
    restart = f"{tree}/usr/sbin/netdata-restart && while [ -e {hold} ]; do sleep 0.1; done"
    incident = next(h for h in fleet_lab.hosts if h.startswith("incident"))
    inventory = _with_host_vars(
        fleet_lab, tmp_path / "inv.yml", incident, fleet_netdata_restart=restart
    )
    proc = subprocess.Popen(
        fleet_argv(
            "remediate",
            "-i",
            str(inventory),
            "--host",
            "incident*",
            "--apply",
            "--yes",
            "--cpu-window",
            "0",
        ),
        env=fleet_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    journal_dir = Path(os.environ["FLEET_STATE_DIR"]) / "journal"
    try:
        deadline = time.monotonic() + 60
        while not any('"intent"' in p.read_text() for p in journal_dir.glob("*.jsonl")):
            assert time.monotonic() < deadline, "remediate never journaled a step"
            assert proc.poll() is None, "remediate ended before it could be killed"
            time.sleep(0.05)
        # The netdata step is journaled and its restart is hanging: kill the controller.
        while (tree / "proc/1301").exists():
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
        hold.unlink()
    assert (tree / "run/fleet-remediate.lock").is_dir()  # the killed run's lock is left
    assert snapshot(tree) != before

    rc, back = rollback(fleet_lab, "--host", "incident*")
    host = back["hosts"][0]
    assert rc == 0, host
    assert "took over a stale lock" in (host["error"] or "")
    assert steps(host) == [("netdata.ebpf_off", "rolled-back")]
    assert snapshot(tree) == before
    assert not (tree / "run/fleet-remediate.lock").exists()


def test_a_second_run_on_a_locked_host_is_refused(fleet_lab: lab.LabInfo, tmp_path: Path) -> None:
    tree = root(fleet_lab, "incident")
    lock = tree / "run/fleet-remediate.lock"
    lock.mkdir(parents=True)
    # Held by a live process on this controller: not stale.
    owner = (
        f"20990101T000000Z-abcdef\talice\t{os.uname().nodename}\t{os.getpid()}\t{int(time.time())}"
    )
    (lock / "owner").write_text(owner)
    before = snapshot(tree)
    rc, doc = apply(fleet_lab, "incident*")
    host = doc["hosts"][0]
    assert rc == 4  # the host could not be acted on: error
    assert "another remediation holds /run/fleet-remediate.lock" in host["error"]
    assert "alice@" in host["error"] and host["steps"] == []
    assert snapshot(tree) == before
    assert (lock / "owner").read_text() == owner


def test_concurrent_runs_on_one_host_apply_once(fleet_lab: lab.LabInfo) -> None:
    args = fleet_argv(
        "remediate",
        "-i",
        str(fleet_lab.inventory),
        "--host",
        "incident*",
        "--apply",
        "--yes",
        "--cpu-window",
        "1",
        "--json",
    )
    procs = [
        subprocess.Popen(
            args, env=fleet_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    docs = []
    for p in procs:
        out, _err = p.communicate(timeout=300)
        docs.append(json.loads(out)["hosts"][0])
    applied = [d for d in docs if d["steps"]]
    others = [d for d in docs if not d["steps"]]
    assert len(applied) == 1 and len(others) == 1
    # The other run either found the lock held or, started after, nothing to do.
    assert "another remediation holds" in (others[0]["error"] or "") or not others[0]["failed"]


# --- many hosts ---------------------------------------------------------------------------


def test_failure_budget_stops_the_rollout_after_the_canary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLEET_STATE_DIR", str(tmp_path / "state"))
    info = lab.up(tmp_path / "lab", hosts=4, scenario="incident")
    trees = [(info.state_dir / "hosts" / h).resolve() for h in info.hosts]
    try:
        subprocess.run(["chattr", "+i", str(trees[0] / ENABLE)], check=True)
        untouched = [snapshot(t) for t in trees[1:]]
        rc, doc = apply(info, "all", "--batch", "2", "--max-fail", "0")
        assert rc == 1
        hosts = doc["hosts"]
        assert hosts[0]["failed"] and steps(hosts[0])[-1] == ("tracing.probe_events_off", "failed")
        assert [h["status"] for h in hosts[1:]] == ["skipped"] * 3
        assert all("over --max-fail 0" in h["error"] for h in hosts[1:])
        assert [snapshot(t) for t in trees[1:]] == untouched
        assert doc["summary"]["skipped"] == 3

        # With a budget of one, the rest go ahead in batches.
        rc, doc = apply(info, "all", "--batch", "2", "--max-fail", "1")
        assert [h["failed"] for h in doc["hosts"]] == [True, False, False, False]
    finally:
        subprocess.run(["chattr", "-i", str(trees[0] / ENABLE)], check=True)
        lab.down(info.state_dir)


# --- hostile values -----------------------------------------------------------------------


def test_hostile_values_reach_the_remote_literally(fleet_lab: lab.LabInfo, tmp_path: Path) -> None:
    evil = tmp_path / 'x\'; touch PWNED; $(touch PWNED2) `touch PWNED3` "q" y'
    lab.make_host_tree(evil, "incident", 9)
    # In the lab's hosts dir, so its kernel model reacts to this tree too.
    (fleet_lab.state_dir / "hosts" / "evil-01").symlink_to(evil)
    restart = shlex.quote(f"{evil}/usr/sbin/netdata-restart")  # a command, quoted as one
    inventory = _with_host_vars(
        fleet_lab,
        tmp_path / "evil.yml",
        "incident-01",
        fleet_root=str(evil),
        fleet_netdata_restart=restart,
    )
    rc, out = apply(fleet_lab, "incident-01", inventory=inventory)
    host = out["hosts"][0]
    assert rc == 0, host
    assert [s for s, st in steps(host) if st == "applied"] == [
        "netdata.ebpf_off",
        "tracing.probe_events_off",
        "tracing.set_event_clear",
    ]
    assert (evil / "sys/kernel/tracing/set_event").read_text() == ""
    assert (root(fleet_lab, "incident") / "sys/kernel/tracing/set_event").read_text() != ""
    home = Path(fleet_env()["HOME"])
    for where in (home, tmp_path, Path.cwd(), evil, Path("/")):
        assert not list(where.glob("PWNED*")), where


def _with_host_vars(info: lab.LabInfo, path: Path, name: str, **hostvars: str) -> Path:
    """A copy of the lab inventory with some of one host's vars replaced."""
    doc = yaml.safe_load(info.inventory.read_text())
    for group in doc["all"]["children"].values():
        if name in (group.get("hosts") or {}):
            group["hosts"][name].update(hostvars)
    path.write_text(yaml.safe_dump(doc))
    return path


def test_apply_on_a_terminal_shows_the_plan_and_asks_first(fleet_lab: lab.LabInfo) -> None:
    tree = root(fleet_lab, "incident")
    before = snapshot(tree)
    args = fleet_argv(
        "remediate",
        "-i",
        str(fleet_lab.inventory),
        "--host",
        "incident*",
        "--apply",
        "--cpu-window",
        "0",
        "--settle",
        "0",
    )
    for answer, changed in (("n\n", False), ("y\n", True)):
        primary, secondary = os.openpty()
        try:
            proc = subprocess.Popen(
                args,
                stdin=secondary,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=fleet_env(),
                text=True,
            )
            os.write(primary, answer.encode())
            out, err = proc.communicate(timeout=300)
        finally:
            os.close(primary)
            os.close(secondary)
        assert "Apply these steps to 1 host(s)? [y/N]" in err
        assert "[planned] netdata.ebpf_off" in err
        assert (snapshot(tree) != before) is changed
        if not changed:
            assert proc.returncode == 1 and "nothing was changed" in err
        else:
            assert proc.returncode == 0 and "fixed" in out


def test_a_restart_that_leaves_ebpf_plugin_running_fails_and_is_undone(
    fleet_lab: lab.LabInfo, tmp_path: Path
) -> None:
    tree = root(fleet_lab, "incident")
    before = snapshot(tree)
    playbook = tmp_path / "pb.yml"
    shipped = (Path(__file__).parents[2] / "playbooks/kernel-tracing.yml").read_text()
    playbook.write_text(shipped.replace("wait_s: 180", "wait_s: 2"))
    incident = next(h for h in fleet_lab.hosts if h.startswith("incident"))
    # A restart command that succeeds without restarting anything.
    inventory = _with_host_vars(
        fleet_lab, tmp_path / "inv.yml", incident, fleet_netdata_restart="true"
    )
    rc, doc = apply(fleet_lab, "incident*", "--playbook", str(playbook), inventory=inventory)
    host = doc["hosts"][0]
    assert rc == 1
    assert steps(host) == [("netdata.ebpf_off", "failed")]
    assert host["steps"][0]["error"] == "ebpf.plugin still running 2 s after the restart"
    assert "earlier steps rolled back" in host["error"]
    assert snapshot(tree) == before


@pytest.mark.faults
@pytest.mark.parametrize("restart", ["failing", "hanging"])
def test_a_netdata_restart_that_fails_or_hangs_ends_within_the_deadline_and_is_undone(
    fleet_lab: lab.LabInfo, tmp_path: Path, restart: str
) -> None:
    tree = root(fleet_lab, "incident")
    conf = (tree / "etc/netdata/netdata.conf").read_bytes()
    playbook = tmp_path / "pb.yml"
    shipped = (Path(__file__).parents[2] / "playbooks/kernel-tracing.yml").read_text()
    playbook.write_text(shipped.replace("wait_s: 180", "wait_s: 2"))
    marker = f"fleet-restart-{restart}"
    command = {
        "failing": "echo 'Job for netdata.service failed.' >&2; exit 1",
        "hanging": f"exec sh -c 'sleep 600' {marker}",
    }[restart]
    inventory = _with_host_vars(
        fleet_lab, tmp_path / "inv.yml", tree.name, fleet_netdata_restart=command
    )
    rc, doc = apply(
        fleet_lab, tree.name, "--playbook", str(playbook), "--timeout", "5", inventory=inventory
    )
    host = doc["hosts"][0]
    assert rc != 0 and host["failed"] and host["steps"], host["error"]
    assert steps(host)[0] == ("netdata.ebpf_off", "failed"), host
    error = host["steps"][0]["error"]
    if restart == "failing":
        assert "rc 1" in error and "Job for netdata.service failed." in error
    else:
        assert "deadline" in error
    # The undo restores the file, then restarts netdata the same way, which fails again:
    # said so, never "rolled back".
    assert "NOT all rolled back: run fleet rollback" in host["error"]
    # The config is back as it was whatever the restart did, and no lock is left.
    assert (tree / "etc/netdata/netdata.conf").read_bytes() == conf
    assert not (tree / "run/fleet-remediate.lock").exists()
    stop = time.monotonic() + 30  # the host's own timeout -k ends the restart: a hang guard
    running = lambda: any(marker.encode() in c for c in process_cmdlines().values())  # noqa: E731
    while running() and time.monotonic() < stop:
        time.sleep(0.5)
    assert not running()


@pytest.fixture
def tiny_journal_disk(tmp_path: Path) -> Iterator[Path]:
    """The state dir's journal/ on a one-page tmpfs: the run record fits, a big step's not."""
    if os.geteuid() != 0:
        if os.environ.get("CI"):
            pytest.fail("a full journal disk needs root to mount a small tmpfs")
        pytest.skip("a full journal disk needs root to mount a small tmpfs")
    journal = Path(os.environ["FLEET_STATE_DIR"]) / "journal"
    journal.mkdir(parents=True, mode=0o700)
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4k,mode=0700", "fleet-test-journal", str(journal)],
        check=True,
    )
    try:
        yield journal
    finally:
        subprocess.run(["umount", str(journal)], check=True)


def test_a_full_journal_disk_writes_nothing_to_the_host_and_says_so(
    fleet_lab: lab.LabInfo, tiny_journal_disk: Path
) -> None:
    tree = root(fleet_lab, "incident")
    conf = tree / "etc/netdata/netdata.conf"
    # The first step's record carries netdata.conf before and after: more than the disk has.
    conf.write_text("".join(f"# comment line {i:05d}\n" for i in range(500)) + conf.read_text())
    before = snapshot(tree)
    rc, doc = apply(fleet_lab, "incident*")
    host = doc["hosts"][0]
    assert rc & 4, host
    assert host["status"] == "error" and host["failed"] is True
    assert "journal write failed: No space left on device" in host["error"]
    assert snapshot(tree) == before  # no step was written without its journal record


@pytest.mark.faults
def test_an_unwritable_journal_directory_is_exit_2_before_any_remote_write(
    fleet_lab: lab.LabInfo,
) -> None:
    tree = root(fleet_lab, "incident")
    before = snapshot(tree)
    journal = Path(os.environ["FLEET_STATE_DIR"]) / "journal"
    journal.mkdir(parents=True, mode=0o700)
    with immutable(journal):  # creating a file in it fails (EPERM), root included
        proc = run_fleet(
            "remediate", "-i", fleet_lab.inventory, "--host", "incident*", "--apply", "--yes",
            "--cpu-window", "0", "--settle", "0",
        )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and str(journal) in proc.stderr
    assert "Traceback" not in proc.stderr
    assert snapshot(tree) == before  # not even the lock was taken
