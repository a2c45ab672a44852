"""profile.probe_share and profile.lock_spin: a pass needs a measurement, never its absence."""

from __future__ import annotations

from pathlib import Path

from fleet.config.playbook import ProfileLimits
from fleet.model import ERROR, FAIL, PASS, SKIP, WARN
from fleet.profile.checks import check_lock_spin, check_probe_share
from fleet.profile.counters import HookRate, ProgramUse
from fleet.profile.proof import NOT_MEASURED, NOT_PROVEN, PROVEN, profile_proof
from fleet.profile.result import BPF_STATS, KPROBE_PROFILE, PERF, HostProfile
from fleet.profile.stacks import classify, fold_perf_script

PROFILE = Path(__file__).parents[1] / "fixtures" / "captured-qemu" / "profile"
LIMITS = ProfileLimits()


def _perf(name: str) -> HostProfile:
    p = HostProfile("h", "127.0.0.1", 22, "ok", window_s=5.0, sources=[PERF])
    p.folded = fold_perf_script((PROFILE / name).read_text())
    p.shares = classify(p.folded)
    return p


def test_the_incidents_samples_fail_the_probe_share_and_name_the_hooked_function() -> None:
    f = check_probe_share(_perf("perf_script.incident.txt"), LIMITS)
    assert f.status == FAIL and f.evidence["share_pct"] > 20
    assert "tcp_" in f.summary and f.fix


def test_the_remediated_samples_pass_both_checks() -> None:
    p = _perf("perf_script.remediated.txt")
    assert check_probe_share(p, LIMITS).status == PASS
    assert check_lock_spin(p, LIMITS).status == PASS


def test_spinning_above_the_limit_fails_lock_spin() -> None:
    p = _perf("perf_script.incident.txt")
    assert check_lock_spin(p, ProfileLimits(lock_spin_pct=0.1)).status == FAIL
    assert check_lock_spin(p, LIMITS).status == PASS  # 0.2 % of samples


def _bpf_only(cpu_pct: float, hooks: list[HookRate]) -> HostProfile:
    p = HostProfile("h", "a", 22, "ok", sources=[BPF_STATS, KPROBE_PROFILE])
    p.unavailable[PERF] = "not installed"
    p.programs = [ProgramUse(1, "x", "kprobe", (), 1, 1, cpu_pct, 1.0, 1.0)]
    p.hooks = hooks
    return p


def test_without_perf_the_bpf_run_time_decides_and_firing_kprobes_are_not_a_pass() -> None:
    assert check_probe_share(_bpf_only(3.0, []), LIMITS).status == FAIL
    assert check_probe_share(_bpf_only(0.1, []), LIMITS).status == PASS
    firing = [HookRate("tcp_sendmsg", 2400.0, 0.0)]
    assert check_probe_share(_bpf_only(0.1, firing), LIMITS).status == WARN


def test_with_nothing_to_measure_both_checks_skip_and_a_failed_profile_is_an_error() -> None:
    p = HostProfile("h", "a", 22, "ok")
    p.unavailable[PERF] = "not installed"
    assert check_probe_share(p, LIMITS).status == SKIP
    assert check_lock_spin(p, LIMITS).status == SKIP
    p.hooks = [HookRate("ip_rcv", 700.0, 0.0)]
    assert check_probe_share(p, LIMITS).status == WARN
    bad = HostProfile("h", "a", 22, "error", "profile output incomplete")
    assert check_probe_share(bad, LIMITS).status == ERROR
    assert check_lock_spin(bad, LIMITS).status == ERROR


def test_a_fix_is_proven_only_when_no_probe_frame_is_left_after_it() -> None:
    before, after = _perf("perf_script.incident.txt"), _perf("perf_script.remediated.txt")
    proof = profile_proof(before, after, LIMITS)
    assert proof.verdict == PROVEN
    assert "21.0% -> 0.0%" in proof.reason
    assert profile_proof(before, before, LIMITS).verdict == NOT_PROVEN
    assert "tcp_" in profile_proof(before, before, LIMITS).reason


def test_a_profile_that_measured_nothing_proves_nothing() -> None:
    before = _perf("perf_script.incident.txt")
    blind = HostProfile("h", "a", 22, "ok", sources=[BPF_STATS])
    blind.unavailable[PERF] = "not permitted (perf_event_paranoid; run as root or with CAP_PERFMON)"
    assert profile_proof(before, blind, LIMITS).verdict == NOT_MEASURED
    failed = HostProfile("h", "a", 22, "error", "connection lost")
    assert profile_proof(before, failed, LIMITS).verdict == NOT_MEASURED
