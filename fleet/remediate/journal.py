"""The local journal of every remediation: written and flushed to disk BEFORE each remote
write, so a run killed at any point leaves what `fleet rollback` needs to finish the job.

One JSON object per line in ``<state dir>/journal/<run id>.jsonl`` (dir 0700, file 0600):

- ``run``: run id, start time, operator, controller host and pid, command line, playbook
- ``intent``: host, step, seq, every op with the file's full previous and new value, the undo
  ops; written before the step's remote write
- ``result``: host, seq, status (applied / failed / changed), error, values read back
- ``undo``: host, seq, status (rolled-back / failed), error; written after an undo
- ``host``: host, final status, verdict (the run's outcome for that host)
"""

from __future__ import annotations

import getpass
import json
import os
import re
import secrets
import socket
import stat
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fleet.errors import UsageError
from fleet.remote.apply import Op


def new_run_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)


RUN_ID = re.compile(r"[0-9]{8}T[0-9]{6}Z-[0-9a-f]{6}")


def operator() -> str:
    """Who runs fleet: the sudo caller when there is one."""
    return os.environ.get("SUDO_USER") or getpass.getuser()


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def journal_dir(state: Path) -> Path:
    path = state / "journal"
    path.mkdir(mode=0o700, exist_ok=True)
    return path


class Journal:
    """Append-only, one line per record, fsync'd before the caller goes on. After a failed
    write (a full disk) it refuses every later one: a record after a torn one would make the
    journal damaged in the middle."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self._broken: OSError | None = None
        self._lock = threading.Lock()  # hosts of a batch write from their own threads

    @classmethod
    def start(cls, state: Path, run_id: str, argv: list[str], playbook: str) -> Journal:
        """The run's journal with its first record on disk; UsageError (nothing changed on
        any host yet) when it cannot be written."""
        path = journal_dir(state) / f"{run_id}.jsonl"
        try:
            journal = cls(path)
            journal.write(
                {
                    "type": "run",
                    "run_id": run_id,
                    "started_at": _now(),
                    "operator": operator(),
                    "controller": socket.gethostname(),
                    "pid": os.getpid(),
                    "argv": argv,
                    "playbook": playbook,
                }
            )
        except OSError as exc:
            raise UsageError(
                f"{path}: cannot write the journal ({exc.strerror or exc}); nothing was changed"
            ) from None
        return journal

    def write(self, record: dict[str, Any]) -> None:
        record.setdefault("time", _now())
        data = (json.dumps(record, sort_keys=True) + "\n").encode()
        with self._lock:
            if self._broken is not None:
                raise self._broken
            try:
                while data:
                    data = data[os.write(self._fd, data) :]
                os.fsync(self._fd)
            except OSError as exc:
                self._broken = exc
                raise

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def ops_json(ops: list[Op]) -> list[dict[str, str]]:
    return [{"mode": o.mode, "path": o.path, "check": o.expect, "data": o.data} for o in ops]


def ops_from_json(items: list[dict[str, str]]) -> list[Op]:
    return [Op(i["mode"], i["path"], i["check"], i["data"]) for i in items]


@dataclass
class JournaledStep:
    """One step of one host as the journal tells it."""

    seq: int
    step: str
    ops: list[Op]
    undo: list[Op]
    changes: list[dict[str, str]]
    result: str | None = None  # applied, failed, changed; None: killed before the answer
    undone: str | None = None  # rolled-back, failed

    @property
    def needs_undo(self) -> bool:
        # "changed" and "failed" before any write leave nothing; a failed write may have
        # written part of the step, and a missing result may have written all of it.
        return self.undone != "rolled-back" and self.result != "changed"


@dataclass
class JournaledRun:
    run_id: str
    path: Path
    header: dict[str, Any]
    steps: dict[str, list[JournaledStep]] = field(default_factory=dict)  # host -> steps

    def pending(self, host: str) -> list[JournaledStep]:
        """Steps of `host` still to undo, last applied first."""
        return [s for s in reversed(self.steps.get(host, [])) if s.needs_undo]


def _check_owned(path: Path) -> None:
    """A journal drives writes as root on hosts: only the user's own, private files count."""
    try:
        st = path.lstat()
    except OSError as exc:
        raise UsageError(f"{path}: {exc.strerror or exc}") from None
    if stat.S_ISLNK(st.st_mode) or not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
        raise UsageError(f"{path}: not a plain file or directory; refusing to use it")
    if st.st_uid != os.geteuid():
        raise UsageError(f"{path}: owned by uid {st.st_uid}, not by you; refusing to use it")
    if st.st_mode & 0o022:
        raise UsageError(
            f"{path}: writable by group or others (mode {stat.S_IMODE(st.st_mode):04o}); "
            "refusing to use it"
        )


def load_run(path: Path) -> JournaledRun:
    """Read a journal. Only its last line may be cut short (a kill during the write: that
    record never happened); a damaged line anywhere else makes the whole journal refused,
    naming the line, since skipping it could undo too little."""
    _check_owned(path.parent)
    _check_owned(path)
    header: dict[str, Any] = {}
    steps: dict[str, dict[int, JournaledStep]] = {}
    # Records end with "\n"; what follows the last one is a write cut short by a kill.
    *records, _cut_short = path.read_bytes().split(b"\n")
    for number, raw in enumerate(records, 1):
        try:
            rec = json.loads(raw)
        except ValueError:  # JSONDecodeError and UnicodeDecodeError alike
            raise UsageError(
                f"{path}:{number}: damaged journal line; refusing to roll back from it"
            ) from None
        try:
            kind = rec["type"]
            if kind == "run":
                header = rec
            elif kind == "intent":
                steps.setdefault(rec["host"], {})[rec["seq"]] = JournaledStep(
                    rec["seq"],
                    rec["step"],
                    ops_from_json(rec["ops"]),
                    ops_from_json(rec["undo"]),
                    rec.get("changes", []),
                )
            elif kind in ("result", "undo"):
                step = steps.get(rec["host"], {}).get(rec["seq"])
                if step is not None:
                    if kind == "result":
                        step.result = rec["status"]
                    else:
                        step.undone = rec["status"]
        except (KeyError, TypeError, AttributeError) as exc:
            raise UsageError(f"{path}:{number}: not a fleet journal record ({exc})") from None
    if not header:
        raise UsageError(f"{path}: not a fleet journal (no run record)")
    return JournaledRun(
        header["run_id"],
        path,
        header,
        {h: [s[k] for k in sorted(s)] for h, s in steps.items()},
    )


def list_runs(state: Path) -> list[Path]:
    """Journals, oldest first (run ids start with their UTC start time)."""
    directory = state / "journal"
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.glob("*.jsonl") if RUN_ID.fullmatch(p.stem))


def find_run(state: Path, run_id: str | None, hosts: list[str]) -> JournaledRun | None:
    """The run to roll back: `run_id`, else the newest with something left to undo on
    one of `hosts`."""
    if run_id is not None:
        if not RUN_ID.fullmatch(run_id):
            raise UsageError(f"--run {run_id!r} is not a run id (like 20260101T120000Z-a1b2c3)")
        path = state / "journal" / f"{run_id}.jsonl"
        if not path.exists():
            raise UsageError(f"no journal for run {run_id} in {path.parent}")
        return load_run(path)
    for path in reversed(list_runs(state)):
        run = load_run(path)
        if any(run.pending(h) for h in hosts):
            return run
    return None
