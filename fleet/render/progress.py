"""The progress bar of a fan-out: one line on a TTY (stderr), silent otherwise."""

from __future__ import annotations

import sys
import time
from typing import IO


class ProgressBar:
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
