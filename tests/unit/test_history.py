"""The SQLite history: runs, streaks across runs, retention, file safety, a writer killed
mid-write and two writers at once (real SQLite, real processes)."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from fleet.model import HostResult
from fleet.report.drift import Drift, RunRef
from fleet.report.history import History, HistoryError
from fleet.report.run import record
from fleet.report.waivers import apply_waivers
from tests.reportkit import host, run, waiver

NOW = datetime(2026, 11, 26, 7, 0, tzinfo=UTC)
ROOT = Path(__file__).resolve().parents[2]


def store(
    history: History, hosts: list[HostResult], started: str, keep_days: int = 0
) -> tuple[int, Drift]:
    r = run(hosts, started)
    outcome = apply_waivers(hosts, [], NOW.date())
    return record(history, r, "pb.yml", "test", outcome, keep_days, NOW)


def test_failing_since_survives_across_runs_and_fixes_are_seen(tmp_path: Path) -> None:
    with History(tmp_path / "h.sqlite") as h:
        store(h, [host("a", failing=("netdata.ebpf",)), host("b")], "2026-11-20T06:00:00Z")
        store(h, [host("a", failing=("netdata.ebpf",)), host("b")], "2026-11-21T06:00:00Z")
        run_id, drift = store(
            h, [host("a"), host("b", failing=("cpu.system",))], "2026-11-22T06:00:00Z"
        )
    assert run_id == 3 and drift.previous_run == RunRef(2, "2026-11-21T06:00:00Z")
    assert [(c.host, c.check, c.since) for c in drift.fixed] == [
        ("a", "netdata.ebpf", "2026-11-20T06:00:00Z")
    ]
    assert [(c.host, c.check) for c in drift.new_failures] == [("b", "cpu.system")]


def test_still_failing_counts_from_the_first_run_that_saw_it(tmp_path: Path) -> None:
    with History(tmp_path / "h.sqlite") as h:
        for day in (20, 21, 22):
            _, drift = store(h, [host("a", failing=("netdata.ebpf",))], f"2026-11-{day}T06:00:00Z")
    assert [(c.check, c.since) for c in drift.still_failing] == [
        ("netdata.ebpf", "2026-11-20T06:00:00Z")
    ]


def test_an_unreachable_run_in_between_does_not_reset_the_streak(tmp_path: Path) -> None:
    with History(tmp_path / "h.sqlite") as h:
        store(h, [host("a", failing=("netdata.ebpf",))], "2026-11-20T06:00:00Z")
        _, gone = store(h, [host("a", unreachable="refused")], "2026-11-21T06:00:00Z")
        _, back = store(h, [host("a", failing=("netdata.ebpf",))], "2026-11-22T06:00:00Z")
    assert [x.host for x in gone.became_unreachable] == ["a"] and not gone.fixed
    assert not back.new_failures
    assert [(c.check, c.since) for c in back.still_failing] == [
        ("netdata.ebpf", "2026-11-20T06:00:00Z")
    ]


def test_flapping_is_found_from_stored_runs(tmp_path: Path) -> None:
    with History(tmp_path / "h.sqlite") as h:
        for day, failing in zip(range(20, 25), [(), ("cpu.system",)] * 3, strict=False):
            _, drift = store(h, [host("a", failing=failing)], f"2026-11-{day}T06:00:00Z")
    assert [(f.check, f.changes, f.runs) for f in drift.flapping] == [("cpu.system", 4, 5)]


def test_waiver_marks_and_cpu_figures_are_stored(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite"
    hosts = [host("a", failing=("netdata.ebpf",), system_pct=71.5), host("b", unreachable="x")]
    outcome = apply_waivers(hosts, [waiver("a")], NOW.date())
    with History(path) as h:
        record(h, run(hosts), "pb.yml", "test", outcome, 0, NOW)
        series = h.cpu_series(["a", "b", "c"], 10)
    assert series == {
        "a": [("2026-11-26T06:00:00Z", 71.5)],
        "b": [("2026-11-26T06:00:00Z", None)],
        "c": [],
    }
    db = sqlite3.connect(path)
    assert db.execute("SELECT status, waiver FROM check_runs WHERE waiver != 0").fetchall() == [
        ("fail", 1)
    ]


def test_cpu_series_keeps_the_last_runs_oldest_first(tmp_path: Path) -> None:
    with History(tmp_path / "h.sqlite") as h:
        for day in range(10, 20):
            store(h, [host("a", system_pct=float(day))], f"2026-11-{day}T06:00:00Z")
        series = h.cpu_series(["a"], 3)
    assert [v for _, v in series["a"]] == [17.0, 18.0, 19.0]


def test_retention_drops_old_runs_but_never_the_one_just_recorded(tmp_path: Path) -> None:
    with History(tmp_path / "h.sqlite") as h:
        store(h, [host("a")], "2026-06-01T06:00:00Z")  # ~6 months before NOW
        store(h, [host("a")], "2026-11-20T06:00:00Z")
        store(h, [host("a")], "2026-01-01T06:00:00Z", keep_days=30)  # old itself, kept
        assert [r.started_at for r in h.runs()] == ["2026-11-20T06:00:00Z", "2026-01-01T06:00:00Z"]
        kept = {r.id for r in h.runs()}
        rows = h.conn.execute("SELECT DISTINCT run_id FROM check_runs").fetchall()
    assert {r[0] for r in rows} == kept


def test_file_is_private_and_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite"
    with History(path) as h:
        store(h, [host("a")], "2026-11-20T06:00:00Z")
        assert h.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert (path.stat().st_mode & 0o777) == 0o600
        assert (Path(f"{path}-wal").stat().st_mode & 0o777) == 0o600


def test_not_a_database_is_a_one_line_error_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite"
    path.write_text("this is not sqlite, it is a shopping list\n" * 100)
    with pytest.raises(HistoryError, match=rf"^{path}: not a usable fleet history"):
        History(path)


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite"
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version = 99")
    db.close()
    with pytest.raises(HistoryError, match="schema 99 is newer"):
        History(path)


def _writer(db: Path, hosts: int, pause_at: int, started: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.history_writer", str(db), str(hosts), str(pause_at), started],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )


def _wait_for(proc: subprocess.Popen[str], word: str) -> None:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.strip() == word, f"writer said {line!r} (rc {proc.poll()})"


def test_a_writer_killed_mid_write_leaves_a_consistent_history(tmp_path: Path) -> None:
    db = tmp_path / "h.sqlite"
    with History(db) as h:
        store(h, [host("host-0001", failing=("netdata.ebpf",))], "2026-11-20T06:00:00Z")
        store(h, [host("host-0001", failing=("netdata.ebpf",))], "2026-11-21T06:00:00Z")
    wal = Path(f"{db}-wal")
    wal_before = wal.stat().st_size if wal.exists() else 0

    writer = _writer(db, 400, 1200, "2026-11-22T06:00:00Z")
    try:
        _wait_for(writer, "BEGIN")
        _wait_for(writer, "MID-WRITE")
        # uncommitted pages of the half-written run went to the WAL: the hard case
        assert wal.stat().st_size > wal_before
        os.kill(writer.pid, signal.SIGKILL)
    finally:
        writer.wait(timeout=30)
    assert writer.returncode == -signal.SIGKILL

    with History(db) as h:
        assert h.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert [r.started_at for r in h.runs()] == ["2026-11-20T06:00:00Z", "2026-11-21T06:00:00Z"]
        orphans = h.conn.execute(
            "SELECT COUNT(*) FROM host_runs WHERE run_id NOT IN (SELECT id FROM runs)"
        ).fetchone()[0]
        assert orphans == 0
        assert h.conn.execute("SELECT COUNT(*) FROM check_runs").fetchone()[0] == 2 * 4
        # and it takes the next run as if nothing happened
        _, drift = store(h, [host("host-0001", failing=("netdata.ebpf",))], "2026-11-23T06:00:00Z")
    assert drift.previous_run is not None
    assert drift.previous_run.started_at == "2026-11-21T06:00:00Z"
    assert [c.since for c in drift.still_failing] == ["2026-11-20T06:00:00Z"]


def test_two_overlapping_runs_both_land_one_after_the_other(tmp_path: Path) -> None:
    db = tmp_path / "h.sqlite"
    with History(db) as h:
        store(h, [host("host-0001")], "2026-11-20T06:00:00Z")
    first = _writer(db, 50, 100, "2026-11-21T06:00:00Z")  # stops inside its transaction
    second = None
    try:
        _wait_for(first, "BEGIN")
        _wait_for(first, "MID-WRITE")
        second = _writer(db, 50, 0, "2026-11-21T06:00:01Z")
        _wait_for(second, "BEGIN")  # its BEGIN IMMEDIATE now waits on the first's lock
        time.sleep(0.5)  # let it sit in the busy wait (no assertion on time)
        assert first.stdin is not None
        first.stdin.write("\n")
        first.stdin.flush()
        out1, _ = first.communicate(timeout=60)
        out2, _ = second.communicate(timeout=60)
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
    assert first.returncode == 0 and second.returncode == 0, (out1, out2)
    assert out1.split() == ["DONE", "2", "1"]
    assert out2.split() == ["DONE", "3", "2"]  # it compared against the run that beat it
    with History(db) as h:
        assert h.conn.execute("SELECT COUNT(*) FROM host_runs").fetchone()[0] == 1 + 50 + 50
