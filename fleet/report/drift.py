"""Drift between report runs (pure): what started failing, what was fixed, what still fails
and since when, which hosts went dark, which checks flap.

The history (fleet/report/history.py) hands over what it knows of each host before this run
(`HostPast`); `compute_drift` compares the current results with it and also returns the
streak starts ("failing since", "unreachable since") that the history stores with this run,
so the next run can tell how long a failure has lasted without reading every older run.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

from fleet.model import ERROR, FAIL, UNREACHABLE, HostResult, parse_time

# A check flaps when, over the host's last FLAP_WINDOW audits in which it was reached (this
# one included), it went from failing to not failing or back at least FLAP_CHANGES times.
FLAP_WINDOW = 10
FLAP_CHANGES = 3


@dataclass(frozen=True)
class RunRef:
    id: int
    started_at: str

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "started_at": self.started_at}


@dataclass(frozen=True)
class CheckMark:
    """One check of one host in a stored run."""

    status: str
    since: str | None = None  # failing: when the unbroken run of failures began


@dataclass(frozen=True)
class HostPast:
    """What the history knows of one host before this run."""

    last_status: str  # host status the last time it was audited
    last_since: str | None = None  # unreachable then: since when (start of that streak)
    reached_at: str | None = None  # started_at of the last run in which it was reached
    checks: dict[str, CheckMark] = field(default_factory=dict)  # as of `reached_at`
    # check id -> statuses in the host's earlier reached runs, oldest first (at most
    # FLAP_WINDOW - 1 of them)
    recent: dict[str, list[str]] = field(default_factory=dict)


@dataclass(frozen=True)
class Past:
    previous_run: RunRef | None = None
    hosts: dict[str, HostPast] = field(default_factory=dict)


@dataclass(frozen=True)
class CheckChange:
    host: str
    check: str
    severity: str
    since: str | None = None  # still failing: first seen; fixed: when it had started failing
    waived: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "check": self.check,
            "severity": self.severity,
            "since": self.since,
            "waived": self.waived,
        }


@dataclass(frozen=True)
class HostChange:
    host: str
    error: str | None
    since: str  # start of the unreachable streak
    last_reached: str | None  # started_at of the last run that reached it (None: never)

    def to_json(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "error": self.error,
            "since": self.since,
            "last_reached": self.last_reached,
        }


@dataclass(frozen=True)
class Flap:
    host: str
    check: str
    changes: int
    runs: int

    def to_json(self) -> dict[str, Any]:
        return {"host": self.host, "check": self.check, "changes": self.changes, "runs": self.runs}


@dataclass(frozen=True)
class Drift:
    previous_run: RunRef | None = None
    new_failures: tuple[CheckChange, ...] = ()
    fixed: tuple[CheckChange, ...] = ()
    still_failing: tuple[CheckChange, ...] = ()
    became_unreachable: tuple[HostChange, ...] = ()
    still_unreachable: tuple[HostChange, ...] = ()
    flapping: tuple[Flap, ...] = ()
    # Set when the history could not be used; the lists are then empty.
    unavailable: str | None = None

    @property
    def changed(self) -> bool:
        """Something moved since the previous run (what a notification is sent for).
        Failures that merely go on failing, and hosts that stay down, are not news."""
        return bool(self.new_failures or self.fixed or self.became_unreachable or self.flapping)

    def to_json(self) -> dict[str, Any]:
        return {
            "previous_run": self.previous_run.to_json() if self.previous_run else None,
            "changed": self.changed,
            "new_failures": [c.to_json() for c in self.new_failures],
            "fixed": [c.to_json() for c in self.fixed],
            "still_failing": [c.to_json() for c in self.still_failing],
            "became_unreachable": [h.to_json() for h in self.became_unreachable],
            "still_unreachable": [h.to_json() for h in self.still_unreachable],
            "flapping": [f.to_json() for f in self.flapping],
            "unavailable": self.unavailable,
        }


@dataclass(frozen=True)
class Streaks:
    """Streak starts for the history to store with this run."""

    failing_since: dict[tuple[str, str], str] = field(default_factory=dict)  # (host, check)
    unreachable_since: dict[str, str] = field(default_factory=dict)  # host


def _changes(statuses: Iterable[str]) -> int:
    failing = [s == FAIL for s in statuses]
    return sum(a != b for a, b in pairwise(failing))


def compute_drift(
    hosts: list[HostResult],
    now: str,
    past: Past,
    waived: frozenset[tuple[str, str]] = frozenset(),
) -> tuple[Drift, Streaks]:
    """Compare this run's `hosts` (started at `now`) with what the history knows.

    Only the hosts of this run are compared (a `--limit` run says nothing about the others).
    A check's baseline is the host's last run in which it was reached, so a host that was
    unreachable in between is neither "fixed" nor "newly failing" for it. A host or check the
    history has never seen counts as new: on the first run every failure is new.
    """
    new: list[CheckChange] = []
    fixed: list[CheckChange] = []
    still: list[CheckChange] = []
    went_dark: list[HostChange] = []
    stays_dark: list[HostChange] = []
    flapping: list[Flap] = []
    streaks = Streaks()
    for h in hosts:
        before = past.hosts.get(h.name)
        if h.status == UNREACHABLE:
            was_dark = before is not None and before.last_status == UNREACHABLE
            since = (before.last_since if was_dark and before else None) or now
            streaks.unreachable_since[h.name] = since
            change = HostChange(h.name, h.error, since, before.reached_at if before else None)
            (stays_dark if was_dark else went_dark).append(change)
            continue
        base = before.checks if before else {}
        for f in h.checks:
            old = base.get(f.id)
            is_waived = (h.name, f.id) in waived
            if f.status == FAIL:
                if old is not None and old.status == FAIL:
                    since = old.since or (before.reached_at if before else None) or now
                    still.append(CheckChange(h.name, f.id, f.severity, since, is_waived))
                else:
                    since = now
                    new.append(CheckChange(h.name, f.id, f.severity, now, is_waived))
                streaks.failing_since[(h.name, f.id)] = since
            elif old is not None and old.status == FAIL and f.status != ERROR:
                # an error is an unknown state, not a fix
                fixed.append(CheckChange(h.name, f.id, f.severity, old.since, is_waived))
            history = [*(before.recent.get(f.id, []) if before else []), f.status]
            history = history[-FLAP_WINDOW:]
            n = _changes(history)
            if n >= FLAP_CHANGES:
                flapping.append(Flap(h.name, f.id, n, len(history)))
    drift = Drift(
        previous_run=past.previous_run,
        new_failures=tuple(new),
        fixed=tuple(fixed),
        still_failing=tuple(sorted(still, key=lambda c: (c.since or "", c.host, c.check))),
        became_unreachable=tuple(went_dark),
        still_unreachable=tuple(stays_dark),
        flapping=tuple(flapping),
    )
    return drift, streaks


def duration(since: str, now: str) -> str:
    """`3d 4h`, `5h 12m`, `7m`, `just now`: how long from `since` to `now`."""
    seconds = int((parse_time(now) - parse_time(since)).total_seconds())
    if seconds < 60:
        return "just now" if seconds < 1 else f"{seconds}s"
    minutes, hours, days = seconds // 60, seconds // 3600, seconds // 86400
    if days:
        return f"{days}d {hours % 24}h"
    if hours:
        return f"{hours}h {minutes % 60}m"
    return f"{minutes}m"
