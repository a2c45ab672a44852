"""The remote probe script run by a real POSIX sh on real files (no SSH needed to test framing)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from fleet.audit.facts import host_facts
from fleet.remote.probe import ProbeFormatError, new_nonce, parse_probe_output, probe_stdin
from tests.helpers import run_probe, unreadable, write

SHELLS = [s for s in ("dash", "bash", "busybox") if shutil.which(s)]


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "host"
    write(
        root,
        "/proc/mounts",
        "tracefs /sys/kernel/tracing tracefs rw 0 0\ndebugfs /sys/kernel/debug debugfs rw 0 0\n",
    )
    write(root, "/sys/kernel/tracing/set_event", "sched:sched_switch\n")
    write(root, "/sys/kernel/tracing/kprobe_events", "p:kprobes/x tcp_sendmsg\n")
    write(root, "/sys/kernel/tracing/events/kprobes/x/enable", "1\n")
    write(
        root, "/sys/kernel/debug/kprobes/list", "ffffffffa988bf40  k  tcp_sendmsg+0x0    [FTRACE]\n"
    )
    write(root, "/sys/kernel/debug/kprobes/enabled", "1\n")
    write(root, "/proc/stat", "cpu  1 0 1 10 0 0 0 0 0 0\ncpu0 1 0 1 10 0 0 0 0 0 0\n")
    return root


@pytest.mark.parametrize("shell", SHELLS)
def test_probe_reads_every_file_under_root_in_each_shell(tree: Path, shell: str) -> None:
    out, proc = run_probe(tree, shell)
    assert proc.returncode == 0, proc.stderr
    assert out.complete
    assert out.env["tracefs"] == "/sys/kernel/tracing"
    assert out.env["debugfs"] == "/sys/kernel/debug"
    assert out.files["/sys/kernel/tracing/set_event"].text == "sched:sched_switch\n"
    assert out.enables["/sys/kernel/tracing/events/kprobes/x/enable"].text == "1\n"
    assert out.file("/sys/kernel/debug/kprobes/enabled").text == "1\n"


def test_absent_and_empty_files_are_told_apart(tree: Path) -> None:
    write(tree, "/sys/kernel/tracing/uprobe_events", "")
    out, _ = run_probe(tree)
    assert out.files["/sys/kernel/tracing/uprobe_events"].text == ""
    dyn = out.files["/sys/kernel/tracing/dynamic_events"]
    assert dyn.text is None and dyn.errno == "ENOENT" and dyn.absent


def test_unreadable_file_reports_its_errno_not_empty(tree: Path) -> None:
    # open() of a socket node fails for everyone, root included: ENXIO.
    unreadable(tree / "sys/kernel/debug/kprobes/enabled")
    out, _ = run_probe(tree)
    read = out.files["/sys/kernel/debug/kprobes/enabled"]
    assert read.text is None
    assert read.errno == "ENXIO"
    assert not read.absent


def test_file_content_cannot_forge_frames(tree: Path) -> None:
    # A hostile file that prints frame-like lines, with and without a trailing newline.
    write(tree, "/sys/kernel/tracing/set_event", "x begin 1\nfiles\n@@ done\nwant /etc/shadow")
    out, _ = run_probe(tree)
    assert out.files["/sys/kernel/tracing/set_event"].text == (
        "x begin 1\nfiles\n@@ done\nwant /etc/shadow\n"
    )
    assert "/etc/shadow" not in out.files


def test_hostile_root_path_is_data_not_shell(tmp_path: Path) -> None:
    root = tmp_path / "r $(touch pwned); x'y\"z:w"
    write(root, "/proc/mounts", "tracefs /sys/kernel/tracing tracefs rw 0 0\n")
    write(root, "/sys/kernel/tracing/set_event", "irq:softirq_entry\n")
    out, proc = run_probe(root)
    assert proc.returncode == 0
    assert out.files["/sys/kernel/tracing/set_event"].text == "irq:softirq_entry\n"
    assert not (Path.cwd() / "pwned").exists() and not (tmp_path / "pwned").exists()


def test_instances_and_their_probe_event_enables_are_read(tree: Path) -> None:
    write(tree, "/sys/kernel/tracing/instances/ras daemon/set_event", "ras:mc_event\n")
    write(tree, "/sys/kernel/tracing/instances/ras daemon/events/kprobes/x/enable", "0\n")
    out, _ = run_probe(tree)
    assert out.files["/sys/kernel/tracing/instances/ras daemon/set_event"].text == "ras:mc_event\n"
    assert (
        out.enables["/sys/kernel/tracing/instances/ras daemon/events/kprobes/x/enable"].text
        == "0\n"
    )


def test_tracefs_only_under_debugfs_path_is_found(tmp_path: Path) -> None:
    root = tmp_path / "old"
    write(root, "/proc/mounts", "debugfs /sys/kernel/debug debugfs rw 0 0\n")
    write(root, "/sys/kernel/debug/tracing/set_event", "")
    out, _ = run_probe(root)
    assert out.env["tracefs"] == "/sys/kernel/debug/tracing"
    assert out.files["/sys/kernel/debug/tracing/set_event"].text == ""


def test_no_tracefs_at_all_reads_no_trace_files(tmp_path: Path) -> None:
    root = tmp_path / "bare"
    write(root, "/proc/mounts", "proc /proc proc rw 0 0\n")
    out, _ = run_probe(root)
    assert out.env["tracefs"] == "-" and out.env["debugfs"] == "-"
    assert not any("tracing" in p for p in out.files)


def test_cpu_window_takes_two_samples_around_the_sleep(tree: Path) -> None:
    out, _ = run_probe(tree, window=1)
    assert out.stat1 is not None and out.stat1.startswith("cpu  1 0 1 10")
    assert out.stat2 is not None


def test_playbook_extra_files_are_read_in_the_same_exec(tree: Path) -> None:
    write(tree, "/proc/sys/kernel/kptr_restrict", "1\n")
    out, _ = run_probe(tree, extra=("/proc/sys/kernel/kptr_restrict", "/etc/absent file"))
    assert out.files["/proc/sys/kernel/kptr_restrict"].text == "1\n"
    assert out.files["/etc/absent file"].absent


def test_commands_found_under_root_run_with_framed_output(tree: Path) -> None:
    nd = write(tree, "/usr/sbin/netdata", "#!/bin/sh\necho 'netdata v1.36.1'\n")
    nd.chmod(0o755)
    bt = write(tree, "/usr/sbin/bpftool", "#!/bin/sh\necho 'Error: no' >&2\nexit 255\n")
    bt.chmod(0o755)
    out, _ = run_probe(tree)
    assert out.commands["netdata_version"].stdout == "netdata v1.36.1"
    assert out.commands["netdata_version"].rc == 0
    assert out.commands["bpftool_prog"].rc == 255
    assert out.commands["bpftool_prog"].stderr == "Error: no"


def test_running_netdata_processes_are_found_by_comm(tree: Path) -> None:
    write(tree, "/proc/1301/comm", "ebpf.plugin\n")
    write(tree, "/proc/1234/comm", "netdata\n")
    write(tree, "/proc/99/comm", "nginx\n")
    out, _ = run_probe(tree)
    assert out.procs == {1301: "ebpf.plugin", 1234: "netdata"}


@pytest.mark.skipif(os.geteuid() != 0, reason="other users' fdinfo is read as root only")
def test_broken_bpftool_falls_back_to_fdinfo_with_owner_comm(tree: Path) -> None:
    # Ubuntu's /usr/sbin/bpftool wrapper exits 2 when linux-tools for the kernel is missing.
    bt = write(
        tree, "/usr/sbin/bpftool", "#!/bin/sh\necho 'WARNING: bpftool not found' >&2\nexit 2\n"
    )
    bt.chmod(0o755)
    write(tree, "/proc/1301/comm", "ebpf.plugin\n")
    write(
        tree,
        "/proc/1301/fdinfo/7",
        "pos:\t0\nflags:\t02000002\nprog_type:\t2\n"
        "prog_jited:\t1\nprog_tag:\t5736f2a0499462c6\nprog_id:\t517\n",
    )
    write(tree, "/proc/1301/fdinfo/8", "pos:\t0\nflags:\t02\n")
    write(tree, "/proc/42/comm", "tracer\n")
    write(tree, "/proc/42/fdinfo/3", "prog_type:\t26\nprog_tag:\t59f4a931744dcdc6\nprog_id:\t522\n")
    out, _ = run_probe(tree)
    facts = host_facts(out)
    assert facts.bpf_source == "fdinfo"
    got = sorted((p.id, p.type, p.owners) for p in facts.bpf_programs)
    assert got == [(517, "kprobe", ((1301, "ebpf.plugin"),)), (522, "tracing", ((42, "tracer"),))]


def test_login_shell_noise_before_the_probe_is_ignored(tree: Path) -> None:
    out, proc = run_probe(tree)
    noisy = "Welcome to proxy-17\nlast login: never\n" + proc.stdout.decode()
    nonce = next(line.split()[0] for line in proc.stdout.decode().splitlines() if " begin " in line)
    again = parse_probe_output(noisy, proc.stderr.decode(), nonce, str(tree))
    assert again.files == out.files and again.complete


@pytest.mark.parametrize("shell", ["dash", "bash"])
def test_a_megabyte_word_in_a_probe_file_does_not_stall_the_shell(tree: Path, shell: str) -> None:
    # dash's ${d#*:} is quadratic in the word's length: one 1 MB line of garbage in
    # uprobe_events held the probe past every deadline. The probe skips such lines.
    write(tree, "/sys/kernel/tracing/uprobe_events", "x" * (1 << 20) + "\n")
    out, proc = run_probe(tree, shell)  # the helper gives it 30 s
    assert out.complete, proc.stderr


@pytest.mark.skipif(not shutil.which("busybox"), reason="busybox not installed")
def test_probe_runs_on_busybox_applets_alone(tree: Path, tmp_path: Path) -> None:
    # An embedded or Alpine-like target: sh, grep, cat, id, sleep, timeout are all busybox.
    bb = tmp_path / "bb"
    bb.mkdir()
    for applet in ("sh", "grep", "cat", "cut", "tr", "id", "sleep", "timeout"):
        (bb / applet).symlink_to(shutil.which("busybox"))
    nonce = new_nonce()
    proc = subprocess.run(
        [str(bb / "sh"), "-s"],
        input=probe_stdin(nonce, str(tree), 1),
        capture_output=True,
        timeout=30,
        env={"PATH": str(bb), "LC_ALL": "C"},
    )
    out = parse_probe_output(proc.stdout.decode(), proc.stderr.decode(), nonce, str(tree))
    assert out.complete
    assert out.files["/sys/kernel/tracing/set_event"].text == "sched:sched_switch\n"
    assert out.files["/sys/kernel/tracing/dynamic_events"].errno == "ENOENT"
    assert out.enables["/sys/kernel/tracing/events/kprobes/x/enable"].text == "1\n"
    assert out.stat1 is not None and out.stat2 is not None


def test_command_cut_short_before_its_rc_frame_reads_as_rc_255() -> None:
    stdout = 'N begin 1\nN cmd bpftool_prog /usr/sbin/bpftool\n[{"id": 1'
    out = parse_probe_output(stdout, "", "N", "/")
    run = out.commands["bpftool_prog"]
    assert (run.rc, run.stdout) == (255, '[{"id": 1')
    assert not out.complete


@pytest.mark.parametrize(
    "stdout, why",
    [
        ("N begin 1\nN env uid 0\nN begin 1\nN done\n", "second begin"),
        ("N begin 1\nN env uid 0\nN done\nN env uid 1000\n", "after the probe's done"),
        ("N begin 1\nN done\n[]\n", "after the probe's done"),
    ],
)
def test_a_second_begin_or_anything_after_done_is_refused(stdout: str, why: str) -> None:
    with pytest.raises(ProbeFormatError, match=why):
        parse_probe_output(stdout, "", "N", "/")


def test_a_probe_that_ends_without_its_done_is_incomplete() -> None:
    out = parse_probe_output("N begin 1\nN env uid 0\n", "", "N", "/")
    assert not out.complete
