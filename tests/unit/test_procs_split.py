"""How --procs deals hosts and budgets (pure)."""

from __future__ import annotations

from fleet.audit.procs import HOSTS_PER_PROC, deal, default_procs, share, usable_cores


def test_hosts_are_dealt_round_robin_and_every_host_once() -> None:
    assert deal(7, 3) == [[0, 3, 6], [1, 4], [2, 5]]
    assert deal(2, 4) == [[0], [1]]  # no idle worker
    assert sorted(i for s in deal(1000, 7) for i in s) == list(range(1000))


def test_budgets_are_split_so_the_run_keeps_them() -> None:
    assert [share(20, 3, w) for w in range(3)] == [7, 7, 6]
    assert sum(share(256, 7, w) for w in range(7)) == 256
    assert share(1, 4, 3) == 1  # never below one


def test_small_fleets_stay_in_one_process_and_big_ones_use_the_cores() -> None:
    assert default_procs(10) == 1
    assert default_procs(HOSTS_PER_PROC - 1) == 1
    assert default_procs(10**6) == usable_cores()
