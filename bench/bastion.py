"""`make bench-bastion`: 200 hosts behind ONE bastion, fleet's fabric channels vs `ssh -W`.

A lab of N clean hosts (one real sshd on 127.0.0.1, CPU model on so the CPU window reads real
deltas) reachable only through a lab bastion sshd (fleet/lab/bastion.py: AllowTcpForwarding,
PermitOpen to the lab only, LogLevel DEBUG1). Each inventory host carries `fleet_jump`.
Two ways to cross the bastion, interleaved (A B, B A, A B, ...) for --rounds rounds:

  fabric   the default: one fabric Connection to the bastion for the run, each target's SSH
           in a direct-tcpip channel of it (fleet/transport/jump.py)
  ssh-W    FLEET_JUMP_VIA=ssh: paramiko's ProxyCommand running `ssh -W host:port bastion`
           per target (what fleet did before; the hop's key checked against the same files)

Measured per run: wall; client CPU of fleet AND every process it started (wait4 rusage of the
CLI, whose reaped children are included, plus ssh processes orphaned to us as a child
subreaper); processes spawned (descendants of the CLI seen by polling /proc every 20 ms; each
lives at least the CPU window); at the bastion, from its log: sessions accepted and key
exchanges; and the bastion sshd's own CPU (its reaped sessions). Writes bench/bastion.json and
prints a markdown table for docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO))

from run import _ppid, children_cpu_s, interleave, measure, wait_no_children  # noqa: E402

from fleet import lab  # noqa: E402
from fleet.lab import bastion as lab_bastion  # noqa: E402

WAYS = ("fabric", "ssh-W")


@dataclass
class Run:
    way: str
    round: int
    hosts: int
    ok_hosts: int
    wall_s: float
    client_cpu_s: float
    processes: int
    ssh_w_processes: int
    bastion_sessions: int
    bastion_kex: int
    direct_tcpip: int
    bastion_cpu_s: float


class Spawned:
    """Polls for processes below the CLI (ssh -W per target) while it runs."""

    def __init__(self) -> None:
        self.seen: set[int] = set()
        self.ssh_w: set[int] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        me = os.getpid()
        self._before = set(lab_bastion.session_pids(me))
        self._me = me

    def _run(self) -> None:
        cli: int | None = None
        while not self._stop.is_set():
            if cli is None:
                # The CLI: our one new direct child (the sshds' new sessions are grandchildren).
                now = [
                    p
                    for p in set(lab_bastion.session_pids(self._me)) - self._before
                    if _ppid(p) == self._me
                ]
                cli = min(now) if now else None
            if cli is not None:
                for pid in set(lab_bastion.session_pids(cli)) - self.seen:
                    self.seen.add(pid)
                    try:
                        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                    except OSError:
                        continue
                    if b"-W" in argv:
                        self.ssh_w.add(pid)
            time.sleep(0.02)

    def __enter__(self) -> Spawned:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--hosts", type=int, default=200)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--forks", type=int, default=20)
    p.add_argument("--cpu-window", type=int, default=1)
    p.add_argument("--out", type=Path, default=HERE / "bastion.json")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    for tool in ("ssh", "ssh-agent", "ssh-add"):
        if shutil.which(tool) is None:
            print(f"bench-bastion: {tool} not found", file=sys.stderr)
            return 2
    work = Path(tempfile.mkdtemp(prefix="fleet-bench-bastion-"))
    info = lab.up(work / "lab", hosts=args.hosts, scenario="clean", kernel_model=False)
    agent = None
    b = None
    runs: list[Run] = []
    try:
        sock = work / "agent.sock"
        agent = lab_bastion.start_agent(sock)
        home = work / "home"
        home.mkdir()
        drop = ("FLEET_JUMP_VIA", "FLEET_INVENTORY")
        env = {k: v for k, v in os.environ.items() if k not in drop}
        env |= {"HOME": str(home), "SSH_AUTH_SOCK": str(sock), "NO_COLOR": "1"}
        subprocess.run(["ssh-add", "-q", str(info.client_key)], env=env, check=True)
        b = lab_bastion.start(
            work / "bastion", info.state_dir / "authorized_keys", [(info.address, info.port)]
        )
        known = work / "known_hosts"
        known.write_text(info.known_hosts.read_text() + b.known_hosts_line + "\n")
        doc = yaml.safe_load(info.inventory.read_text())
        doc["all"]["vars"]["fleet_jump"] = b.spec
        doc["all"]["vars"]["fleet_known_hosts"] = str(known)
        inventory = work / "inventory.yml"
        inventory.write_text(yaml.safe_dump(doc, sort_keys=False))
        argv = [sys.executable, "-m", "fleet.cli", "audit", "-i", str(inventory), "--json"]
        argv += ["--cpu-window", str(args.cpu_window), "--forks", str(args.forks)]
        print(
            f"bench-bastion: {args.hosts} hosts behind {b.spec}; {args.rounds} rounds; "
            f"forks {args.forks}; cpu window {args.cpu_window}s",
            flush=True,
        )
        for rnd, way in interleave(list(WAYS), args.rounds):
            run_env = env | ({"FLEET_JUMP_VIA": "ssh"} if way == "ssh-W" else {})
            offset = b.log.stat().st_size
            wait_no_children(b.pid)
            bastion_before = children_cpu_s(b.pid) or 0.0
            out = work / f"{way}-{rnd}.json"
            with Spawned() as spawned:
                rc, wall, user, sys_, _, _ = measure(argv, run_env, out, timeout=600)
            wait_no_children(b.pid)
            bastion_cpu = (children_cpu_s(b.pid) or 0.0) - bastion_before
            try:
                result = json.loads(out.read_text())
                ok = sum(h["status"] == "compliant" for h in result["hosts"])
            except (ValueError, KeyError):
                ok = 0
            counts = lab_bastion.log_counts(b.log, offset)
            r = Run(
                way, rnd, args.hosts, ok, round(wall, 2), round(user + sys_, 2),
                len(spawned.seen), len(spawned.ssh_w), counts.accepted, counts.kex,
                counts.direct_tcpip, round(bastion_cpu, 2),
            )  # fmt: skip
            runs.append(r)
            print(f"  round {rnd} {way:7s} rc {rc}: {asdict(r)}", flush=True)
    finally:
        if b is not None:
            lab_bastion.stop(b)
        lab.down(info.state_dir)
        if agent is not None:
            agent.terminate()
            agent.wait(5)
        shutil.rmtree(work, ignore_errors=True)
    doc_out = {
        "started_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "config": vars(args) | {"out": str(args.out)},
        "runs": [asdict(r) for r in runs],
    }
    args.out.write_text(json.dumps(doc_out, indent=2) + "\n")
    print()
    print(render(runs))
    return 0 if all(r.ok_hosts == r.hosts for r in runs) else 1


def render(runs: list[Run]) -> str:
    """Medians per way, as a markdown table."""
    lines = [
        "| way | hosts | wall s | client CPU s (incl. children) | processes spawned (ssh -W) "
        "| bastion sessions | bastion key exchanges | direct-tcpip opens | bastion sshd CPU s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for way in WAYS:
        rs = [r for r in runs if r.way == way]
        if not rs:
            continue

        def med(field: str, rs: list[Run] = rs) -> float:
            return statistics.median(getattr(r, field) for r in rs)

        lines.append(
            f"| {way} | {rs[0].hosts} ({min(r.ok_hosts for r in rs)} ok) | {med('wall_s'):.2f} "
            f"| {med('client_cpu_s'):.2f} | {med('processes'):.0f} ({med('ssh_w_processes'):.0f}) "
            f"| {med('bastion_sessions'):.0f} "
            f"| {med('bastion_kex'):.0f} | {med('direct_tcpip'):.0f} | {med('bastion_cpu_s'):.2f} |"
        )
    lines.append(f"\nmedians of {len(runs) // len(WAYS)} interleaved rounds each")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
