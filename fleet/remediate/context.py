"""What one remediation run shares, and how a step fails."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fleet.audit.run import AuditContext
from fleet.remediate.journal import Journal


class StepFailed(Exception):
    """A step's remote writes did not all happen; the host's earlier steps are undone."""


class Interrupted(StepFailed):
    """SIGINT or SIGTERM arrived: the host in hand stops at the next step boundary and what
    it applied is undone (a host whose steps are all applied is finished, not measured)."""


class JournalFailed(Exception):
    """The local journal could not be written: nothing more is written to the host."""


class StopFlag:
    """Set once, by the CLI's SIGINT/SIGTERM handler: no new step, no new host; `why` names
    the signal in every result it cuts short."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.why = "interrupted"

    def request(self, why: str) -> None:
        self.why = why
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    def wait(self, timeout: float) -> bool:
        """Sleep up to `timeout` seconds; True (at once) when a stop is requested."""
        return self._event.wait(timeout)


@dataclass(frozen=True)
class RemediateContext:
    """One run's settings, fixed when it starts (the rollout gives a copy its journal); only
    the stop flag and the journal's sequence change during the run."""

    audit: AuditContext
    run_id: str
    state_dir: Path
    journal: Journal | None = None  # None: plan only
    settle_s: float | None = None  # None: the playbook's
    lock_ttl_s: float = 3600.0
    verify_profile: bool = False  # --verify profile: profile before and after (fleet.profile)
    stop: StopFlag = field(default_factory=StopFlag)
    _seq: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def next_seq(self) -> int:
        with self._lock:
            return next(self._seq)

    def check_stop(self) -> None:
        """Raise Interrupted at a step boundary once a signal asked the run to stop."""
        if self.stop.is_set():
            raise Interrupted(self.stop.why)

    def record(self, record: dict[str, Any]) -> None:
        """Append to the journal (flushed before the write it announces happens)."""
        if self.journal is None:
            return
        try:
            self.journal.write(record)
        except OSError as exc:
            raise JournalFailed(
                f"journal write failed: {exc.strerror or exc} ({self.journal.path}); "
                "nothing more was written to the host"
            ) from None
