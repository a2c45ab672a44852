"""Parsers against captured real outputs (tests/fixtures/facts/<parser>/<case>.json).

Each case names its input (a file under tests/fixtures; captured/SOURCES.md,
captured-qemu/SOURCES.md and captured-qemu/e2e/SOURCES.md say where it came from) and the
expected parse; one test per parser walks every case of its directory.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import pytest

from fleet.audit.cpu import cpu_between, parse_proc_stat
from fleet.audit.facts import (
    event_fires,
    parse_bpftool_progs,
    parse_enabled_functions,
    parse_event_enable,
    parse_kprobes_list,
    parse_netdata_version,
    parse_probe_events,
    parse_set_event,
)
from fleet.audit.netdataconf import load_netdata_config

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def cases(parser: str) -> list[tuple[str, dict]]:
    out = []
    for path in sorted((FIXTURES / "facts" / parser).glob("*.json")):
        case = json.loads(path.read_text())
        if "input_file" in case:
            case["input"] = (FIXTURES / case["input_file"]).read_text()
        out.append(pytest.param(case, id=path.stem))
    return out


@pytest.mark.parametrize("case", cases("set_event"))
def test_set_event_lists_one_enabled_event_per_line(case: dict) -> None:
    events = parse_set_event(case["input"])
    assert len(events) == case["expected_len"]
    assert events[: len(case["expected_first"])] == case["expected_first"]


@pytest.mark.parametrize("case", cases("probe_events"))
def test_probe_event_definitions_parse_kind_group_event_target(case: dict) -> None:
    got = [
        {k: v for k, v in asdict(e).items() if k != "source"}
        for e in parse_probe_events(case["input"], case["source"])
    ]
    assert got == case["expected"]


@pytest.mark.parametrize("case", cases("kprobes_list"))
def test_kprobes_list_lines_keep_type_symbol_offset_module_flags(case: dict) -> None:
    got = [
        asdict(e) | {"armed_candidate": e.armed_candidate}
        for e in parse_kprobes_list(case["input"])
    ]
    for g in got:
        g["flags"] = list(g["flags"])
    assert got == case["expected"]


@pytest.mark.parametrize("case", cases("event_enable"))
def test_event_enable_state_and_whether_its_probe_fires(case: dict) -> None:
    # "0*": disabled, but a trigger (here a hist trigger) keeps the event, and so its
    # probe, live: the capture's kprobe_profile kept counting hits in that state.
    state = parse_event_enable(case["input"])
    assert state == case["expected"]
    assert event_fires(state) is case["fires"]


@pytest.mark.parametrize("case", cases("proc_stat"))
def test_proc_stat_pair_gives_per_cpu_ticks_and_shares(case: dict) -> None:
    first = parse_proc_stat(case["input"])
    second = parse_proc_stat((FIXTURES / case["second_file"]).read_text())
    assert sorted(first) == sorted(second) == case["expected_lines"]
    assert asdict(first["cpu0"]) == case["expected_cpu0"]
    figures = cpu_between(first, second)
    assert {k: getattr(figures, k) for k in case["expected"]} == case["expected"]
    assert [c.system_pct for c in figures.per_cpu] == case["expected_per_cpu_system_pct"]


@pytest.mark.parametrize("case", cases("bpftool_progs"))
def test_bpftool_json_programs_and_tracing_types(case: dict) -> None:
    progs = parse_bpftool_progs(case["input"])
    if case["expected_types"] is not None:
        assert sorted({p.type for p in progs}) == case["expected_types"]
    assert sum(p.tracing for p in progs) == case["expected_tracing_count"]


@pytest.mark.parametrize("case", cases("netdata_version"))
def test_netdata_version_from_dash_v_output(case: dict) -> None:
    assert parse_netdata_version(case["input"]) == tuple(case["expected"])


def test_netdata_136_stock_ebpf_conf_turns_socket_collector_on() -> None:
    conf = load_netdata_config((FIXTURES / "captured/netdata-v1.36.1/ebpf.d.conf").read_bytes())
    assert conf.get("global", "ebpf load mode").value == "entry"  # type: ignore[union-attr]
    assert conf.boolean("ebpf programs", "socket", False)
    assert not conf.boolean("ebpf programs", "network connections", True)


def test_debian_netdata_conf_has_no_plugins_section() -> None:
    path = FIXTURES / "captured/netdata-debian12/etc/netdata/netdata.conf"
    conf = load_netdata_config(path.read_bytes())
    assert "plugins" not in conf.sections
    assert conf.get("global", "run as user").value == "netdata"  # type: ignore[union-attr]


def test_bpftool_non_list_json_is_rejected() -> None:
    with pytest.raises(ValueError, match="list"):
        parse_bpftool_progs('{"error": "x"}')


@pytest.mark.parametrize("case", cases("enabled_functions"))
def test_enabled_functions_name_flags_and_trampoline_owner(case: dict) -> None:
    got = [
        asdict(f) | {"flags": list(f.flags), "owner": f.owner}
        for f in parse_enabled_functions(case["input"])
    ]
    assert got == case["expected"]


def test_fentry_trampoline_continuation_line_names_the_bpf_trampoline() -> None:
    # Shape from kernel/trace/ftrace.c t_show (direct call); the capture kernels refused
    # fentry attachment, so this one is written from the source, not captured. Up to 6.2
    # t_show prints " (%ld)%s%s%s" with " R"/"  ", " I"/"  ", " D"/"  " (the captured
    # kprobe lines, "(1) R    \t", show that layout). A BPF trampoline's ops on 6.1 are
    # register_ftrace_direct_multi()'s MULTI_FLAGS, FTRACE_OPS_FL_DIRECT | _SAVE_REGS, and
    # SAVE_REGS sets the record's R flag: a direct call reads "(1) R   D\t".
    text = (
        "tcp_v4_connect (1) R   D\ttramp: ftrace_regs_caller+0x0/0x65"
        " (call_direct_funcs+0x0/0x20)\n"
        "\tdirect-->bpf_trampoline_6442516263+0x0/0x89\n"
    )
    (f,) = parse_enabled_functions(text)
    assert (f.name, f.flags, f.direct, f.owner) == (
        "tcp_v4_connect",
        ("R", "D"),
        "bpf_trampoline_6442516263",
        "bpf-trampoline",
    )


def test_kprobes_list_module_and_gone_flags_from_report_probe_format() -> None:
    # report_probe (kernel/kprobes.c) prints the module name before the flags; no capture
    # kernel had a module probe, so this line is written from the source.
    (e,) = parse_kprobes_list("ffffffffc0a41020  k  nf_hook_slow+0x4  nf_tables [GONE]\n")
    assert (e.symbol, e.offset, e.module, e.flags, e.armed_candidate) == (
        "nf_hook_slow",
        4,
        "nf_tables",
        ("GONE",),
        False,
    )
