"""`make bench` (scaling part): hosts/s and client CPU per host of `fleet audit` in one
process, in `--procs 2`, and on a 2-worker Dask LocalCluster (`--scheduler`), at several
lab sizes.

Each configuration runs `fleet audit --cpu-window 0` over a lab of N hosts (one real sshd on
127.0.0.1, no CPU or kernel model), interleaved round by round so drift in the machine hits
every configuration alike. Measured per run:

  wall        the CLI's start to its exit
  client CPU  user + system of the CLI and every process it started (forked --procs workers
              are reaped by it, so they count), plus, for Dask, the CPU the worker processes
              and the shard processes they fork used meanwhile, and this process's (the
              LocalCluster's scheduler and nannies)
  server CPU  the lab's sshd and everything under it (the hosts' side), from /proc

The lab's sshd shares this machine's cores with the client: on 2 cores the server side
costs several times the client's CPU per host, so hosts/s here is bounded by the machine,
not by the client. "hosts per client CPU-second" is what one core of a controller whose
hosts are elsewhere sustains (docs/performance.md builds the per-core model on it).
`--from FILE` re-renders a saved bench/scaling.json. Writes bench/scaling.json and prints a
markdown table.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))

from fleet import lab  # noqa: E402
from fleet.lab.bastion import session_pids  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def tree_cpu_s(pid: int) -> float:
    """A process and its live descendants, plus what its reaped children used."""
    total = 0.0
    for p in [pid, *session_pids(pid)]:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(f) for f in fields[11:15]) / TICK  # utime stime cutime cstime
    return total


def run_once(
    inventory: Path, extra: list[str], env: dict[str, str], sshd_pid: int, others: list[int]
) -> dict[str, float]:
    server0 = tree_cpu_s(sshd_pid)
    others0 = sum(tree_cpu_s(p) for p in others)
    before = os.times()
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "fleet.cli", "audit", "-i", str(inventory), "--cpu-window", "0",
         "--json", *extra],
        capture_output=True, text=True, env=env, timeout=1800,
    )  # fmt: skip
    wall = time.monotonic() - t0
    after = os.times()
    cli = (after.children_user - before.children_user) + (
        after.children_system - before.children_system
    )
    cluster = sum(tree_cpu_s(p) for p in others) - others0
    if others:  # the scheduler thread of this process
        cluster += (after.user - before.user) + (after.system - before.system)
    doc = json.loads(proc.stdout or "{}")
    hosts = doc.get("hosts", [])
    bad = [h for h in hosts if h["status"] in ("error", "unreachable")]
    if not hosts or bad:
        why = sorted({f"{h['status']}: {h.get('error')}" for h in bad})[:5]
        raise SystemExit(f"audit {extra}: {len(bad)} hosts failed: {why} {proc.stderr[-500:]}")
    return {
        "wall_s": wall,
        "client_cpu_s": cli + cluster,
        "server_cpu_s": tree_cpu_s(sshd_pid) - server0,
        "hosts": len(hosts),
    }


def summarise(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    keys = sorted({(r["config"], r["n"]) for r in runs}, key=lambda k: (k[1], k[0]))
    for config, n in keys:
        rs = [r for r in runs if r["config"] == config and r["n"] == n]
        rates = [n / r["wall_s"] for r in rs]
        cpu = statistics.median(r["client_cpu_s"] for r in rs)
        server = statistics.median(r["server_cpu_s"] for r in rs)
        rows.append({
            "config": config,
            "n": n,
            "runs": len(rs),
            "hosts_per_s": statistics.median(rates),
            "hosts_per_s_range": [min(rates), max(rates)],
            "client_ms_per_host": 1000 * cpu / n,
            "server_ms_per_host": 1000 * server / n,
            "hosts_per_client_cpu_s": n / cpu,
        })  # fmt: skip
    return rows


def render(rows: list[dict[str, Any]]) -> str:
    out = [
        "| N | run | hosts/s (min-max) | client CPU ms/host | vs 1 proc | sshd + probe CPU "
        "ms/host | hosts per client CPU-second |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    base = {r["n"]: r["client_ms_per_host"] for r in rows if r["config"] == "1 proc"}
    for r in rows:
        lo, hi = r["hosts_per_s_range"]
        ratio = r["client_ms_per_host"] / base[r["n"]] - 1 if r["n"] in base else 0.0
        out.append(
            f"| {r['n']} | {r['config']} | {r['hosts_per_s']:.0f} ({lo:.0f}-{hi:.0f}) | "
            f"{r['client_ms_per_host']:.2f} | {ratio:+.0%} | {r['server_ms_per_host']:.1f} | "
            f"{r['hosts_per_client_cpu_s']:.0f} |"
        )
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="200,1000,2000")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--forks", type=int, default=20)
    ap.add_argument("--out", type=Path, default=HERE / "scaling.json")
    ap.add_argument("--from", dest="saved", type=Path, help="render this scaling.json only")
    args = ap.parse_args(argv)
    if args.saved:
        print(render(summarise(json.loads(args.saved.read_text())["runs"])))
        return 0
    from distributed import Client, LocalCluster

    env = {**os.environ, "HOME": tempfile.mkdtemp(prefix="fleet-bench-home-")}
    env.pop("SSH_AUTH_SOCK", None)
    runs: list[dict[str, Any]] = []
    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
        dashboard_address=None, silence_logs=logging.CRITICAL, env={"HOME": env["HOME"]},
    ) as cluster, Client(cluster.scheduler_address, set_as_default=False) as client:  # fmt: skip
        # The nannies and the scheduler live in this process; the workers are its children.
        others = list(client.run(os.getpid).values())
        configs = {
            "1 proc": ["--procs", "1"],
            "2 procs": ["--procs", "2"],
            "Dask, 2 workers": ["--scheduler", cluster.scheduler_address],
        }
        for n in (int(s) for s in args.sizes.split(",")):
            state = Path(tempfile.mkdtemp(prefix=f"fleet-scaling-{n}-"))
            info = lab.up(state / "lab", hosts=n, scenario="incident", cpu_model=False,
                          kernel_model=False)  # fmt: skip
            try:
                names = list(configs)
                for rnd in range(args.rounds):
                    for config in names[rnd % 3 :] + names[: rnd % 3]:
                        extra = [*configs[config], "--forks", str(args.forks)]
                        pids = others if config.startswith("Dask") else []
                        r = run_once(info.inventory, extra, env, info.sshd_pid, pids)
                        runs.append({"config": config, "n": n, "round": rnd, **r})
                        print(
                            f"N={n} {config}: {n / r['wall_s']:.0f} hosts/s, client "
                            f"{1000 * r['client_cpu_s'] / n:.2f} ms/host",
                            flush=True,
                        )
            finally:
                lab.down(info.state_dir)
    rows = summarise(runs)
    result = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "runs": runs,
        "summary": rows,
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(render(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
