"""--scheduler: an audit's hosts in shards on a real Dask cluster (worker processes on
loopback), against the lab over real SSH."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dask
import pytest
import yaml
from distributed import Client, LocalCluster, get_task_stream

from fleet import lab
from tests.integration.conftest import fleet_argv, fleet_env, run_fleet

pytestmark = pytest.mark.integration


def _cluster(workers: int) -> LocalCluster:
    return LocalCluster(
        n_workers=workers,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
        worker_dashboard_address=None,
        silence_logs=logging.CRITICAL,
        env={"HOME": fleet_env()["HOME"]},
    )


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    with _cluster(2) as c:
        yield c


def _summary(doc: dict[str, Any]) -> list[tuple[str, str, list[str]]]:
    return [
        (h["name"], h["status"], sorted(c["id"] for c in h["checks"] if c["status"] == "fail"))
        for h in doc["hosts"]
    ]


def _audit(*args: str | Path) -> tuple[int, dict[str, Any]]:
    proc = run_fleet("audit", "--json", *args)
    assert proc.stdout, proc.stderr
    return proc.returncode, json.loads(proc.stdout)


def test_a_dask_cluster_gives_one_processs_results_in_the_same_order(
    lab6: lab.LabInfo, cluster: LocalCluster
) -> None:
    rc1, one = _audit("-i", lab6.inventory, "--cpu-window", "1")
    rc2, dask_run = _audit(
        "-i", lab6.inventory, "--cpu-window", "1", "--scheduler", cluster.scheduler_address
    )
    assert rc1 == rc2 == 5
    assert _summary(dask_run) == _summary(one)
    assert [h["name"] for h in dask_run["hosts"]] == lab6.hosts


def test_report_runs_on_the_cluster_too(lab6: lab.LabInfo, cluster: LocalCluster) -> None:
    proc = run_fleet(
        "report", "-i", lab6.inventory, "--cpu-window", "0", "--format", "json",
        "--scheduler", cluster.scheduler_address,
    )  # fmt: skip
    doc = json.loads(proc.stdout)
    assert proc.returncode == 5, proc.stderr
    assert [h["name"] for h in doc["hosts"]] == lab6.hosts


def test_the_profile_runs_on_the_cluster_with_the_same_verdicts(
    lab6: lab.LabInfo, cluster: LocalCluster
) -> None:
    runs = []
    for extra in ([], ["--scheduler", cluster.scheduler_address]):
        proc = run_fleet("profile", "-i", lab6.inventory, "--window", "1", "--json", *extra)
        hosts = json.loads(proc.stdout)["hosts"]
        runs.append((proc.returncode, [(h["host"], h["status"]) for h in hosts]))
    assert runs[0] == runs[1] and runs[0][0] == 5


def _start_audit(inventory: Path, scheduler: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        fleet_argv("audit", "-i", inventory, "--json", "--scheduler", scheduler, *args),
        env=fleet_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _kill_a_busy_worker(client: Client, deadline_s: float = 60) -> tuple[str, list[str]]:
    """SIGKILL the process of a worker that is running a shard: (its address, its keys)."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        busy = {w: keys for w, keys in client.processing().items() if keys}
        if busy:
            addr, keys = next(iter(busy.items()))
            time.sleep(0.5)  # the shard has started its hosts
            pid = client.run(os.getpid, workers=[addr])[addr]
            os.kill(pid, signal.SIGKILL)
            return addr, [str(k) for k in keys]
        time.sleep(0.05)
    raise AssertionError("no worker took a shard")


def test_a_worker_killed_mid_shard_has_its_hosts_rerun_elsewhere(
    lab6: lab.LabInfo, cluster: LocalCluster
) -> None:
    _, one = _audit("-i", lab6.inventory, "--cpu-window", "3")
    with Client(cluster.scheduler_address, set_as_default=False) as client:
        proc = _start_audit(lab6.inventory, cluster.scheduler_address, "--cpu-window", "3")
        _kill_a_busy_worker(client)
        out, err = proc.communicate(timeout=120)
    doc = json.loads(out)
    assert proc.returncode == 5, err
    assert _summary(doc) == _summary(one)  # nothing lost, nothing twice
    assert not [h for h in doc["hosts"] if "worker" in (h.get("error") or "")]


def test_a_shard_whose_worker_dies_past_allowed_failures_is_reported_lost(
    lab6: lab.LabInfo,
) -> None:
    with (
        dask.config.set({"distributed.scheduler.allowed-failures": 0}),
        _cluster(2) as c,
        Client(c.scheduler_address, set_as_default=False) as client,
    ):
        proc = _start_audit(lab6.inventory, c.scheduler_address, "--cpu-window", "3")
        _, keys = _kill_a_busy_worker(client)
        out, err = proc.communicate(timeout=120)
    doc = json.loads(out)
    assert proc.returncode & 4, err
    (key,) = keys
    shard = int(key.rsplit("-", 1)[1])  # hosts are dealt round-robin: shard n has n, n+2, ...
    lost = [h["name"] for h in doc["hosts"] if (h.get("error") or "").startswith("worker lost")]
    assert lost == lab6.hosts[shard::2]
    assert "allowed-failures" in doc["hosts"][shard]["error"]
    others = [h for h in doc["hosts"] if h["name"] not in lost and h["name"] != "down-06"]
    assert others and all(h["status"] in ("compliant", "non-compliant", "error") for h in others)
    assert all("worker" not in (h.get("error") or "") for h in others)


