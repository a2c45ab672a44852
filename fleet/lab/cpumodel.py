"""Lab CPU model: keeps every lab host's proc/stat moving the way a real kernel's does.

The audit takes the CPU split from two samples of /proc/stat, so static files would read as an
idle fleet. This daemon rewrites each host's proc/stat every 0.25 s in the real format, its
counters cumulative USER_HZ ticks that only grow. How fast system time grows follows what the
host's tree says is switched on: enabled tracepoints, armed kprobes and enabled probe events
make a host HOT (~70% system), anything else is COOL, so a fix applied to a tree shows up in
the CPU numbers the way it would on a real machine.

Run as ``python -m fleet.lab.cpumodel STATE_DIR`` (``fleet.lab.up`` does); ``--bench N``
builds N throw-away host trees and reports the tick time instead.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

USER_HZ = 100
NCPUS = 8
INTERVAL = 0.25

# Columns of a cpu line: user nice system idle iowait irq softirq steal guest guest_nice.
_NCOLS = 10
_IDLE = 3
# Share of one CPU's time per column; idle gets whatever is left.
_HOT = (0.15, 0.0, 0.70, 0.0, 0.002, 0.0, 0.05, 0.001, 0.0, 0.0)
_COOL = (0.25, 0.002, 0.04, 0.0, 0.004, 0.0, 0.004, 0.001, 0.0, 0.0)
# What a long-running box has accumulated since boot, for the starting counters.
_HISTORY = (0.20, 0.002, 0.06, 0.0, 0.004, 0.0, 0.006, 0.001, 0.0, 0.0)

# Events per second for the whole host: (hot, cool).
_CTXT_RATE = (95_000.0, 9_000.0)
_INTR_RATE = (60_000.0, 4_000.0)
_FORK_RATE = (40.0, 3.0)
# softirq vectors HI TIMER NET_TX NET_RX BLOCK IRQ_POLL TASKLET SCHED HRTIMER RCU.
_SOFTIRQ_HOT = (0.0, 2_000.0, 300.0, 40_000.0, 50.0, 0.0, 10.0, 3_000.0, 5.0, 4_000.0)
_SOFTIRQ_COOL = (0.0, 1_500.0, 5.0, 300.0, 40.0, 0.0, 2.0, 1_200.0, 2.0, 1_500.0)
_NSOFTIRQ = len(_SOFTIRQ_HOT)
# Per-IRQ columns of the intr line; the listed device IRQs (virtio/NVMe MSI queues) take
# this share of all interrupts, the rest are arch interrupts that only count in the total.
_NIRQS = 64
_IRQ_DEVICES = (24, 25, 26, 27, 28, 29, 30, 31)
_IRQ_DEVICE_SHARE = 0.8

# A file whose mtime is this recent may still change within the same mtime tick, so its
# cached content is not trusted (git's "racy" entries).
_RACY_NS = 200_000_000


@dataclass
class Counters:
    """Everything proc/stat shows for one host, as floats so fractions of ticks accumulate."""

    cpus: list[list[float]]
    intr: list[float]
    intr_other: float
    ctxt: float
    btime: int
    processes: float
    procs_running: int
    procs_blocked: int
    softirq: list[float]


def fresh_counters(seed: str, now: float) -> Counters:
    """Counters of a box that booted days ago, deterministic for one seed."""
    rng = random.Random(seed)
    uptime = rng.uniform(3, 40) * 86_400
    ticks = uptime * USER_HZ
    cpus = []
    for _ in range(NCPUS):
        scale = rng.uniform(0.8, 1.2)
        row = [ticks * share * scale for share in _HISTORY]
        row[_IDLE] = ticks - sum(row)
        cpus.append(row)
    intr = [0.0] * _NIRQS
    device_total = uptime * _INTR_RATE[1] * _IRQ_DEVICE_SHARE
    for irq in _IRQ_DEVICES:
        intr[irq] = device_total / len(_IRQ_DEVICES) * rng.uniform(0.5, 1.5)
    intr[1] = 9.0  # i8042: a handful at boot, never again
    intr[12] = 144.0
    return Counters(
        cpus=cpus,
        intr=intr,
        intr_other=uptime * _INTR_RATE[1] * (1 - _IRQ_DEVICE_SHARE),
        ctxt=uptime * _CTXT_RATE[1] * rng.uniform(0.8, 1.2),
        btime=int(now - uptime),
        processes=uptime * _FORK_RATE[1] * rng.uniform(0.5, 1.5),
        procs_running=1,
        procs_blocked=0,
        softirq=[uptime * rate * rng.uniform(0.8, 1.2) for rate in _SOFTIRQ_COOL],
    )


def render_stat(c: Counters) -> str:
    """The text of /proc/stat: same lines, order and spacing as fs/proc/stat.c."""
    rows = [[int(v) for v in cpu] for cpu in c.cpus]
    total = [sum(col) for col in zip(*rows, strict=True)]
    intr = [int(v) for v in c.intr]
    softirq = [int(v) for v in c.softirq]
    lines = ["cpu  " + " ".join(map(str, total))]
    lines += [f"cpu{i} " + " ".join(map(str, row)) for i, row in enumerate(rows)]
    lines.append(f"intr {sum(intr) + int(c.intr_other)} " + " ".join(map(str, intr)))
    lines.append(f"ctxt {int(c.ctxt)}")
    lines.append(f"btime {c.btime}")
    lines.append(f"processes {int(c.processes)}")
    lines.append(f"procs_running {c.procs_running}")
    lines.append(f"procs_blocked {c.procs_blocked}")
    lines.append(f"softirq {sum(softirq)} " + " ".join(map(str, softirq)))
    return "\n".join(lines) + "\n"


def parse_stat(text: str) -> Counters | None:
    """Counters back from a proc/stat this module wrote, or None if it is not one."""
    cpus: list[list[float]] = []
    fields: dict[str, list[int]] = {}
    try:
        for line in text.splitlines():
            name, *values = line.split()
            if name.startswith("cpu") and name != "cpu":
                cpus.append([float(v) for v in values])
            else:
                fields[name] = [int(v) for v in values]
        intr = [float(v) for v in fields["intr"][1:]]
        softirq = [float(v) for v in fields["softirq"][1:]]
        counters = Counters(
            cpus=cpus,
            intr=intr,
            intr_other=float(fields["intr"][0] - sum(fields["intr"][1:])),
            ctxt=float(fields["ctxt"][0]),
            btime=fields["btime"][0],
            processes=float(fields["processes"][0]),
            procs_running=fields["procs_running"][0],
            procs_blocked=fields["procs_blocked"][0],
            softirq=softirq,
        )
    except (KeyError, IndexError, ValueError):
        return None
    shape_ok = (
        len(cpus) == NCPUS
        and all(len(row) == _NCOLS for row in cpus)
        and len(intr) == _NIRQS
        and len(softirq) == _NSOFTIRQ
    )
    return counters if shape_ok else None


def initial_stat(seed: str, now: float | None = None) -> str:
    """proc/stat for a new tree, so one exists even when no daemon runs."""
    return render_stat(fresh_counters(seed, time.time() if now is None else now))


def advance(c: Counters, seconds: float, hot: bool, rng: random.Random) -> None:
    """Move the counters on by `seconds` of a HOT or COOL host, with a little jitter."""
    shares = _HOT if hot else _COOL
    ticks = seconds * USER_HZ
    for row in c.cpus:
        wobble = 1.0 + rng.uniform(-0.08, 0.08)
        busy = 0.0
        for col in range(_NCOLS):
            if col != _IDLE and shares[col]:
                step = ticks * shares[col] * wobble
                row[col] += step
                busy += step
        row[_IDLE] += max(ticks - busy, 0.0)
    load = 0 if hot else 1
    wobble = 1.0 + rng.uniform(-0.1, 0.1)
    intr = seconds * _INTR_RATE[load] * wobble
    per_device = intr * _IRQ_DEVICE_SHARE / len(_IRQ_DEVICES)
    for irq in _IRQ_DEVICES:
        c.intr[irq] += per_device
    c.intr_other += intr * (1 - _IRQ_DEVICE_SHARE)
    c.ctxt += seconds * _CTXT_RATE[load] * wobble
    c.processes += seconds * _FORK_RATE[load] * wobble
    rates = _SOFTIRQ_HOT if hot else _SOFTIRQ_COOL
    for i, rate in enumerate(rates):
        c.softirq[i] += seconds * rate * wobble
    c.procs_running = rng.randint(5, 9) if hot else rng.randint(1, 2)


class _FileCache:
    """Reads tree files, re-reading only what changed: a tick mostly costs one stat() per file."""

    def __init__(self) -> None:
        self._files: dict[str, tuple[tuple[int, int, int], bytes | None]] = {}
        self._dirs: dict[str, tuple[tuple[int, int], list[str]]] = {}
        self.now_ns = time.time_ns()

    def read(self, path: str) -> bytes | None:
        """Content of `path`, None if missing or unreadable (e.g. the write-only sysctl)."""
        try:
            st = os.stat(path)
        except OSError:
            return None
        sig = (st.st_ino, st.st_size, st.st_mtime_ns)
        hit = self._files.get(path)
        if hit is not None and hit[0] == sig and self.now_ns - st.st_mtime_ns > _RACY_NS:
            return hit[1]
        try:
            with open(path, "rb") as f:
                data: bytes | None = f.read()
        except OSError:
            data = None
        self._files[path] = (sig, data)
        return data

    def listdir(self, path: str) -> list[str]:
        try:
            st = os.stat(path)
        except OSError:
            return []
        sig = (st.st_ino, st.st_mtime_ns)
        hit = self._dirs.get(path)
        if hit is not None and hit[0] == sig and self.now_ns - st.st_mtime_ns > _RACY_NS:
            return hit[1]
        try:
            names = sorted(os.listdir(path))
        except OSError:
            names = []
        self._dirs[path] = (sig, names)
        return names


def _events_on(data: bytes | None) -> bool:
    """A set_event lists something other than rasdaemon's ras:* (allowlisted, rare)."""
    if not data:
        return False
    return any(line.strip() and not line.startswith(b"ras:") for line in data.splitlines())


