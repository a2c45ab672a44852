"""A real second process writing the report history, for the crash and overlap tests.

    python -m tests.history_writer DB HOSTS PAUSE_AT STARTED_AT

Records one run of HOSTS hosts through fleet.report.run.record (the code `fleet report` runs).
With PAUSE_AT > 0 it stops inside its write transaction, just before its PAUSE_AT-th
check row, prints MID-WRITE and waits for a line on stdin (or for SIGKILL). Prints BEGIN
when its transaction starts and DONE <run id> <previous run id> when committed.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path

from fleet.report.history import History
from fleet.report.run import record
from fleet.report.waivers import WaiverOutcome
from tests.reportkit import host, run


def main(argv: list[str]) -> int:
    db, nhosts, pause_at, started = Path(argv[1]), int(argv[2]), int(argv[3]), argv[4]
    history = History(db)
    # A small page cache spills dirty pages into the WAL before the commit, so a crash
    # leaves uncommitted frames behind: the case recovery must get right.
    history.conn.execute("PRAGMA cache_size = 8")
    seen = 0

    def trace(sql: str) -> None:
        nonlocal seen
        if sql.startswith("BEGIN IMMEDIATE"):
            print("BEGIN", flush=True)
        if sql.startswith("INSERT INTO check_runs"):
            seen += 1
            if seen == pause_at:
                print("MID-WRITE", flush=True)
                sys.stdin.readline()

    history.conn.set_trace_callback(trace)
    hosts = [
        host(f"host-{i:04d}", failing=("netdata.ebpf",) if i % 3 else ()) for i in range(nhosts)
    ]
    run_id, drift = record(
        history, run(hosts, started), "pb.yml", "writer", WaiverOutcome(), 0, datetime.now(UTC)
    )
    previous = drift.previous_run.id if drift.previous_run else 0
    print(f"DONE {run_id} {previous}", flush=True)
    history.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
