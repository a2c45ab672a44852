"""`make bench` (profile part): what `fleet profile` costs, on the host and on the client.

Two measurements, --rounds times each:

  self   this machine profiled through the lab's sshd with fleet_root /: the real kernel,
         the real perf (Debian's linux-perf must be installed; root, for perf -a), the
         default window (5 s) and frequency (99 Hz). Reported: the CPU the profile's shell
         and everything it ran used on the host (`times`, fleet/remote/profile.sh) as seconds
         and as % of one CPU over the window, and the samples it took.
  lab    N lab hosts at once (their perf replays captured samples): wall and client CPU
         (the CLI's own rusage) of one `fleet profile` run.

Writes bench/profile.json and prints a markdown table for docs/performance.md.
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
import time
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))

from fleet import lab  # noqa: E402


def fleet(args: list[str], env: dict[str, str]) -> tuple[dict[str, Any], float, float]:
    """One CLI run: its JSON, wall seconds, client CPU seconds (user + system, children)."""
    before = os.times()
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "fleet.cli", "profile", "--json", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    wall = time.monotonic() - t0
    after = os.times()
    cpu = (after.children_user - before.children_user) + (
        after.children_system - before.children_system
    )
    if not proc.stdout:
        raise SystemExit(f"fleet profile failed: {proc.stderr.strip()}")
    return json.loads(proc.stdout), wall, cpu


def self_inventory(info: lab.LabInfo, path: Path) -> Path:
    doc = yaml.safe_load(info.inventory.read_text())
    vars_ = doc["all"]["vars"]
    path.write_text(
        yaml.safe_dump({"all": {"vars": vars_, "hosts": {"self": {"fleet_root": "/"}}}})
    )
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench/profile.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=int(os.environ.get("BENCH_ROUNDS", 3)))
    p.add_argument("--hosts", type=int, default=50)
    p.add_argument("--out", type=Path, default=HERE / "profile.json")
    args = p.parse_args(argv)
    if shutil.which("perf") is None:
        print(
            "bench/profile.py: perf is not installed (apt-get install linux-perf)", file=sys.stderr
        )
        return 2
    env = {**os.environ, "NO_COLOR": "1"}
    work = Path(tempfile.mkdtemp(prefix="fleet-bench-profile-"))
    info = lab.up(work / "lab", hosts=args.hosts, scenario="mixed")
    try:
        inv = self_inventory(info, work / "self.yml")
        own = []
        for _ in range(args.rounds):
            doc, wall, _cpu = fleet(["-i", str(inv)], env)
            (host,) = doc["hosts"]
            if host["error"] or host["cost_cpu_s"] is None:
                raise SystemExit(f"self: {host['error'] or 'no cost reported'}")
            own.append((host["cost_cpu_s"], host["window_s"], host["samples"], wall))
        runs = []
        for _ in range(args.rounds):
            doc, wall, cpu = fleet(["-i", str(info.inventory), "--window", "5"], env)
            runs.append((wall, cpu, sum(1 for h in doc["hosts"] if h["samples"])))
    finally:
        lab.down(info.state_dir)
        shutil.rmtree(work, ignore_errors=True)
    cost = statistics.median(c for c, _, _, _ in own)
    window = statistics.median(w for _, w, _, _ in own)
    result = {
        "self": {
            "kernel": os.uname().release,
            "cpus": os.cpu_count(),
            "window_s": window,
            "frequency_hz": 99,
            "host_cpu_s": cost,
            "host_cpu_pct_of_one_cpu": round(100 * cost / window, 2),
            "samples": statistics.median(s for _, _, s, _ in own),
            "wall_s": round(statistics.median(w for _, _, _, w in own), 2),
            "rounds": [list(r) for r in own],
        },
        "lab": {
            "hosts": args.hosts,
            "profiled": runs[0][2],
            "wall_s": round(statistics.median(w for w, _, _ in runs), 2),
            "client_cpu_s": round(statistics.median(c for _, c, _ in runs), 2),
            "rounds": [list(r) for r in runs],
        },
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    s, lb = result["self"], result["lab"]
    print("| measurement | value |\n|---|---|")
    print(
        f"| host CPU of one profile ({s['window_s']:.1f} s, 99 Hz, {s['cpus']} CPUs, "
        f"kernel {s['kernel']}) | {s['host_cpu_s']:.3f} s = {s['host_cpu_pct_of_one_cpu']}% "
        f"of one CPU |"
    )
    print(f"| samples taken | {s['samples']} |")
    print(
        f"| `fleet profile` of {lb['hosts']} lab hosts | wall {lb['wall_s']} s, client CPU "
        f"{lb['client_cpu_s']} s |"
    )
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
