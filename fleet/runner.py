"""Fan a per-host function out over hosts: bounded threads, results in inventory order, progress."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import IO, TypeVar

from fleet.inventory import Host

R = TypeVar("R")


class Progress:
    """A one-line progress bar on a TTY; silent otherwise. Drawn by the caller's thread only,
    at most 10 times a second, so workers never wait on the terminal."""

    def __init__(self, total: int, stream: IO[str] | None = None, label: str = "hosts") -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = total > 0 and self.stream.isatty()
        self.total = total
        self.label = label
        self.done = 0
        self.failed = 0
        self._last = 0.0

    def update(self, done: int, failed: int, force: bool = False) -> None:
        self.done, self.failed = done, failed
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self._last < 0.1:
            return
        self._last = now
        width = 30
        filled = int(width * done / self.total)
        bar = "#" * filled + "-" * (width - filled)
        extra = f", {failed} unreachable/error" if failed else ""
        self.stream.write(f"\r[{bar}] {done}/{self.total} {self.label}{extra}")
        self.stream.flush()

    def finish(self) -> None:
        # Erase the bar: the results follow on stdout, often the same terminal.
        if self.enabled:
            self.stream.write("\r\033[K")
            self.stream.flush()


def run_hosts(
    hosts: Sequence[Host],
    fn: Callable[[Host], R],
    workers: int = 20,
    progress: Progress | None = None,
    is_failure: Callable[[R], bool] = lambda _r: False,
) -> list[R]:
    """Call fn(host) for every host, `workers` threads at once; keep going when some fail.

    fn must not raise for a host problem (it returns a result describing it); per-host
    deadlines are fn's job, since a thread cannot be killed from outside.
    """
    results: dict[int, R] = {}
    failed = 0
    pool = ThreadPoolExecutor(
        max_workers=max(1, min(workers, len(hosts) or 1)), thread_name_prefix="fleet"
    )
    pending: dict[Future[R], int] = {pool.submit(fn, h): i for i, h in enumerate(hosts)}
    try:
        while pending:
            done, _ = wait(pending, timeout=0.1, return_when=FIRST_COMPLETED)
            for fut in done:
                i = pending.pop(fut)
                results[i] = fut.result()
                failed += is_failure(results[i])
            if progress:
                progress.update(len(results), failed)
    except BaseException:
        # Ctrl-C: start no new host and do not wait for running ones (the caller decides).
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    if progress:
        progress.finish()
    return [results[i] for i in range(len(hosts))]
