"""fleet/remote/profile.sh run by dash, bash and busybox sh on a lab host's tree: what it
reads, that it folds on the host, and that the one thing it may switch on is off again."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from fleet.lab.trees import make_host_tree
from fleet.profile.judge import judge_profile
from fleet.profile.result import BPF_STATS, PERF
from fleet.remote.profile import profile_stdin
from tests.helpers import run_profile, write

SHELLS = [s for s in ("dash", "bash", "busybox") if shutil.which(s)]
BPF_STATS_FILE = "proc/sys/kernel/bpf_stats_enabled"


@pytest.fixture
def incident(tmp_path: Path) -> Path:
    root = tmp_path / "incident"
    make_host_tree(root, "incident", 1)
    write(root, "proc/.stat.fleet-lab.state", "hot\n")  # what the lab's CPU model says
    write(root, BPF_STATS_FILE, "0\n")
    return root


@pytest.mark.parametrize("shell", SHELLS)
def test_the_profile_folds_on_the_host_and_switches_bpf_stats_back_off(
    incident: Path, shell: str
) -> None:
    out, proc = run_profile(incident, shell)
    assert proc.returncode == 0, proc.stderr
    assert out.complete
    assert out.env["perf_output"] == "folded"  # folded by the host's awk, not sent raw
    assert out.env["bpfstats"] == "enabled-by-fleet"
    assert out.env["bpfstats_end"] == "restored"
    assert (incident / BPF_STATS_FILE).read_text() == "0\n"
    prof = judge_profile(out, "incident-1", "127.0.0.1", 22, 1)
    assert prof.sources[:2] == [PERF, BPF_STATS]
    assert prof.samples > 0 and prof.pct("probe") and prof.pct("probe") > 10
    assert any("switched off again" in n for n in prof.notes)


def test_stats_someone_else_switched_on_are_left_on(incident: Path) -> None:
    write(incident, BPF_STATS_FILE, "1\n")
    out, _ = run_profile(incident)
    assert out.env["bpfstats"] == "already-on" and "bpfstats_end" not in out.env
    assert (incident / BPF_STATS_FILE).read_text() == "1\n"


@pytest.mark.parametrize("signal_name", ["TERM", "HUP", "INT"])
def test_a_signal_mid_window_still_switches_bpf_stats_off(incident: Path, signal_name: str) -> None:
    # What `timeout` (TERM) or a hangup does to the remote shell while perf samples.
    env = {**os.environ, "PATH": f"{incident.parent / '.incident-lab-bin'}:{os.environ['PATH']}"}
    run_profile(incident, window=1)  # writes the lab's tool dispatchers
    proc = subprocess.Popen(
        ["dash", "-s"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        start_new_session=True,
    )
    assert proc.stdin is not None
    proc.stdin.write(profile_stdin("N0NCE", str(incident), 30, 99))
    proc.stdin.close()
    try:
        for _ in range(100):
            if (incident / BPF_STATS_FILE).read_text() == "1\n":
                break
            time.sleep(0.1)
        assert (incident / BPF_STATS_FILE).read_text() == "1\n"
        os.killpg(proc.pid, getattr(signal, f"SIG{signal_name}"))
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert (incident / BPF_STATS_FILE).read_text() == "0\n"


def test_a_host_without_perf_or_bpftool_gives_what_it_has_and_says_what_is_missing(
    incident: Path, tmp_path: Path
) -> None:
    if not shutil.which("busybox"):
        pytest.skip("busybox not installed")
    bare = tmp_path / "bare-bin"
    bare.mkdir()
    for applet in ("sh", "cat", "grep", "sleep", "id", "timeout", "awk", "head", "readlink"):
        (bare / applet).symlink_to(shutil.which("busybox") or "")
    # Found before any bpftool of this machine's sbin, and as broken as a missing one.
    write(bare, "bpftool", "#!/bin/sh\necho 'bpftool: not found for this kernel' >&2\nexit 127\n")
    (bare / "bpftool").chmod(0o755)
    write(incident, "proc/811/fdinfo/7", "pos:\t0\nprog_type:\t2\nprog_id:\t41\nrun_time_ns:\t0\n")
    out, proc = run_profile(incident, str(bare / "sh"), path=str(bare))
    assert proc.returncode == 0, proc.stderr
    prof = judge_profile(out, "h", "a", 22, 1)
    assert prof.unavailable[PERF] == "not installed"
    assert out.env["bpfstats"] == "enabled-by-fleet" and out.env["bpfstats_end"] == "restored"
    assert [f["prog_id"] for _, f in out.snapshot_fdinfo["1"]] == ["41"]
    assert BPF_STATS in prof.sources and prof.samples == 0


def test_programs_without_pids_get_their_owner_from_the_fds_that_hold_them(
    incident: Path,
) -> None:
    # Debian's bpftool 7.1 prints no "pids" (tests/fixtures/captured-qemu/profile): the
    # profile then reads which process holds each program's fd.
    tool = write(
        incident,
        "usr/sbin/bpftool",
        '#!/bin/sh\necho \'[{"id":41,"type":"kprobe","name":"tcp_v4_connect",'
        '"run_time_ns":5000,"run_cnt":10}]\'\n',
    )
    tool.chmod(0o755)
    write(incident, "proc/4242/fdinfo/9", "pos:\t0\nprog_type:\t2\nprog_id:\t41\n")
    write(incident, "proc/4242/comm", "bpftrace\n")
    out, proc = run_profile(incident)
    assert proc.returncode == 0, proc.stderr
    prof = judge_profile(out, "h", "a", 22, 1)
    (prog,) = prof.programs
    assert prog.owners == ("bpftrace[4242]",)