def test_ctrl_c_releases_the_shards_and_exits_130(lab6: lab.LabInfo, cluster: LocalCluster) -> None:
    with Client(cluster.scheduler_address, set_as_default=False) as client:
        proc = _start_audit(lab6.inventory, cluster.scheduler_address, "--cpu-window", "20")
        deadline = time.monotonic() + 60
        while not any(client.processing().values()):
            assert time.monotonic() < deadline, "no shard started"
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)  # what a terminal's Ctrl-C sends
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 130, err
        assert "Traceback" not in err and out == ""
        # the running shards finish their hosts' windows; nothing is left queued or kept
        deadline = time.monotonic() + 60
        while any(client.processing().values()) or any(client.has_what().values()):
            assert time.monotonic() < deadline, client.processing()
            time.sleep(0.2)


def test_a_scheduler_that_goes_away_mid_run_leaves_every_host_an_error(
    lab6: lab.LabInfo,
) -> None:
    with _cluster(2) as c, Client(c.scheduler_address, set_as_default=False) as client:
        proc = _start_audit(lab6.inventory, c.scheduler_address, "--cpu-window", "20")
        deadline = time.monotonic() + 60
        while not any(client.processing().values()):
            assert time.monotonic() < deadline, "no shard started"
            time.sleep(0.05)
        c.close()  # scheduler and workers gone, shards unfinished
        out, err = proc.communicate(timeout=120)
    assert proc.returncode == 4, err
    assert "Traceback" not in err
    doc = json.loads(out)
    assert all(h["status"] == "error" and "lost" in h["error"] for h in doc["hosts"]), doc


@contextlib.contextmanager
def _site_worker(scheduler: str, site: str, name: str) -> Iterator[subprocess.Popen[bytes]]:
    """`dask worker` as a person starts one beside a site's bastion; stopped by pid."""
    dask_cli = Path(sys.executable).with_name("dask")
    proc = subprocess.Popen(
        [str(dask_cli), "worker", scheduler, "--name", name, "--nthreads", "1", "--no-nanny",
         "--host", "127.0.0.1", "--no-dashboard", "--resources", f"fleet_site:{site}=1"],
        env=fleet_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait(10)


def _sited_inventory(info: lab.LabInfo, tmp_path: Path, sites: dict[str, str]) -> Path:
    doc = yaml.safe_load(info.inventory.read_text())
    for group in doc["all"]["children"].values():
        for name, hostvars in group["hosts"].items():
            if name in sites:
                hostvars["fleet_site"] = sites[name]
    path = tmp_path / "inventory.yml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def _wait_for(client: Client, n: int) -> dict[str, str]:
    client.wait_for_workers(n, timeout=60)
    return {w["name"]: a for a, w in client.scheduler_info(n_workers=-1)["workers"].items()}


def test_shards_follow_fleet_site_and_a_site_whose_worker_is_gone_is_lost(
    lab6: lab.LabInfo, tmp_path: Path
) -> None:
    a, b = lab6.hosts[:3], lab6.hosts[3:5]  # down-06 has no site
    inventory = _sited_inventory(lab6, tmp_path, {**dict.fromkeys(a, "a"), **dict.fromkeys(b, "b")})
    _, one = _audit("-i", inventory, "--cpu-window", "1")
    with (
        _cluster(0) as c,
        Client(c.scheduler_address, set_as_default=False) as client,
        _site_worker(c.scheduler_address, "a", "beside-bastion-a"),
        _site_worker(c.scheduler_address, "b", "beside-bastion-b") as worker_b,
    ):
        where = _wait_for(client, 2)
        with get_task_stream(client) as stream:
            proc = _start_audit(inventory, c.scheduler_address, "--cpu-window", "1")
            out, err = proc.communicate(timeout=120)
        ran = {str(t["key"]): t["worker"] for t in stream.data}

        # b's only worker dies mid-shard: no worker may take b's hosts any more
        proc = _start_audit(inventory, c.scheduler_address, "--cpu-window", "4")
        deadline = time.monotonic() + 60
        while not client.processing().get(where["beside-bastion-b"]):
            assert time.monotonic() < deadline, "site b's shard never started"
            time.sleep(0.05)
        worker_b.kill()
        out2, err2 = proc.communicate(timeout=120)

    doc = json.loads(out)
    assert proc.returncode & 4 and doc["hosts"][5]["error"] == (
        "no Dask worker serves hosts without fleet_site"
    ), err
    assert _summary(doc)[:5] == _summary(one)[:5]
    assert sorted(ran.values()) == sorted(where.values())  # one shard per site worker
    for key, worker in ran.items():
        site = "a" if "fleet_site=a" in key else "b"
        assert worker == where[f"beside-bastion-{site}"], ran

    doc2 = json.loads(out2)
    errors = {h["name"]: h.get("error") or "" for h in doc2["hosts"]}
    assert _summary(doc2)[:3] == _summary(one)[:3], err2  # site a: untouched
    assert {errors[n] for n in b} == {"worker lost: no Dask worker left that may run fleet_site=b"}


def test_a_scheduler_that_does_not_answer_is_a_usage_error_before_any_host(
    lab6: lab.LabInfo,
) -> None:
    proc = run_fleet("audit", "-i", lab6.inventory, "--scheduler", "tcp://127.0.0.1:9",
                     "--connect-timeout", "2")  # fmt: skip
    assert proc.returncode == 2 and proc.stdout == ""
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith(
        "fleet: error: --scheduler tcp://127.0.0.1:9: cannot reach the Dask scheduler"
    )
    both = run_fleet("audit", "-i", lab6.inventory, "--scheduler", "tcp://127.0.0.1:9",
                     "--procs", "2")  # fmt: skip
    assert both.returncode == 2
    assert both.stderr.strip() == (
        "fleet: error: --procs and --scheduler: choose one (a Dask worker is a process)"
    )
