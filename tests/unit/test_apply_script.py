"""fleet/remote/apply.sh, the remote half of a remediation step, under dash, bash and busybox sh."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from fleet.remote.apply import ApplyOutput, Op, apply_stdin, parse_apply_output
from fleet.remote.probe import new_nonce
from tests.helpers import immutable

SHELLS = [s for s in ("dash", "bash", "busybox") if shutil.which(s)]


def run(root: Path, ops: list[Op], shell: str = "sh", tag: str = "run1") -> ApplyOutput:
    nonce = new_nonce()
    argv = [shell, "sh"] if shell == "busybox" else [shell]
    # `shell -s`, as `sh -s` runs on a host: the arguments and the script come on stdin.
    proc = subprocess.run(
        [*argv, "-s"],
        input=apply_stdin(nonce, str(root), tag, ops),
        capture_output=True,
        timeout=30,
    )
    return parse_apply_output(proc.stdout.decode(), nonce)


@pytest.fixture(params=SHELLS)
def shell(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def put(root: Path, rel: str, text: str) -> Path:
    path = root / rel.lstrip("/")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_set_writes_only_when_the_file_holds_what_was_planned(tmp_path: Path, shell: str) -> None:
    f = put(tmp_path, "/k/enabled", "1\n")
    out = run(tmp_path, [Op("set", "/k/enabled", "1\n", "0\n")], shell)
    assert out.ok and out.results[0].after == "0\n" and f.read_text() == "0\n"
    out = run(tmp_path, [Op("set", "/k/enabled", "1\n", "0\n")], shell)
    assert not out.ok and out.results[0].status == "changed"


def test_every_check_runs_before_any_write(tmp_path: Path, shell: str) -> None:
    a = put(tmp_path, "/a", "1\n")
    put(tmp_path, "/b", "X\n")
    out = run(tmp_path, [Op("set", "/a", "1\n", "0\n"), Op("set", "/b", "1\n", "0\n")], shell)
    assert [r.status for r in out.results] == ["changed"] and out.results[0].index == 2
    assert a.read_text() == "1\n"


def test_trunc_and_append_compare_lines_in_any_order(tmp_path: Path, shell: str) -> None:
    f = put(tmp_path, "/t/set_event", "b:y\na:x\n")
    out = run(tmp_path, [Op("trunc", "/t/set_event", "a:x\nb:y\n", "-")], shell)
    assert out.ok and f.read_text() == ""
    out = run(tmp_path, [Op("append", "/t/set_event", "", "a:x\n!b:y")], shell)
    assert out.ok and f.read_text() == "a:x\n!b:y\n"


def test_file_mode_keeps_owner_mode_and_a_backup(tmp_path: Path, shell: str) -> None:
    f = put(tmp_path, "/etc/netdata/netdata.conf", "[plugins]\n    # ebpf = yes\n")
    f.chmod(0o640)
    new = "[plugins]\n    # ebpf = yes\n    ebpf = no\n"
    out = run(tmp_path, [Op("file", "/etc/netdata/netdata.conf", f.read_text(), new)], shell)
    assert out.ok, out
    assert f.read_text() == new and stat.S_IMODE(f.stat().st_mode) == 0o640
    backup = tmp_path / "etc/netdata/netdata.conf.fleet-run1.bak"
    assert backup.read_text() == "[plugins]\n    # ebpf = yes\n"
    assert out.results[0].detail == "backup /etc/netdata/netdata.conf.fleet-run1.bak"
    assert sorted(p.name for p in f.parent.iterdir()) == [f.name, backup.name]


def test_a_file_without_a_final_newline_round_trips(tmp_path: Path, shell: str) -> None:
    f = put(tmp_path, "/c", "a = 1")
    out = run(tmp_path, [Op("file", "/c", "a = 1", "a = 2\n\n")], shell)
    assert out.ok and f.read_text() == "a = 2\n\n"
    out = run(
        tmp_path, [Op("same", "/c", "a = 2\n\n", "-"), Op("file", "/c", "a = 2\n\n", "a = 1")]
    )
    assert out.ok and f.read_text() == "a = 1"


def test_a_refused_write_names_the_errno(tmp_path: Path, shell: str) -> None:
    with immutable(put(tmp_path, "/enable", "1\n")):
        out = run(tmp_path, [Op("set", "/enable", "1\n", "0\n")], shell)
    assert not out.ok and out.results[0].status == "fail"
    assert out.results[0].errno == "EPERM", out.results[0].detail


def test_a_path_that_links_out_of_the_root_is_never_written(tmp_path: Path, shell: str) -> None:
    outside = tmp_path / "elsewhere"
    outside.write_text("precious\n")
    root = tmp_path / "root"
    put(root, "/sys/kernel/tracing/x", "")
    (root / "sys/kernel/tracing/set_event").symlink_to(outside)
    (root / "etc").symlink_to(tmp_path)  # a directory link out of the root, too
    ops = [Op("trunc", "/sys/kernel/tracing/set_event", "precious\n", "-")]
    out = run(root, ops, shell)
    assert not out.ok and out.results[0].errno == "EXDEV", out.results[0].detail
    out = run(root, [Op("set", "/etc/elsewhere", "precious\n", "")], shell)
    assert not out.ok and out.results[0].errno == "EXDEV", out.results[0].detail
    assert outside.read_text() == "precious\n"
    # A link that stays inside is followed as before.
    (root / "sys/kernel/debug").mkdir(parents=True)
    (root / "sys/kernel/debug/tracing").symlink_to("../tracing")
    put(root, "/sys/kernel/tracing/enable", "1\n")
    out = run(root, [Op("set", "/sys/kernel/debug/tracing/enable", "1\n", "0\n")], shell)
    assert out.ok and (root / "sys/kernel/tracing/enable").read_text() == "0\n"


def test_run_reports_the_command_rc_and_output(tmp_path: Path, shell: str) -> None:
    out = run(tmp_path, [Op("run", "-", "-", "echo restarting; exit 3")], shell)
    assert out.results[0].status == "fail" and out.results[0].detail == "rc 3: restarting"


def test_the_lock_admits_one_owner_and_a_stale_one_can_be_taken_over(
    tmp_path: Path, shell: str
) -> None:
    lock = "/run/fleet-remediate.lock"
    missing = run(tmp_path, [Op("lock", lock, "-", "A\t1")], shell)
    assert missing.results[0].status == "fail"  # no /run: nothing is created on the host
    assert not (tmp_path / "run").exists()
    (tmp_path / "run").mkdir()
    assert run(tmp_path, [Op("lock", lock, "-", "A\t1")], shell).ok
    held = run(tmp_path, [Op("lock", lock, "-", "B\t2")], shell)
    assert held.results[0].status == "held" and held.results[0].after == "A\t1\n"
    assert held.results[0].detail.isdigit()  # the remote clock, for the lock's age
    # Taking over names the owner judged stale; someone else's lock is left alone.
    assert not run(tmp_path, [Op("lock", lock, "C\t3", "B\t2")], shell).ok
    assert run(tmp_path, [Op("lock", lock, "A\t1", "B\t2")], shell).ok
    assert (tmp_path / "run/fleet-remediate.lock/owner").read_text() == "B\t2"
    assert run(tmp_path, [Op("unlock", lock, "A\t1", "-")], shell).results[0].status == "gone"
    assert run(tmp_path, [Op("unlock", lock, "B\t2", "-")], shell).ok
    assert not (tmp_path / "run/fleet-remediate.lock").exists()


def test_hostile_paths_and_values_are_data_not_shell(tmp_path: Path, shell: str) -> None:
    rel = '/x\'; touch PWNED; $(touch PWNED2) `touch PWNED3`\n"y"/enable'
    f = put(tmp_path, rel, "1\n")
    value = "0\n$(touch PWNED4)\n'; touch PWNED5\n"
    out = run(tmp_path, [Op("set", rel, "1\n", value)], shell, tag="t'$(touch PWNED6)")
    assert out.ok and f.read_text() == value
    assert not [p for p in tmp_path.rglob("PWNED*")] and not list(Path.cwd().glob("PWNED*"))
    assert os.listdir(tmp_path) == [rel.split("/")[1]]


def test_restore_undoes_a_file_op_and_leaves_no_backup_behind(tmp_path: Path, shell: str) -> None:
    f = put(tmp_path, "/etc/netdata/netdata.conf", "[plugins]\n")
    f.chmod(0o640)
    before = sorted(p.name for p in f.parent.iterdir())
    assert run(
        tmp_path, [Op("file", "/etc/netdata/netdata.conf", "[plugins]\n", "new\n")], shell
    ).ok
    assert (f.parent / "netdata.conf.fleet-run1.bak").read_text() == "[plugins]\n"
    out = run(tmp_path, [Op("restore", "/etc/netdata/netdata.conf", "new\n", "[plugins]\n")], shell)
    assert out.ok and f.read_text() == "[plugins]\n"
    assert sorted(p.name for p in f.parent.iterdir()) == before
    assert f.stat().st_mode & 0o777 == 0o640  # owner and mode kept


CAPTURED = Path(__file__).resolve().parents[1] / "fixtures" / "captured-qemu"


@pytest.mark.parametrize(
    "case, errno",
    [
        ("ebusy_truncate.bash", "EBUSY"),
        ("ebusy_truncate.busybox_sh", "EBUSY"),
        ("ebusy_truncate.dash", "EBUSY"),
        ("ebusy_delete_one.bash", "EBUSY"),
        ("ebusy_delete_one.busybox_sh", "EBUSY"),
        # dash's builtin echo/printf words every failed write "I/O error": the kernel's EBUSY
        # cannot be told from what dash prints (docs/reliability.md).
        ("ebusy_delete_one.dash", "EIO"),
    ],
)
def test_a_real_kernels_ebusy_as_each_shell_words_it(case: str, errno: str) -> None:
    # Captured on a Debian 6.1 kernel under QEMU (tests/fixtures/captured-qemu/SOURCES.md).
    stderr = (CAPTURED / f"{case}.stderr.txt").read_text().strip()
    out = parse_apply_output(f"N begin 1\nN op 1 fail {stderr}\nN done\n", "N")
    assert out.results[0].errno == errno
    assert not out.ok


@pytest.mark.parametrize(
    "stdout",
    [
        "N begin 1\nN op 1 ok\nN begin 1\nN op 1 ok\nN done\n",
        "N begin 1\nN op 1 ok\nN done\nN op 2 ok\n",
    ],
)
def test_apply_output_with_a_second_begin_or_more_after_done_is_not_trusted(stdout: str) -> None:
    out = parse_apply_output(stdout, "N")
    assert not out.ok and out.problem
