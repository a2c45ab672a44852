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
import contextlib
import ctypes
import errno
import os
import random
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from fleet.lab.procstat import advance, fresh_counters, host_rates, parse_stat, render_stat

INTERVAL = 0.25
# A file whose mtime is this recent may still change within the same mtime tick, so its
# cached content is not trusted (git's "racy" entries).
_RACY_NS = 200_000_000


_AT_FDCWD = -100
_RENAME_EXCHANGE = 2
_renameat2: Callable[..., int] | None = None
_exchange_ok = True


def _exchange(a: str, b: str) -> bool:
    """Swap two existing names in one step (renameat2 RENAME_EXCHANGE); False if this
    libc or filesystem cannot, or `b` does not exist yet."""
    global _renameat2, _exchange_ok
    if not _exchange_ok:
        return False
    if _renameat2 is None:
        try:
            fn = ctypes.CDLL(None, use_errno=True).renameat2
        except (OSError, AttributeError):
            _exchange_ok = False
            return False
        fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
        fn.restype = ctypes.c_int
        _renameat2 = fn
    if _renameat2(_AT_FDCWD, a.encode(), _AT_FDCWD, b.encode(), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        _exchange_ok = False
    elif err != errno.ENOENT:
        raise OSError(err, os.strerror(err), b)
    return False


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
        self.spare_path = f"{r}/proc/.stat.fleet-lab.spare"
        self.keep_path = f"{r}/proc/.stat.fleet-lab.keep"
        tracing = f"{r}/sys/kernel/tracing"
        self.set_event = f"{tracing}/set_event"
        self.instances = f"{tracing}/instances"
        self.events = f"{tracing}/events"
        self.kprobe_events = f"{tracing}/kprobe_events"
        self.uprobe_events = f"{tracing}/uprobe_events"
        self.kprobes_enabled = f"{r}/sys/kernel/debug/kprobes/enabled"
        self.kprobes_list = f"{r}/sys/kernel/debug/kprobes/list"
        self.rng = random.Random(root.name)
        self.hot_rates, self.cool_rates = host_rates(root.name)
        self.hot = False
        # HOT or COOL for the lab's perf (fleet/lab/fake_perf.sh): which stacks it samples.
        # Beside proc/stat, as the model's other moving files.
        self.state_path = f"{r}/proc/.stat.fleet-lab.state"
        self.state_written: bool | None = None
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
        armed = enabled is not None and enabled.strip() == b"1"
        if armed and _kprobe_armed(files.read(self.kprobes_list)):
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
        if self.hot != self.state_written:
            tmp = f"{self.state_path}.tmp"
            with open(tmp, "w") as f:
                f.write("hot\n" if self.hot else "cool\n")
            os.replace(tmp, self.state_path)
            self.state_written = self.hot
        rates = self.hot_rates if self.hot else self.cool_rates
        advance(self.counters, now_mono - self.last, rates, self.rng)
        self.last = now_mono
        self.publish(render_stat(self.counters).encode())

    def publish(self, data: bytes) -> None:
        """Replace proc/stat atomically: readers see the old file or the new, never a mix.

        Plain temp + rename frees the old inode each time, and on ext4 mounted with discard
        that costs ~0.3 ms: too slow for 1000 hosts four times a second. So two inodes take
        turns: the new text goes into the spare one, which is then swapped in whole, and
        nothing is freed. A reader holding the previous file open would only see it
        rewritten one tick (0.25 s) later.
        """
        fd = os.open(self.spare_path, os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            os.pwrite(fd, data, 0)
            os.ftruncate(fd, len(data))
        finally:
            os.close(fd)
        if _exchange(self.spare_path, self.stat_path):
            return
        # No RENAME_EXCHANGE here: a second name keeps the current inode alive instead.
        try:
            os.link(self.stat_path, self.keep_path)
        except FileExistsError:  # left by a daemon killed mid-swap
            os.unlink(self.keep_path)
            os.link(self.stat_path, self.keep_path)
        except FileNotFoundError:
            pass  # no proc/stat yet: nothing to keep
        os.replace(self.spare_path, self.stat_path)
        with contextlib.suppress(FileNotFoundError):
            os.replace(self.keep_path, self.spare_path)


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
