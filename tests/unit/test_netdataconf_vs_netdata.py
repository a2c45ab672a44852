"""fleet reads netdata.conf as Debian's netdata 1.37.1 binary reads it, every time.

The real binary is the oracle (`netdata -c FILE -W get plugins KEY DEFAULT`): named cases
(tests/fixtures/netdata_conf/, each a way fleet once passed a host whose plugin runs) and
generated variants built from what trips parsers up: case, inner spaces, comment styles,
control characters Python treats as line breaks, CRLF, NUL, lines around fgets' 8191 bytes,
duplicate keys, netdata's boolean words.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fleet.audit.netdataconf import load_netdata_config, plugin_enabled, set_netdata_value
from tests.netdata_oracle import Netdata, netdata_oracle

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "netdata_conf"
CASES = sorted(FIXTURES.glob("*.conf"))
ABSENT = "\x01absent"  # a default no file can hold: tells "unset" from any real value


@pytest.fixture(scope="module")
def netdata() -> Netdata:
    return netdata_oracle()


def _agrees(netdata: Netdata, path: Path) -> None:
    conf = load_netdata_config(path.read_bytes())
    for key in ("ebpf", "enable running new plugins"):
        held = netdata.get(path, "plugins", key, ABSENT)
        ours = conf.get("plugins", key)
        assert (ours.value.encode("utf-8", "surrogateescape") if ours else ABSENT.encode()) == held
    assert plugin_enabled(conf, "ebpf")[0] == netdata.plugin_enabled(path, "ebpf")


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_named_case_reads_as_netdata_reads_it(netdata: Netdata, path: Path) -> None:
    _agrees(netdata, path)


def test_the_cases_that_once_passed_a_running_plugin_now_say_it_runs() -> None:
    runs = {
        p.stem
        for p in CASES
        if plugin_enabled(load_netdata_config(p.read_bytes()), "ebpf")[0]
    }
    assert {
        "comment-with-cr-before-off",
        "comment-with-ff-before-off",
        "comment-with-u2028-before-off",
        "value-on-demand",
        "section-upper-case",
        "key-upper-case",
        "section-inner-spaces",
        "long-comment-hides-yes",
        "semicolon-is-not-a-comment",
        "last-duplicate-wins",
        "nul-ends-the-line",
        "key-outside-sections",
        "debian-default-commented",
    } <= runs
    assert {"value-one-is-off", "crlf-file", "new-plugins-off"}.isdisjoint(runs)


_SPACE = st.sampled_from(["", " ", "\t", "  ", "\r", "\x0b", "\x0c", " \t "])
_KEY = st.sampled_from(
    ["ebpf", "EBPF", "Ebpf", "ebpf ", "ebpf-go", "ebpf2", "#ebpf", ";ebpf",
     "enable running new plugins", "Enable running new plugins", "apps"]
)
_VALUE = st.sampled_from(
    ["yes", "no", "YES", "No", "on", "off", "true", "false", "1", "0", "auto", "on demand",
     "On Demand", "ondemand", "", "yes # comment", "no;", "y", "=yes"]
)
_SECTION = st.sampled_from(
    ["[plugins]", "[PLUGINS]", "[ plugins ]", "[plugins", "plugins]", "[global]",
     "[plugin:ebpf]", "[]", "[plugins] # x"]
)
_JUNK = st.text(
    alphabet=st.sampled_from(list("ab =#;[]\t\r\x0b\x0c\x00\u2028\u0085\u00e9")), max_size=12
)


@st.composite
def _line(draw: st.DrawFn) -> str:
    kind = draw(st.sampled_from(["setting", "setting", "setting", "section", "comment", "junk",
                                 "long"]))
    lead, trail = draw(_SPACE), draw(_SPACE)
    if kind == "section":
        return lead + draw(_SECTION) + trail
    if kind == "comment":
        return lead + draw(st.sampled_from(["#", "# ", ";", "//"])) + draw(_JUNK) + (
            "ebpf = no" if draw(st.booleans()) else ""
        )
    if kind == "junk":
        return draw(_JUNK)
    setting = f"{draw(_KEY)}{draw(st.sampled_from([' = ', '=', ' ', ' == ', '= ']))}{draw(_VALUE)}"
    if kind == "long":
        # Around fgets' 8191-byte reads: the tail of a long line is a line of its own.
        pad = draw(st.integers(min_value=8189, max_value=8193)) - len(lead)
        return lead + "#" + "x" * (pad - 1) + setting
    return lead + setting + trail


@st.composite
def _netdata_conf(draw: st.DrawFn) -> bytes:
    lines = draw(st.lists(_line(), min_size=1, max_size=12))
    if draw(st.booleans()):
        lines.insert(0, "[plugins]")
    end = draw(st.sampled_from(["\n", "\r\n"]))
    return (end.join(lines) + draw(st.sampled_from(["", end]))).encode()


def _examples(n: int) -> settings:
    """n generated files; the binary's runs are slow for hypothesis' default deadline."""
    return settings(
        max_examples=n,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )


@_examples(300)
@given(data=_netdata_conf())
def test_generated_netdata_conf_reads_as_netdata_reads_it(
    netdata: Netdata, tmp_path: Path, data: bytes
) -> None:
    path = tmp_path / "netdata.conf"
    path.write_bytes(data)
    _agrees(netdata, path)


@_examples(150)
@given(data=_netdata_conf())
def test_the_remediation_edit_turns_the_plugin_off_for_the_real_netdata(
    netdata: Netdata, tmp_path: Path, data: bytes
) -> None:
    path = tmp_path / "netdata.conf"
    path.write_bytes(set_netdata_value(data.decode(), "plugins", "ebpf", "no").encode())
    assert netdata.get(path, "plugins", "ebpf", ABSENT) == b"no"
    assert not netdata.plugin_enabled(path, "ebpf")
