"""The fan-out: bounded concurrency, inventory order, progress on a TTY only."""

from __future__ import annotations

import io
import threading
import time

from fleet.config.inventory import Host
from fleet.render.progress import ProgressBar
from fleet.transport.fanout import run_hosts


def hosts(n: int) -> list[Host]:
    return [
        Host(
            name=f"h{i}",
            address="127.0.0.1",
            port=22,
            user=None,
            key_file=None,
            become=False,
            groups=("all",),
            vars={},
            fleet_root="/",
            known_hosts=None,
            netdata_restart="systemctl restart netdata",
            cpus=None,
            cpus_text=None,
        )
        for i in range(n)
    ]


def test_results_come_back_in_inventory_order_whatever_finishes_first() -> None:
    hs = hosts(8)
    out = run_hosts(hs, lambda h: (time.sleep(0.01 * (8 - int(h.name[1:]))), h.name)[1], workers=8)
    assert out == [h.name for h in hs]


def test_no_more_than_workers_hosts_run_at_once() -> None:
    lock = threading.Lock()
    running = peak = 0

    def work(h: Host) -> str:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.02)
        with lock:
            running -= 1
        return h.name

    run_hosts(hosts(12), work, workers=3)
    assert peak == 3


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_draws_on_a_tty_and_counts_failures() -> None:
    tty = FakeTTY()
    run_hosts(
        hosts(4),
        lambda h: (time.sleep(0.12), h.name)[1],
        workers=1,
        progress=ProgressBar(4, tty),
        is_failure=lambda r: r == "h1",
    )
    text = tty.getvalue()
    assert "2/4 hosts, 1 unreachable/error" in text and text.endswith("\r\033[K")


def test_progress_is_silent_when_not_a_tty() -> None:
    pipe = io.StringIO()
    run_hosts(hosts(3), lambda h: h.name, progress=ProgressBar(3, pipe))
    assert pipe.getvalue() == ""


def test_garbage_collector_settings_come_back_after_the_fan_out() -> None:
    import gc

    before = gc.get_threshold()
    seen = run_hosts(hosts(3), lambda _h: gc.get_threshold()[0], workers=2)
    assert all(t >= 10_000 for t in seen)
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0


def test_nested_fan_outs_restore_the_collector_once_the_outer_one_ends() -> None:
    import gc

    before = gc.get_threshold()

    def inner(_h: Host) -> int:
        run_hosts(hosts(2), lambda _x: None, workers=2)
        return gc.get_threshold()[0]  # the outer fan-out is still running

    assert all(t >= 10_000 for t in run_hosts(hosts(2), inner, workers=2))
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0


def test_a_host_whose_handling_raises_becomes_its_own_result_and_the_rest_finish() -> None:
    def fn(h: Host) -> str:
        if h.name == "h2":
            raise TypeError("'int' object is not iterable")
        return f"ok {h.name}"

    out = run_hosts(hosts(4), fn, workers=2, on_error=lambda h, exc: f"error {h.name}: {exc}")
    assert out == ["ok h0", "ok h1", "error h2: 'int' object is not iterable", "ok h3"]
