"""The report history: every run, host, check status and CPU figures, in one SQLite file.

Safe when two reports overlap and when a writer dies mid-write: WAL journal, a busy timeout,
and each run written in ONE `BEGIN IMMEDIATE` transaction (all of it lands or none does;
the transaction also reads the previous run, so overlapping reports are serialised and the
later one compares against the earlier). Names are stored once (`hosts`, `checks`); a row per
(run, host) and per (run, host, check) keeps 200 hosts x 7 checks at about 40 KB a run.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from fleet.errors import UsageError
from fleet.model import UNREACHABLE, AuditRun, HostResult, parse_time
from fleet.report.drift import FLAP_WINDOW, CheckMark, HostPast, Past, RunRef, Streaks

SCHEMA_VERSION = 1
BUSY_TIMEOUT_S = 30.0
# waiver column of check_runs
# How a failing check stood in a run (the `waived` column): none, a waiver in effect, expired.
NOT_WAIVED, WAIVER_IN_EFFECT, WAIVER_EXPIRED = 0, 1, 2

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
  id INTEGER PRIMARY KEY,
  started_at TEXT NOT NULL,
  finished_at TEXT NOT NULL,
  recorded_at TEXT NOT NULL,
  playbook TEXT NOT NULL,
  source TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS runs_by_start ON runs (started_at);
CREATE TABLE IF NOT EXISTS hosts (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS checks (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS host_runs (
  run_id INTEGER NOT NULL,
  host_id INTEGER NOT NULL,
  status TEXT NOT NULL,
  error TEXT,
  since INTEGER,
  system_pct REAL,
  user_pct REAL,
  busy_pct REAL,
  cpus INTEGER,
  duration_s REAL,
  PRIMARY KEY (run_id, host_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS host_runs_by_host ON host_runs (host_id, run_id);
CREATE TABLE IF NOT EXISTS check_runs (
  run_id INTEGER NOT NULL,
  host_id INTEGER NOT NULL,
  check_id INTEGER NOT NULL,
  status TEXT NOT NULL,
  waiver INTEGER NOT NULL DEFAULT 0,
  since INTEGER,
  PRIMARY KEY (run_id, host_id, check_id)
) WITHOUT ROWID;
"""


def _epoch(stamp: str | None) -> int | None:
    """Streak starts are stored as Unix seconds (6 bytes instead of 20 per failing row)."""
    return int(parse_time(stamp).timestamp()) if stamp else None


def _iso(epoch: int | None) -> str | None:
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class HistoryError(UsageError):
    """The history file cannot be opened or is not a fleet history."""


def default_history_path() -> Path:
    from fleet.config.statedir import state_dir

    return state_dir() / "history.sqlite"


