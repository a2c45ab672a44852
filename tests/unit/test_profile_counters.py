"""The window's counters as their owners print them (captured from Debian's 6.1 kernel under
QEMU with bpftool 7.1 and bpftrace's programs loaded), and the rates made of them."""

from __future__ import annotations

from pathlib import Path

import pytest

from fleet.profile.counters import (
    hook_rates,
    parse_bpftool_progs,
    parse_kprobe_profile,
    parse_ring_stats,
    program_use,
    progs_from_fdinfo,
    ring_events,
    ring_rate,
)

QEMU = Path(__file__).parents[1] / "fixtures" / "captured-qemu"
PROFILE = QEMU / "profile"


def test_kprobe_profile_reads_name_hits_misses_and_a_window_gives_hits_a_second() -> None:
    before = parse_kprobe_profile((QEMU / "e2e" / "kprobe_profile.incident.txt").read_text())
    after = parse_kprobe_profile((QEMU / "e2e" / "kprobe_profile_2.incident.txt").read_text())
    assert before["tcp_sendmsg"][0] == 74852 and before["ip_rcv"] == (8904, 1)
    rates = {r.name: r for r in hook_rates(before, after, 1.0)}
    assert rates["tcp_sendmsg"].hits_per_s > 1000
    assert rates["tcp_retransmit_skb"].hits_per_s == 0
    assert next(iter(hook_rates(before, after, 1.0))).hits_per_s == max(
        r.hits_per_s for r in rates.values()
    )


def test_an_empty_kprobe_profile_has_no_probes_and_garbage_is_refused() -> None:
    assert parse_kprobe_profile((QEMU / "kprobe_profile.a_empty.txt").read_text()) == {}
    with pytest.raises(ValueError, match="name hits misses"):
        parse_kprobe_profile("  tcp_sendmsg  12\n")


def test_bpftool_programs_over_the_window_give_cpu_share_calls_and_cost_per_call() -> None:
    before = parse_bpftool_progs((PROFILE / "bpftool_prog_show.incident.1.json.txt").read_text())
    after = parse_bpftool_progs((PROFILE / "bpftool_prog_show.incident.2.json.txt").read_text())
    assert {p.type for p in after.values()} == {"kprobe"}
    uses = program_use(before, after, 10.0, 1)
    busiest = uses[0]
    assert busiest.runs > 1000 and busiest.run_time_ns > 0
    assert busiest.cpu_pct == pytest.approx(100 * busiest.run_time_ns / 10e9, abs=0.001)
    assert busiest.avg_ns == pytest.approx(busiest.run_time_ns / busiest.runs, abs=0.1)
    assert [u.run_time_ns for u in uses] == sorted((u.run_time_ns for u in uses), reverse=True)


def test_bpftool_without_stats_prints_no_run_time_and_no_rate_is_invented() -> None:
    text = (QEMU.parent / "captured" / "bpftool_prog_show.running.json.txt").read_text()
    progs = parse_bpftool_progs(text)
    assert progs and all(p.run_time_ns is None for p in progs.values())
    assert program_use(progs, progs, 5.0, 2) == []


def test_bpftools_error_object_is_an_error_not_an_empty_fleet() -> None:
    with pytest.raises(ValueError, match="bpftool: can't get next program"):
        parse_bpftool_progs('{"error":"can\'t get next program: Operation not permitted"}')


def test_fdinfo_programs_carry_their_counters_and_owner() -> None:
    fd = [
        (811, {"prog_type": "2", "prog_id": "41", "run_time_ns": "5000", "run_cnt": "10"}),
        (812, {"prog_id": "41", "run_time_ns": "5000", "run_cnt": "10"}),
        (812, {"map_type": "1", "map_id": "3"}),
    ]
    progs = progs_from_fdinfo(fd, {811: "ebpf.plugin"})
    assert list(progs) == [41]
    assert progs[41].owners == ("ebpf.plugin[811]", "?[812]")
    assert progs[41].run_time_ns == 5000


def test_ring_buffer_events_count_what_is_in_it_overwritten_or_read() -> None:
    def stats(name: str) -> dict[int, dict[str, int]]:
        out = {}
        for line in (PROFILE / name).read_text().split("\n"):
            path, _, kv = line.partition(":")
            if kv:
                cpu = int(path.split("/")[-2].removeprefix("cpu"))
                out.setdefault(cpu, {}).update(parse_ring_stats(kv))
        return out

    before = stats("per_cpu_stats.grep_H.incident.1.txt")
    after = stats("per_cpu_stats.grep_H.incident.2.txt")
    assert set(after[0]) >= {"entries", "overrun", "read events", "bytes"}
    rate = ring_rate(before, after, 5.0)
    assert rate.total == pytest.approx(
        (ring_events(after[0]) - ring_events(before[0])) / 5.0, abs=0.1
    )
    assert rate.total > 0


def test_perf_refused_by_the_kernel_is_named_and_no_sample_is_invented() -> None:
    # What perf 6.1 printed here for a user without CAP_PERFMON (perf_event_paranoid = 2).
    from fleet.profile.judge import judge_profile
    from fleet.remote.probe import CommandRun, ProbeOutput

    host = QEMU.parent / "captured" / "profile"
    err = (host / "perf_record.nonroot.stderr.txt").read_text()
    rc = int((host / "perf_record.nonroot.rc.txt").read_text())
    out = ProbeOutput(root="", complete=True)
    out.commands["perf"] = CommandRun("perf", "/usr/bin/perf", rc, "", err)
    out.env["perf_output"] = "folded"
    prof = judge_profile(out, "h", "a", 22, 5)
    assert prof.unavailable["perf"].startswith("not permitted (perf_event_paranoid")
    assert prof.samples == 0 and prof.pct("probe") is None