def _kprobe_armed(data: bytes | None) -> bool:
    """kprobes/list has a probe that is neither disabled nor gone."""
    if not data:
        return False
    return any(
        line.strip() and b"[DISABLED]" not in line and b"[GONE]" not in line
        for line in data.splitlines()
    )


def _probe_events(data: bytes | None, default_group: str) -> list[str]:
    """`group/event` for each definition in kprobe_events/uprobe_events format."""
    if not data:
        return []
    defined: list[str] = []
    for line in data.decode(errors="replace").splitlines():
        head, _, _ = line.strip().partition(" ")
        kind, sep, name = head.partition(":")
        if not sep or not name:
            continue
        event = name if "/" in name else f"{default_group}/{name}"
        if kind == "-":
            # A lab fix may append "-:event" the way one deletes on a real kernel.
            defined = [d for d in defined if d != event and d.split("/")[1] != name]
        else:
            defined.append(event)
    return defined


class Host:
    """One lab host: its counters, where its files are, and how to tell if it is HOT."""

    def __init__(self, root: Path, now: float) -> None:
        self.root = root
        r = str(root)
        self.stat_path = f"{r}/proc/stat"
        self.tmp_path = f"{r}/proc/.stat.fleet-lab.tmp"
        tracing = f"{r}/sys/kernel/tracing"
        self.set_event = f"{tracing}/set_event"
        self.instances = f"{tracing}/instances"
        self.events = f"{tracing}/events"
        self.kprobe_events = f"{tracing}/kprobe_events"
        self.uprobe_events = f"{tracing}/uprobe_events"
        self.kprobes_enabled = f"{r}/sys/kernel/debug/kprobes/enabled"
        self.kprobes_list = f"{r}/sys/kernel/debug/kprobes/list"
        self.rng = random.Random(root.name)
        self.hot = False
        counters = None
        try:
            with open(self.stat_path) as f:
                counters = parse_stat(f.read())
            # Catch up on the time since the tree (or a previous daemon) last wrote it.
            behind = min(max(now - os.stat(self.stat_path).st_mtime, 0.0), 86_400.0)
        except OSError:
            behind = 0.0
        if counters is None:
            counters = fresh_counters(root.name, now)
            behind = 0.0
        self.counters = counters
        self.last = time.monotonic() - behind

    def is_hot(self, files: _FileCache) -> bool:
        if _events_on(files.read(self.set_event)):
            return True
        for name in files.listdir(self.instances):
            if _events_on(files.read(f"{self.instances}/{name}/set_event")):
                return True
        enabled = files.read(self.kprobes_enabled)
        if enabled is not None and enabled.strip() == b"1":
            if _kprobe_armed(files.read(self.kprobes_list)):
                return True
        probes = _probe_events(files.read(self.kprobe_events), "kprobes")
        probes += _probe_events(files.read(self.uprobe_events), "uprobes")
        for event in probes:
            state = files.read(f"{self.events}/{event}/enable")
            if state is not None and state.strip() == b"1":
                return True
        return False

    def tick(self, files: _FileCache, now_mono: float) -> None:
        self.hot = self.is_hot(files)
        advance(self.counters, now_mono - self.last, self.hot, self.rng)
        self.last = now_mono
        data = render_stat(self.counters).encode()
        fd = os.open(self.tmp_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
        os.replace(self.tmp_path, self.stat_path)


class Model:
    """All hosts under one lab's hosts/ directory."""

    def __init__(self, hosts_dir: Path) -> None:
        self.hosts_dir = hosts_dir
        self.hosts: dict[str, Host] = {}
        self._files = _FileCache()
        self._seen: tuple[int, int] | None = None

    def _rescan(self) -> None:
        # Hosts only come and go with the directory's mtime, so most ticks skip the listing.
        st = os.stat(self.hosts_dir)
        sig = (st.st_ino, st.st_mtime_ns)
        if sig == self._seen:
            return
        self._seen = sig
        now = time.time()
        names = {p.name for p in self.hosts_dir.iterdir() if (p / "proc").is_dir()}
        for name in list(self.hosts):
            if name not in names:
                del self.hosts[name]
        for name in sorted(names - self.hosts.keys()):
            self.hosts[name] = Host(self.hosts_dir / name, now)

    def tick(self) -> float:
        """Advance and rewrite every host once; returns the seconds it took."""
        start = time.perf_counter()
        self._rescan()
        self._files.now_ns = time.time_ns()
        now = time.monotonic()
        for host in self.hosts.values():
            try:
                host.tick(self._files, now)
            except OSError:
                # The tree is being removed under us (lab down); the next rescan drops it.
                self._seen = None
        return time.perf_counter() - start


def run(state_dir: Path, should_stop: Callable[[], bool], interval: float = INTERVAL) -> None:
    """Tick until `should_stop()` or until the lab's hosts/ directory is gone."""
    hosts_dir = state_dir / "hosts"
    model = Model(hosts_dir)
    deadline = time.monotonic()
    while not should_stop() and hosts_dir.is_dir():
        try:
            model.tick()
        except FileNotFoundError:
            return
        deadline += interval
        pause = deadline - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        else:
            deadline = time.monotonic()  # fell behind: don't try to make up lost ticks


def bench(nhosts: int, ticks: int = 20) -> dict[str, float]:
    """Tick time over `nhosts` fresh trees (mixed scenarios) in a temporary directory."""
    from fleet.lab.trees import SCENARIOS, make_host_tree

    with tempfile.TemporaryDirectory(prefix="fleet-cpumodel-bench-") as tmp:
        hosts_dir = Path(tmp) / "hosts"
        hosts_dir.mkdir()
        t0 = time.perf_counter()
        for i in range(1, nhosts + 1):
            scenario = SCENARIOS[(i - 1) % len(SCENARIOS)]
            make_host_tree(hosts_dir / f"{scenario}-{i:04d}", scenario, i)
        build = time.perf_counter() - t0
        model = Model(hosts_dir)
        first = model.tick()
        times = []
        for _ in range(ticks):
            time.sleep(0.01)
            times.append(model.tick())
        return {
            "hosts": float(nhosts),
            "build_s": build,
            "first_tick_ms": first * 1000,
            "median_tick_ms": statistics.median(times) * 1000,
            "max_tick_ms": max(times) * 1000,
        }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fleet.lab.cpumodel", description=__doc__)
    parser.add_argument("state_dir", nargs="?", type=Path, help="lab state directory")
    parser.add_argument("--bench", type=int, metavar="N", help="time ticks over N hosts, exit")
    args = parser.parse_args(argv)
    if args.bench:
        for key, value in bench(args.bench).items():
            print(f"{key}: {value:.1f}")
        return 0
    if args.state_dir is None:
        parser.error("STATE_DIR is required")
    stopping = False

    def stop(_signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    run(args.state_dir, lambda: stopping)
    return 0


if __name__ == "__main__":
    sys.exit(main())
