"""Drift as titled rows of text cells, shared by the human formats (table, markdown, html)."""

from __future__ import annotations

from dataclasses import dataclass

from fleet.report.drift import Drift, duration


@dataclass(frozen=True)
class Section:
    key: str  # new_failures, fixed, ...: the JSON name
    title: str
    rows: list[list[str]]


def heading(drift: Drift) -> str:
    if drift.unavailable:
        return f"Drift unavailable: {drift.unavailable}"
    if drift.previous_run is None:
        return "Drift: first run in the history (every failure is new)"
    prev = drift.previous_run
    return f"Drift since run {prev.id} ({prev.started_at})"


def _ago(since: str | None, now: str) -> str:
    return f"{since} ({duration(since, now)})" if since else "-"


def sections(drift: Drift, now: str) -> list[Section]:
    """The non-empty drift lists, most urgent first; `now` is this run's start."""

    def waived(flag: bool) -> str:
        return "waived" if flag else ""

    out = [
        Section(
            "new_failures",
            "New failures",
            [[c.host, c.check, c.severity, waived(c.waived)] for c in drift.new_failures],
        ),
        Section(
            "became_unreachable",
            "Became unreachable",
            [
                [
                    h.host,
                    f"last reached {h.last_reached}" if h.last_reached else "never reached",
                    h.error or "",
                ]
                for h in drift.became_unreachable
            ],
        ),
        Section(
            "flapping",
            "Flapping",
            [
                [f.host, f.check, f"{f.changes} changes in the last {f.runs} runs"]
                for f in drift.flapping
            ],
        ),
        Section(
            "fixed",
            "Fixed",
            [[c.host, c.check, f"had failed since {_ago(c.since, now)}"] for c in drift.fixed],
        ),
        Section(
            "still_failing",
            "Still failing",
            [
                [c.host, c.check, f"since {_ago(c.since, now)}", waived(c.waived)]
                for c in drift.still_failing
            ],
        ),
        Section(
            "still_unreachable",
            "Still unreachable",
            [
                [h.host, f"since {_ago(h.since, now)}", h.error or ""]
                for h in drift.still_unreachable
            ],
        ),
    ]
    return [s for s in out if s.rows]
