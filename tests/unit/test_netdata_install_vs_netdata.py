"""A running netdata's command line, followed as netdata follows it.

The judge is Debian's netdata 1.37.1 (tests/netdata_oracle.py): started with generated
`-c FILE` and `-W set SECTION KEY VALUE` sequences and asked `-W get`, it prints the value it
ends up with; fleet.audit.netdata_install must arrive at the same value from the same argv.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fleet.audit.netdata_install import merged_config, parse_daemon
from tests.netdata_oracle import Netdata, netdata_oracle

ABSENT = "\x01absent"
KEYS = ("ebpf", "enable running new plugins")


@pytest.fixture(scope="module")
def netdata() -> Netdata:
    return netdata_oracle()


_value = st.sampled_from(["yes", "no", "on demand", "1", "auto"])
# A file: [plugins] with each key set, commented or left out.
_file = st.fixed_dictionaries(
    {k: st.one_of(st.none(), _value, _value.map(lambda v: "#" + v)) for k in KEYS}
)
_layer = st.one_of(
    st.tuples(st.just("c"), _file),
    st.tuples(st.just("set"), st.tuples(st.sampled_from(KEYS), _value)),
    st.tuples(st.just("flag"), st.sampled_from(["-D", "-P/run/netdata.pid", "-p", "19999"])),
)


def _file_text(keys: dict[str, str | None]) -> str:
    lines = ["[plugins]"]
    for key, value in keys.items():
        if value is not None:
            lines.append(
                f"\t# {key} = {value[1:]}" if value.startswith("#") else f"\t{key} = {value}"
            )
    return "\n".join(lines) + "\n"


def _argv(tmp: Path, layers: list[tuple[str, object]]) -> tuple[list[str], dict[str, str]]:
    args: list[str] = []
    texts: dict[str, str] = {}
    for i, (kind, what) in enumerate(layers):
        if kind == "c":
            path = tmp / f"layer{i}.conf"
            texts[str(path)] = _file_text(what)  # type: ignore[arg-type]
            path.write_text(texts[str(path)])
            args += ["-c", str(path)]
        elif kind == "set":
            key, value = what  # type: ignore[misc]
            args += ["-W", "set", "plugins", key, value]
        elif what == "-p":
            args += ["-p", "19999"]
        else:
            args.append(str(what))
    return args, texts


@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(layers=st.lists(_layer, max_size=4))
def test_a_daemons_argv_loads_what_netdata_loads(
    netdata: Netdata, tmp_path: Path, layers: list[tuple[str, object]]
) -> None:
    # Without -c, netdata loads /etc/netdata/netdata.conf; none exists here, nor in the model.
    assert not Path("/etc/netdata/netdata.conf").exists()
    args, texts = _argv(tmp_path, layers)
    daemon = parse_daemon(1, ("/usr/sbin/netdata", *args))
    assert daemon is not None and daemon.problem is None
    conf = merged_config(daemon.layers, texts)
    for key in KEYS:
        held = netdata.get_after(args, "plugins", key, ABSENT)
        ours = conf.get("plugins", key)
        assert (ours.value.encode() if ours else ABSENT.encode()) == held, (args, key)


def test_the_spawn_server_and_unknown_options_are_not_guessed() -> None:
    assert parse_daemon(9, ("/usr/sbin/netdata", "--special-spawn-server")) is None
    odd = parse_daemon(9, ("/usr/sbin/netdata", "-X"))
    assert odd is not None and odd.problem and "-X" in odd.problem
    relative = parse_daemon(9, ("/opt/netdata/bin/srv/netdata", "-c", "netdata.conf"))
    assert relative is not None and relative.install == "static" and relative.problem
    bundled = parse_daemon(9, ("netdata", "-Dc/srv/nd.conf"))
    assert bundled is not None and bundled.files == ["/srv/nd.conf"]
