"""Prometheus text exposition, read back with prometheus_client's own parser."""

from __future__ import annotations

import re
from datetime import date

from prometheus_client.parser import text_string_to_metric_families

from fleet.render.prometheus import HELP, render_prometheus
from tests.reportkit import host, report_data, waiver


def families(text: str) -> dict[str, object]:
    return {f.name: f for f in text_string_to_metric_families(text)}


def samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    fam = families(text)[name]
    return {tuple(sorted(s.labels.items())): s.value for s in fam.samples}  # type: ignore[attr-defined]


def test_the_exposition_parses_and_has_every_family_with_its_help() -> None:
    data = report_data(
        [host("a", failing=("netdata.ebpf",), system_pct=71.5), host("b", unreachable="refused")]
    )
    text = render_prometheus(data)
    fams = families(text)
    assert set(fams) == set(HELP)
    for name, fam in fams.items():
        assert fam.documentation == HELP[name]  # type: ignore[attr-defined]
        assert fam.type == "gauge"  # type: ignore[attr-defined]
        assert all(s.timestamp is None for s in fam.samples)  # type: ignore[attr-defined]
    # no timestamps at all: every sample line is "name{labels} value"
    sample = re.compile(r'^[a-z_]+(\{([a-z]+="([^"\\]|\\.)*",?)*\})? [0-9.e+-]+$')
    for line in text.splitlines():
        if not line.startswith("#"):
            assert sample.match(line), line


def test_check_status_is_a_state_set_with_waived_as_its_own_state() -> None:
    data = report_data(
        [host("a", failing=("netdata.ebpf", "cpu.system"))], waivers=[waiver("a", "netdata.ebpf")]
    )
    status = samples(render_prometheus(data), "fleet_check_status")
    ones = {dict(k)["check"]: dict(k)["status"] for k, v in status.items() if v == 1}
    assert ones == {
        "tracing.set_event": "pass",
        "kprobes.registered": "pass",
        "netdata.ebpf": "waived",
        "cpu.system": "fail",
    }
    assert len(status) == 4 * 6  # every (host, check) has every state, 0 or 1


def test_host_up_cpu_ratio_counts_and_last_run_time() -> None:
    data = report_data(
        [
            host("a", failing=("netdata.ebpf",), system_pct=71.5),
            host("b"),
            host("c", unreachable="refused"),
        ]
    )
    text = render_prometheus(data)
    assert samples(text, "fleet_host_up") == {
        (("host", "a"),): 1.0,
        (("host", "b"),): 1.0,
        (("host", "c"),): 0.0,
    }
    assert samples(text, "fleet_host_cpu_system_ratio") == {
        (("host", "a"),): 0.715,
        (("host", "b"),): 0.04,
    }
    hosts = {dict(k)["status"]: v for k, v in samples(text, "fleet_hosts").items()}
    assert hosts == {
        "non-compliant": 1,
        "error": 0,
        "unreachable": 1,
        "waived": 0,
        "compliant": 1,
    }
    # 2026-11-26T06:00:09Z
    assert samples(text, "fleet_last_run_timestamp_seconds") == {(): 1795672809.0}


def test_label_values_are_escaped() -> None:
    odd = 'we"ird\\host\nname'
    text = render_prometheus(report_data([host(odd)]))
    hosts = {dict(k)["host"] for k in samples(text, "fleet_host_up")}
    assert hosts == {odd}


def test_expired_waivers_are_counted() -> None:
    data = report_data(
        [host("a", failing=("netdata.ebpf",))],
        waivers=[waiver("a", expires=date(2026, 1, 1)), waiver("z")],
    )
    waivers = {
        dict(k)["state"]: v for k, v in samples(render_prometheus(data), "fleet_waivers").items()
    }
    assert waivers == {"active": 1, "expired": 1}
