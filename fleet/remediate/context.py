"""What one remediation run shares, and how a step fails."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fleet.audit import AuditContext
from fleet.journal import Journal


class StepFailed(Exception):
    """A step's remote writes did not all happen; the host's earlier steps are undone."""


class Interrupted(StepFailed):
    """SIGINT or SIGTERM arrived: the host in hand stops at the next step boundary and what
    it applied is undone (a host whose steps are all applied is finished, not measured)."""


class JournalFailed(Exception):
    """The local journal could not be written: nothing more is written to the host."""


@dataclass
class RemediateContext:
    """One run's settings and shared state. The CLI builds it; only `stop`/`stop_why` (the
    signal handler) and the journal's sequence change during the run."""

    audit: AuditContext
    run_id: str
    state_dir: Path
    journal: Journal | None = None  # None: plan only
    settle_s: float | None = None  # None: the playbook's
    lock_ttl_s: float = 3600.0
    # Set by the CLI's SIGINT/SIGTERM handler: no new step, no new host (stop_why says which).
    stop: threading.Event = field(default_factory=threading.Event)
    stop_why: str = "interrupted"
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _seq: int = 0

    def next_seq(self) -> int:
        with self._lock:
            self._seq += 1
            return self._seq

    def check_stop(self) -> None:
        """Raise Interrupted at a step boundary once a signal asked the run to stop."""
        if self.stop.is_set():
            raise Interrupted(self.stop_why)

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
