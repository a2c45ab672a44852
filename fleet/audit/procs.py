"""`--procs N`: a fleet's hosts over N worker processes, each with its own thread pool, merged
as if one process had run them.

One process spends ~7.5 ms of client CPU per host and the GIL keeps it on one core. Workers
are forked after the run is prepared (inventory, playbook, every endpoint resolved, keys
loaded), so each starts with exactly the parent's context and nothing is pickled on the way
in; results come back over a pipe. Hosts are dealt round-robin (slow hosts cluster in
inventory order), the fork and open-connection budgets are split so the run as a whole keeps
them, and each result goes back to its host's place: same order, same exit code.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import os
import signal
import time
from collections.abc import Callable
from dataclasses import replace
from multiprocessing.connection import Connection, wait
from typing import Any, TypeVar

from fleet.config.inventory import Host
from fleet.transport.fanout import ProgressFactory, ProgressSink

R = TypeVar("R")
# What runs a shard of hosts in a worker: (hosts, the worker's context, progress) -> results.
ShardRun = Callable[[list[Host], Any, ProgressFactory | None], list[R]]

# Below this many hosts a run is over before a second process pays for itself.
HOSTS_PER_PROC = 500
_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def default_procs(hosts: int) -> int:
    """One process per HOSTS_PER_PROC hosts, at most one per usable core; 1 for small runs."""
    return max(1, min(usable_cores(), hosts // HOSTS_PER_PROC))


def deal(n: int, procs: int) -> list[list[int]]:
    """Host indexes per worker, round-robin: each gets every procs-th host."""
    return [list(range(w, n, procs)) for w in range(procs) if w < n]


def share(total: int, procs: int, worker: int) -> int:
    """Worker's part of a budget (forks, open connections): the parts add up to the total,
    never below 1."""
    return max(1, total // procs + (1 if worker < total % procs else 0))


class _PipeSink:
    """A worker's progress, sent to the parent at most 10 times a second."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.last = 0.0

    def update(self, done: int, failed: int, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self.last >= 0.1:
            self.last = now
            self.conn.send(("progress", done, failed))

    def finish(self) -> None:
        pass


def _die_with_parent() -> None:
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _worker(
    run: ShardRun[Any],
    hosts: list[Host],
    ctx: Any,
    conn: Connection,
) -> None:
    # The parent stops its workers (Ctrl-C reaches the whole process group; only the parent
    # decides), and a parent killed outright takes them along (PR_SET_PDEATHSIG). os._exit:
    # no atexit handler or finaliser of the parent's runs twice.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent()
    code = 0
    try:
        sink = _PipeSink(conn)
        conn.send(("result", run(hosts, ctx, lambda _n: sink)))
    except BaseException as exc:
        with contextlib.suppress(Exception):
            conn.send(("failed", f"{type(exc).__name__}: {exc}"))
        code = 1
    finally:
        with contextlib.suppress(Exception):
            conn.close()
        os._exit(code)


class _Forked:
    """A forked worker: os.fork rather than multiprocessing.Process, which refuses to start
    children from a daemonic process (a Dask worker's shard starts one, fleet.audit.cluster)."""

    def __init__(self, target: Callable[..., None], args: tuple[Any, ...]) -> None:
        self.exitcode: int | None = None
        self.pid = os.fork()
        if self.pid == 0:  # the child: target ends in os._exit
            try:
                target(*args)
            finally:
                os._exit(1)

    def _reap(self, flags: int) -> bool:
        if self.exitcode is None:
            try:
                pid, status = os.waitpid(self.pid, flags)
            except ChildProcessError:
                pid, status = self.pid, 0
            if pid == 0:
                return False
            self.exitcode = os.waitstatus_to_exitcode(status)
        return True

    def is_alive(self) -> bool:
        return not self._reap(os.WNOHANG)

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)

    def join(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not self._reap(os.WNOHANG) and time.monotonic() < deadline:
            time.sleep(0.01)


def run_in_procs(
    hosts: list[Host],
    ctx: Any,
    procs: int,
    run: ShardRun[R],
    lost_host: Callable[[Host, str], R],
    is_failure: Callable[[R], bool],
    progress: ProgressFactory | None = None,
) -> list[R]:
    """`run(shard, ctx_for_worker, progress)` in `procs` forked workers; the results merged in
    the hosts' order.

    `ctx` must have `forks` and `max_open` (AuditContext): each worker gets its share. A worker
    that dies without answering leaves its hosts as `lost_host(host, why)`, never dropped.
    Ctrl-C (KeyboardInterrupt here) kills every worker before it propagates."""
    sink: ProgressSink | None = progress(len(hosts)) if progress else None
    shards = deal(len(hosts), procs)
    workers: dict[Connection, tuple[int, Any]] = {}
    for w, idx in enumerate(shards):
        wctx = replace(
            ctx,
            forks=share(ctx.forks, len(shards), w),
            max_open=share(ctx.max_open, len(shards), w),
            procs=1,
        )
        recv, send = multiprocessing.Pipe(duplex=False)
        proc = _Forked(_worker, (run, [hosts[i] for i in idx], wctx, send))
        send.close()
        workers[recv] = (w, proc)
    results: dict[int, R] = {}
    counts: dict[int, tuple[int, int]] = {}
    lost: dict[int, str] = {}
    try:
        open_conns = list(workers)
        while open_conns:
            for conn in wait(open_conns, timeout=0.5):
                w, proc = workers[conn]  # type: ignore[index]
                try:
                    msg = conn.recv()  # type: ignore[union-attr]
                except EOFError:
                    open_conns.remove(conn)
                    proc.join(5)
                    if w not in lost and not all(i in results for i in shards[w]):
                        lost[w] = f"worker process lost (exit code {proc.exitcode})"
                    continue
                if msg[0] == "progress":
                    counts[w] = (msg[1], msg[2])
                elif msg[0] == "result":
                    for i, r in zip(shards[w], msg[1], strict=True):
                        results[i] = r
                    counts[w] = (len(shards[w]), sum(map(is_failure, msg[1])))
                elif msg[0] == "failed":
                    lost[w] = f"worker process failed: {msg[1]}"
                if sink:
                    done = sum(d for d, _ in counts.values())
                    sink.update(done, sum(f for _, f in counts.values()))
    except BaseException:
        for _, proc in workers.values():
            if proc.is_alive():
                proc.kill()
        raise
    finally:
        for _, proc in workers.values():
            proc.join(5)
    for w, why in lost.items():
        for i in shards[w]:
            if i not in results:
                results[i] = lost_host(hosts[i], why)
    if sink:
        sink.finish()
    return [results[i] for i in range(len(hosts))]


def runs_elsewhere(ctx: Any, hosts: int) -> bool:
    """Whether a run's hosts go to worker processes: a Dask scheduler, or --procs above 1
    with more than one host to deal."""
    return bool(ctx.scheduler) or (ctx.procs > 1 and hosts > 1)


def run_elsewhere(
    hosts: list[Host],
    ctx: Any,
    run: ShardRun[R],
    lost_host: Callable[[Host, str], R],
    is_failure: Callable[[R], bool],
    progress: ProgressFactory | None = None,
) -> list[R]:
    """The run's hosts on Dask workers (`ctx.scheduler`, fleet.audit.cluster) or in
    `ctx.procs` forked workers here; merged in the hosts' order either way."""
    if ctx.scheduler:
        from fleet.audit.cluster import run_on_dask

        return run_on_dask(hosts, ctx, run, lost_host, is_failure, progress)
    return run_in_procs(hosts, ctx, ctx.procs, run, lost_host, is_failure, progress)
