"""CPU figures from two /proc/stat samples (contract: CPU figures)."""

from __future__ import annotations

from pathlib import Path

import pytest

from fleet.audit.cpu import cpu_between, parse_proc_stat

CAPTURED = Path(__file__).resolve().parent.parent / "fixtures" / "captured"


def test_captured_samples_give_percentages_of_capacity() -> None:
    a = parse_proc_stat((CAPTURED / "proc_stat.a.txt").read_text())
    b = parse_proc_stat((CAPTURED / "proc_stat.b.txt").read_text())
    fig = cpu_between(a, b)
    assert fig.cpus == len([k for k in b if k != "cpu"])
    assert 0 <= fig.system_pct <= fig.busy_pct <= 100
    assert fig.ticks > 0
    assert len(fig.per_cpu) == fig.cpus


def _stat(*cpus: str) -> str:
    return "\n".join(["cpu  0 0 0 0 0 0 0 0 0 0", *cpus, "intr 1 2", "ctxt 5"]) + "\n"


def test_system_counts_irq_and_softirq_and_user_counts_nice() -> None:
    first = parse_proc_stat(_stat("cpu0 100 10 50 800 40 5 5 0 0 0"))
    # +20 user +10 nice +40 system +10 irq +10 softirq +100 idle +10 iowait = 200 ticks
    second = parse_proc_stat(_stat("cpu0 120 20 90 900 50 15 15 0 0 0"))
    fig = cpu_between(first, second)
    assert fig.user_pct == 15.0
    assert fig.system_pct == 30.0
    assert fig.busy_pct == 45.0


def test_guest_is_not_added_to_the_total() -> None:
    first = parse_proc_stat(_stat("cpu0 0 0 0 0 0 0 0 0 0 0"))
    second = parse_proc_stat(_stat("cpu0 50 0 0 50 0 0 0 0 50 0"))
    assert cpu_between(first, second).user_pct == 50.0


def test_fleet_cpus_limits_the_figures_to_those_cpus() -> None:
    first = parse_proc_stat(_stat("cpu0 0 0 0 0 0 0 0 0 0 0", "cpu1 0 0 0 0 0 0 0 0 0 0"))
    second = parse_proc_stat(_stat("cpu0 0 0 100 0 0 0 0 0 0 0", "cpu1 0 0 0 100 0 0 0 0 0 0"))
    assert cpu_between(first, second).system_pct == 50.0
    only0 = cpu_between(first, second, frozenset({0}))
    assert (only0.system_pct, only0.cpus) == (100.0, 1)


def test_offline_cpu_is_skipped_not_counted_as_idle() -> None:
    first = parse_proc_stat(_stat("cpu0 0 0 0 0 0 0 0 0 0 0", "cpu1 0 0 0 0 0 0 0 0 0 0"))
    second = parse_proc_stat(_stat("cpu0 0 0 100 0 0 0 0 0 0 0"))
    fig = cpu_between(first, second)
    assert (fig.cpus, fig.system_pct) == (1, 100.0)


def test_counter_going_backwards_is_clamped_and_flagged() -> None:
    first = parse_proc_stat(_stat("cpu0 0 0 0 100 50 0 0 0 0 0"))
    second = parse_proc_stat(_stat("cpu0 0 0 50 150 40 0 0 0 0 0"))
    fig = cpu_between(first, second)
    assert fig.clamped
    assert fig.system_pct == 50.0


def test_old_kernel_with_four_columns_parses() -> None:
    first = parse_proc_stat("cpu0 0 0 0 0\n")
    second = parse_proc_stat("cpu0 10 0 10 80\n")
    assert cpu_between(first, second).system_pct == 10.0


def test_no_elapsed_ticks_is_an_error_not_zero_percent() -> None:
    s = parse_proc_stat(_stat("cpu0 1 1 1 1 1 1 1 1 0 0"))
    with pytest.raises(ValueError, match="no CPU ticks"):
        cpu_between(s, s)


def test_an_aggregate_only_stat_with_no_elapsed_ticks_is_an_error() -> None:
    s = parse_proc_stat("cpu  1 1 1 1 1 1 1 1 0 0\n")
    with pytest.raises(ValueError, match="no CPU ticks"):
        cpu_between(s, s)


def test_empty_sample_is_an_error() -> None:
    with pytest.raises(ValueError, match="no cpu lines"):
        parse_proc_stat("")
