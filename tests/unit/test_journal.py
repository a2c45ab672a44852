"""The remediation journal: private files, fsync'd records, readable after a crash."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from fleet.errors import UsageError
from fleet.remediate.journal import Journal, find_run, load_run, ops_json
from fleet.remote.apply import Op


def intent(host: str, seq: int, step: str) -> dict[str, object]:
    op = Op("set", "/sys/kernel/debug/kprobes/enabled", "1\n", "0\n")
    undo = Op("set", op.path, "0\n", "1\n")
    return {
        "type": "intent",
        "host": host,
        "seq": seq,
        "step": step,
        "ops": ops_json([op]),
        "undo": ops_json([undo]),
        "changes": [],
    }


def test_journal_files_are_private(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLEET_STATE_DIR", str(tmp_path / "state"))
    from fleet.config.statedir import state_dir

    state = state_dir()
    journal = Journal.start(state, "20260101T000000Z-aaaaaa", ["fleet"], "pb.yml")
    journal.close()
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    assert stat.S_IMODE((state / "journal").stat().st_mode) == 0o700
    assert stat.S_IMODE(journal.path.stat().st_mode) == 0o600


def test_pending_steps_come_last_first_and_skip_what_was_undone(tmp_path: Path) -> None:
    j = Journal.start(tmp_path, "20260101T000000Z-aaaaaa", ["fleet"], "pb.yml")
    j.write(intent("web1", 1, "netdata.ebpf_off"))
    j.write({"type": "result", "host": "web1", "seq": 1, "status": "applied"})
    j.write(intent("web1", 2, "tracing.probe_events_off"))
    j.write(intent("web1", 3, "tracing.set_event_clear"))
    j.write({"type": "result", "host": "web1", "seq": 3, "status": "changed"})
    j.write(intent("web2", 4, "kprobes.disarm"))
    j.write({"type": "undo", "host": "web2", "seq": 4, "status": "rolled-back"})
    j.close()
    # A kill mid-write leaves half a line: that record never happened.
    with open(j.path, "a") as f:
        f.write('{"type": "undo", "host": "web1", "se')
    run = load_run(j.path)
    # seq 2 has no result (killed before the answer): it may have written, so it is undone.
    assert [s.seq for s in run.pending("web1")] == [2, 1]
    assert run.pending("web2") == []
    assert find_run(tmp_path, None, ["web2"]) is None
    assert find_run(tmp_path, None, ["web1"]).run_id == run.run_id  # type: ignore[union-attr]


def test_a_file_that_is_not_a_journal_is_named(tmp_path: Path) -> None:
    path = tmp_path / "journal" / "x.jsonl"
    path.parent.mkdir()
    path.write_text('{"type": "intent"}\n')
    with pytest.raises(UsageError, match=r"x.jsonl:1: not a fleet journal record"):
        load_run(path)
    with pytest.raises(UsageError, match="no journal for run 20260101T000000Z-bbbbbb"):
        find_run(tmp_path, "20260101T000000Z-bbbbbb", [])


@pytest.mark.parametrize("run_id", ["../../x/evil", "nope", "20260101T000000Z-aaaaaa/../x", ""])
def test_run_takes_a_run_id_never_a_path(tmp_path: Path, run_id: str) -> None:
    with pytest.raises(UsageError, match="is not a run id"):
        find_run(tmp_path, run_id, [])


def test_a_damaged_line_in_the_middle_refuses_the_journal_naming_the_line(
    tmp_path: Path,
) -> None:
    j = Journal.start(tmp_path, "20260101T000000Z-aaaaaa", ["fleet"], "pb.yml")
    j.write(intent("web1", 1, "netdata.ebpf_off"))
    j.close()
    with open(j.path, "a") as f:
        f.write('{"type": "result", "host": "we\n')  # damaged, yet a whole line
    j2 = Journal(j.path)
    j2.write(intent("web1", 2, "kprobes.disarm"))
    j2.close()
    with pytest.raises(UsageError, match=r"aaaaaa.jsonl:3: damaged journal line"):
        load_run(j.path)


@pytest.mark.parametrize("mode", [0o620, 0o602])
def test_a_journal_others_can_write_is_refused(tmp_path: Path, mode: int) -> None:
    j = Journal.start(tmp_path, "20260101T000000Z-aaaaaa", ["fleet"], "pb.yml")
    j.close()
    j.path.chmod(mode)
    with pytest.raises(UsageError, match="writable by group or others"):
        load_run(j.path)


def test_a_journal_directory_others_can_write_is_refused(tmp_path: Path) -> None:
    j = Journal.start(tmp_path, "20260101T000000Z-aaaaaa", ["fleet"], "pb.yml")
    j.close()
    j.path.parent.chmod(0o777)
    with pytest.raises(UsageError, match="writable by group or others"):
        find_run(tmp_path, "20260101T000000Z-aaaaaa", [])


def test_a_journal_planted_by_another_user_is_refused(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("changing a file's owner needs root")
    j = Journal.start(tmp_path, "20260101T000000Z-aaaaaa", ["fleet"], "pb.yml")
    j.close()
    os.chown(j.path, 65534, 65534)
    with pytest.raises(UsageError, match="owned by uid 65534, not by you"):
        load_run(j.path)
