"""perf samples folded and charged to probe / BPF / tracing / lock machinery, on real output:
perf 6.1 on Debian's 6.1 kernel under QEMU (the incident, and after `fleet remediate`) and on
this project's capture machine (BPF programs on syscall tracepoints)."""

from __future__ import annotations

import shutil
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from fleet.profile.stacks import (
    FoldedFormatError,
    classify,
    fold_perf_script,
    frame_kind,
    frame_symbol,
    parse_folded,
    render_folded,
)

FIXTURES = Path(__file__).parents[1] / "fixtures"
QEMU = FIXTURES / "captured-qemu" / "profile"
HOST = FIXTURES / "captured" / "profile"
FOLD_AWK = Path(__file__).parents[2] / "fleet" / "remote" / "fold.awk"
CAPTURES = [
    QEMU / "perf_script.incident.txt",
    QEMU / "perf_script.remediated.txt",
    HOST / "perf_script.bpf_tracepoints.txt",
    HOST / "perf_script.tcp_load.txt",
]


def _awks() -> list[list[str]]:
    found = [[a] for a in ("mawk", "gawk", "original-awk") if shutil.which(a)]
    if shutil.which("busybox"):
        found.append(["busybox", "awk"])
    return found


@pytest.mark.parametrize("capture", CAPTURES, ids=lambda p: f"{p.parent.parent.name}/{p.name}")
@pytest.mark.parametrize("awk", _awks(), ids=lambda a: " ".join(a))
def test_the_hosts_awk_folds_exactly_as_fleet_does(capture: Path, awk: list[str]) -> None:
    # fold.awk runs on the host when it has an awk; the local fold is the fallback. Both must
    # give the same stacks and counts, or a host's answer would depend on its awk.
    out = subprocess.run(
        [*awk, "-f", str(FOLD_AWK), str(capture)], capture_output=True, check=True
    ).stdout.decode()
    assert parse_folded(out) == fold_perf_script(capture.read_text())


def test_every_sample_of_a_capture_is_counted_once() -> None:
    text = (QEMU / "perf_script.incident.txt").read_text()
    headers = [ln for ln in text.split("\n") if ln and ln[0] not in " \t"]
    assert sum(fold_perf_script(text).values()) == len(headers) == 495


def test_the_incident_spends_a_fifth_of_the_samples_in_probes_and_names_tcp_sendmsg() -> None:
    shares = classify(fold_perf_script((QEMU / "perf_script.incident.txt").read_text()))
    assert shares.samples == 495
    assert shares.pct("probe") == pytest.approx(21.01, abs=0.01)
    assert shares.pct("bpf") > 4  # bpftrace's programs and their htab updates
    assert shares.pct("tracing") > 10  # the hist triggers' ring-buffer work
    hooked = dict(shares.hooked)
    assert hooked["tcp_sendmsg"] > 20 and hooked["tcp_cleanup_rbuf"] > 20
    assert "kretprobe under __sock_sendmsg" in hooked  # tcp_sendmsg's return probe


def test_after_remediation_no_sample_is_in_probe_bpf_or_tracing_machinery() -> None:
    shares = classify(fold_perf_script((QEMU / "perf_script.remediated.txt").read_text()))
    assert shares.samples == 499
    assert shares.in_hooks == 0 and shares.pct("tracing") == 0
    assert not shares.hooked


def test_bpf_on_tracepoints_is_bpf_not_probe_and_spinning_is_counted_at_the_leaf() -> None:
    shares = classify(fold_perf_script((HOST / "perf_script.bpf_tracepoints.txt").read_text()))
    assert shares.pct("probe") == 0
    assert shares.pct("bpf") == pytest.approx(11.76, abs=0.01)
    # 32 samples sit in __pv_queued_spin_lock_slowpath (socket locks), none under BPF.
    assert shares.pct("lock") == pytest.approx(5.54, abs=0.01)
    assert shares.lock_under_probe == 0


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("kprobe_ftrace_handler", "probe"),
        ("rethook_trampoline_handler", "probe"),
        ("__kretprobe_trampoline", "probe"),
        ("bpf_prog_5ed16feb6bd8e955_tcp_v4_connect", "bpf"),
        ("htab_map_update_elem", "bpf"),
        ("trace_call_bpf", "bpf"),
        ("event_hist_trigger", "tracing"),
        ("ring_buffer_lock_reserve", "tracing"),
        ("native_queued_spin_lock_slowpath", "lock"),
        ("_raw_spin_lock_irqsave", "lock"),
        ("_raw_spin_unlock_irqrestore", None),  # releasing is not spinning
        ("rb_insert_color", None),  # the rbtree, not the ring buffer
        ("tcp_sendmsg", None),
    ],
)
def test_frames_are_charged_to_the_machinery_they_belong_to(name: str, kind: str | None) -> None:
    assert frame_kind(name) == kind


def test_a_frame_line_loses_address_offset_and_dso_but_keeps_spaces_in_the_symbol() -> None:
    assert frame_symbol("\tffffffff8225295b pv_native_safe_halt+0xb ([kernel.kallsyms])") == (
        "pv_native_safe_halt"
    )
    assert frame_symbol("\t7f1 operator new(unsigned long)+0x1c (/usr/lib/libstdc++.so.6)") == (
        "operator new(unsigned long)"
    )
    assert frame_symbol("\t    7f3d [unknown] (/usr/bin/dd)") == "[unknown]"
    assert frame_symbol("\tffff a;b+0x1 ([kernel.kallsyms])") == "a:b"


def test_perf_lines_split_on_newline_only() -> None:
    # A comm may hold a carriage return; perf writes it as it is and so is it read.
    text = "we\rird 12 [000] 1.000000: 1 cpu-clock:ppp: \n\tffff f+0x1 ([kernel.kallsyms])\n\n"
    assert fold_perf_script(text) == Counter({"we\rird;f": 1})


def test_a_truncated_stream_counts_the_last_sample_with_the_frames_it_has() -> None:
    text = (QEMU / "perf_script.incident.txt").read_text()
    cut = text[: text.index("\n\n", 1000) + 60]
    assert sum(fold_perf_script(cut).values()) == cut.count("cpu-clock")


def test_folded_text_round_trips_and_a_line_without_count_is_refused() -> None:
    folded = fold_perf_script((QEMU / "perf_script.incident.txt").read_text())
    assert parse_folded(render_folded(folded)) == folded
    with pytest.raises(FoldedFormatError, match="line 2"):
        parse_folded("a;b 3\na;b\n")


def test_a_return_probe_is_charged_to_the_one_function_seen_probed_under_its_caller() -> None:
    # A kretprobe's stack shows only the caller the function returned to; the entry probes
    # in the same samples say which function that was, when only one was probed there.
    entry = "nc;main;__sock_sendmsg;tcp_sendmsg;ftrace_trampoline;kprobe_ftrace_handler"
    ret = "nc;main;__sock_sendmsg;arch_rethook_trampoline;rethook_trampoline_handler"
    shares = classify(Counter({entry: 3, ret: 2}))
    assert shares.hooked == Counter({"tcp_sendmsg": 3, "tcp_sendmsg (return)": 2})
    udp = "nc;main;__sock_sendmsg;udp_sendmsg;ftrace_trampoline;kprobe_ftrace_handler"
    shares = classify(Counter({entry: 3, udp: 1, ret: 2}))
    assert shares.hooked["kretprobe under __sock_sendmsg"] == 2  # two candidates: no guess