class History:
    """One open history file. Use `transaction()` around the writes of one run."""

    def __init__(self, path: Path, busy_timeout: float = BUSY_TIMEOUT_S) -> None:
        self.path = path
        if not path.parent.is_dir():
            raise HistoryError(f"{path}: no such directory {path.parent}")
        try:
            # Created 0600 before SQLite opens it; SQLite gives -wal and -shm the same mode.
            fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
            os.close(fd)
        except OSError as exc:
            raise HistoryError(f"{path}: cannot open: {exc.strerror}") from None
        try:
            self.conn = sqlite3.connect(path, timeout=busy_timeout, isolation_level=None)
        except sqlite3.Error as exc:
            raise HistoryError(f"{path}: cannot open: {exc}") from None
        try:
            self._setup(busy_timeout)
        except BaseException:
            self.conn.close()
            raise

    def _setup(self, busy_timeout: float) -> None:
        try:
            self.conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
            mode = self.conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            self.conn.execute("PRAGMA synchronous = FULL")
            if self._version() != SCHEMA_VERSION:  # a new file (reading takes no lock)
                with self.transaction():
                    if self._version() == 0:
                        # one by one: executescript() would COMMIT the transaction first
                        for statement in filter(str.strip, _SCHEMA.split(";")):
                            self.conn.execute(statement)
                        self.conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except sqlite3.Error as exc:
            raise HistoryError(f"{self.path}: not a usable fleet history: {exc}") from None
        if str(mode).lower() != "wal":
            raise HistoryError(
                f"{self.path}: SQLite refused WAL mode (got {mode}; network file system?)"
            )

    def _version(self) -> int:
        version = int(self.conn.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            raise HistoryError(
                f"{self.path}: history schema {version} is newer than this fleet's "
                f"({SCHEMA_VERSION})"
            )
        return version

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> History:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """BEGIN IMMEDIATE: the write lock is taken up front (waiting out another writer for
        the busy timeout), so a read-then-write never deadlocks against an overlapping run."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    # -- writing -----------------------------------------------------------------------------

    def add_run(self, run: AuditRun, playbook: str, source: str, recorded_at: str) -> RunRef:
        cur = self.conn.execute(
            "INSERT INTO runs (started_at, finished_at, recorded_at, playbook, source) "
            "VALUES (?, ?, ?, ?, ?)",
            (run.started_at, run.finished_at, recorded_at, playbook, source),
        )
        assert cur.lastrowid is not None
        return RunRef(cur.lastrowid, run.started_at)

    def _ids(self, table: str, names: list[str]) -> dict[str, int]:
        self.conn.executemany(
            f"INSERT OR IGNORE INTO {table} (name) VALUES (?)", [(n,) for n in set(names)]
        )
        ids: dict[str, int] = {}
        wanted = sorted(set(names))
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            marks = ",".join("?" * len(chunk))
            ids.update(
                self.conn.execute(
                    f"SELECT name, id FROM {table} WHERE name IN ({marks})", chunk
                ).fetchall()
            )
        return ids

    def add_results(
        self,
        run_id: int,
        hosts: list[HostResult],
        streaks: Streaks,
        waivers: dict[tuple[str, str], int],
    ) -> None:
        """One row per host and per (host, check); `waivers` maps (host, check) to
        WAIVER_IN_EFFECT or WAIVER_EXPIRED."""
        host_ids = self._ids("hosts", [h.name for h in hosts])
        check_ids = self._ids("checks", [f.id for h in hosts for f in h.checks])
        self.conn.executemany(
            "INSERT INTO host_runs (run_id, host_id, status, error, since, system_pct, "
            "user_pct, busy_pct, cpus, duration_s) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    run_id,
                    host_ids[h.name],
                    h.status,
                    h.error,
                    _epoch(streaks.unreachable_since.get(h.name)),
                    h.cpu.system_pct if h.cpu else None,
                    h.cpu.user_pct if h.cpu else None,
                    h.cpu.busy_pct if h.cpu else None,
                    h.cpu.cpus if h.cpu else None,
                    round(h.duration_s, 3),
                )
                for h in hosts
            ],
        )
        self.conn.executemany(
            "INSERT INTO check_runs (run_id, host_id, check_id, status, waiver, since) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            [
                (
                    run_id,
                    host_ids[h.name],
                    check_ids[f.id],
                    f.status,
                    waivers.get((h.name, f.id), NOT_WAIVED),
                    _epoch(streaks.failing_since.get((h.name, f.id))),
                )
                for h in hosts
                for f in h.checks
            ],
        )

    def prune(self, keep_days: int, now: datetime, keep_run: int) -> int:
        """Drop runs that started more than `keep_days` before `now` (0: keep all), never
        `keep_run`. Returns how many runs went."""
        if keep_days <= 0:
            return 0
        cutoff = (now - timedelta(days=keep_days)).strftime("%Y-%m-%dT%H:%M:%SZ")
        old = [
            r[0]
            for r in self.conn.execute(
                "SELECT id FROM runs WHERE started_at < ? AND id != ?", (cutoff, keep_run)
            )
        ]
        for table in ("check_runs", "host_runs"):
            self.conn.executemany(f"DELETE FROM {table} WHERE run_id = ?", [(i,) for i in old])
        self.conn.executemany("DELETE FROM runs WHERE id = ?", [(i,) for i in old])
        return len(old)

    # -- reading -----------------------------------------------------------------------------

    def runs(self) -> list[RunRef]:
        return [
            RunRef(i, s)
            for i, s in self.conn.execute("SELECT id, started_at FROM runs ORDER BY id")
        ]

    def past(self, names: list[str], before: int) -> Past:
        """What the history holds of `names` in runs recorded before run `before`."""
        row = self.conn.execute(
            "SELECT id, started_at FROM runs WHERE id < ? ORDER BY id DESC LIMIT 1", (before,)
        ).fetchone()
        previous = RunRef(row[0], row[1]) if row else None
        host_ids = (
            dict(
                self.conn.execute(
                    f"SELECT name, id FROM hosts WHERE name IN ({','.join('?' * len(names))})",
                    names,
                ).fetchall()
            )
            if names
            else {}
        )
        hosts: dict[str, HostPast] = {}
        for name, host_id in host_ids.items():
            last = self.conn.execute(
                "SELECT status, since FROM host_runs WHERE host_id = ? AND run_id < ? "
                "ORDER BY run_id DESC LIMIT 1",
                (host_id, before),
            ).fetchone()
            if last is None:
                continue
            reached = self.conn.execute(
                "SELECT hr.run_id, r.started_at FROM host_runs hr JOIN runs r ON r.id = hr.run_id "
                "WHERE hr.host_id = ? AND hr.run_id < ? AND hr.status != ? "
                "ORDER BY hr.run_id DESC LIMIT ?",
                (host_id, before, UNREACHABLE, FLAP_WINDOW - 1),
            ).fetchall()
            checks: dict[str, CheckMark] = {}
            recent: dict[str, list[str]] = {}
            if reached:
                run_ids = [r[0] for r in reached]
                rows = self.conn.execute(
                    "SELECT cr.run_id, c.name, cr.status, cr.since FROM check_runs cr "
                    "JOIN checks c ON c.id = cr.check_id "
                    f"WHERE cr.host_id = ? AND cr.run_id IN ({','.join('?' * len(run_ids))}) "
                    "ORDER BY cr.run_id",
                    (host_id, *run_ids),
                ).fetchall()
                for run_id, check, status, since in rows:
                    recent.setdefault(check, []).append(status)
                    if run_id == run_ids[0]:
                        checks[check] = CheckMark(status, _iso(since))
            hosts[name] = HostPast(
                last_status=last[0],
                last_since=_iso(last[1]),
                reached_at=reached[0][1] if reached else None,
                checks=checks,
                recent=recent,
            )
        return Past(previous, hosts)

    def cpu_series(self, names: list[str], last: int) -> dict[str, list[tuple[str, float | None]]]:
        """System CPU % of each host over the last `last` runs, oldest first; None where the
        host had no figures (unreachable, --cpu-window 0). Hosts absent from a run get no
        point for it."""
        row = self.conn.execute(
            "SELECT MIN(id) FROM (SELECT id FROM runs ORDER BY id DESC LIMIT ?)", (last,)
        ).fetchone()
        series: dict[str, list[tuple[str, float | None]]] = {n: [] for n in names}
        if row is None or row[0] is None:
            return series
        rows = self.conn.execute(
            "SELECT h.name, r.started_at, hr.system_pct FROM host_runs hr "
            "JOIN hosts h ON h.id = hr.host_id JOIN runs r ON r.id = hr.run_id "
            "WHERE hr.run_id >= ? ORDER BY hr.run_id",
            (row[0],),
        )
        for name, started_at, pct in rows:
            if name in series:
                series[name].append((started_at, pct))
        return series
