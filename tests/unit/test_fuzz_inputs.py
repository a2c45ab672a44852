"""Bad input, fuzzed: damaged inventories (YAML and INI), playbooks, waiver files and host
patterns either load or fail as the project's usage error -- one line naming the file (exit 2
through the CLI) -- never another exception, never a traceback.

Each example starts from a real, valid file and damages it the ways files get damaged: bytes
inserted, lines dropped or repeated, values swapped for another YAML type, hostile strings.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fleet import cli
from fleet.config.inventory import load_inventory
from fleet.config.playbook import default_playbook_path, load_playbook
from fleet.errors import UsageError
from fleet.report.waivers import load_waivers

ROOT = Path(__file__).resolve().parents[2]
SEEDS = {
    "inventory.yml": (ROOT / "inventory/hosts.example.yml").read_text(),
    "inventory.ini": (ROOT / "tests/fixtures/inventory/ansible/ini_all/hosts").read_text()
    if (ROOT / "tests/fixtures/inventory/ansible/ini_all/hosts").exists()
    else "[web]\nweb1 ansible_host=192.0.2.1 ansible_port=22\n[web:vars]\nfleet_cpus=0-3\n",
    "playbook.yml": default_playbook_path().read_text(),
    "waivers.yml": (
        "waivers:\n"
        '  - host: "half-fixed-*"\n'
        "    check: netdata.ebpf\n"
        "    reason: netdata 1.37 rollout is CHG-1234\n"
        "    owner: ops@example.com\n"
        "    expires: 2026-12-31\n"
    ),
}
HOSTILE = [
    "'", '"', ";", "$(touch /tmp/x)", "`id`", "\n", "\r", "\t", "\x00", "\x0b", "\u2028",
    "\ufeff", "\udcff", "{{", "}}", "[", "]", "{", "}", ":", "- ", "&a", "*a", "!!python/object",
    "%", "@", "#", "|", ">", "-", "0-", "99999999999999999999", "-1", "~", "null", ".inf",
]  # fmt: skip
EXAMPLES = settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@st.composite
def damaged(draw: st.DrawFn, seed: str) -> bytes:
    lines = seed.split("\n")
    junk = b""
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["insert", "drop", "repeat", "retype", "truncate", "bytes"]))
        i = draw(st.integers(0, max(0, len(lines) - 1)))
        if op == "insert":
            at = draw(st.integers(0, len(lines[i])))
            lines[i] = lines[i][:at] + draw(st.sampled_from(HOSTILE)) + lines[i][at:]
        elif op == "drop" and len(lines) > 1:
            del lines[i]
        elif op == "repeat":
            lines.insert(i, lines[i])
        elif op == "retype" and ":" in lines[i]:
            key = lines[i].partition(":")[0]
            new = draw(st.sampled_from(["[]", "{}", "null", "7", "[1, {a: b}]", "yes", '""']))
            lines[i] = f"{key}: {new}"
        elif op == "truncate":
            lines = lines[: i + 1]
            lines[-1] = lines[-1][: draw(st.integers(0, len(lines[-1])))]
        elif op == "bytes":
            junk = draw(st.binary(min_size=1, max_size=16))  # not UTF-8, NUL, ...
    data = "\n".join(lines).encode("utf-8", "surrogatepass")
    return data[: len(data) // 2] + junk + data[len(data) // 2 :]


def _one_line_naming(exc: UsageError, path: Path) -> None:
    line = cli.usage_line(exc)
    assert "\n" not in line and "\x00" not in line, line
    assert path.name in line, line


def _load(kind: str, path: Path) -> Any:
    if kind.startswith("inventory"):
        inv = load_inventory(path)
        return inv.select(None)
    if kind == "playbook.yml":
        return load_playbook(path)
    return load_waivers(path)


@pytest.mark.parametrize("kind", list(SEEDS))
def test_the_seed_files_load(kind: str, tmp_path: Path) -> None:
    path = tmp_path / kind
    path.write_text(SEEDS[kind])
    _load(kind, path)


def _fuzz(kind: str) -> Any:
    @EXAMPLES
    @given(data=damaged(SEEDS[kind]))
    def run(tmp_path: Path, data: bytes) -> None:
        path = tmp_path / kind
        path.write_bytes(data)
        try:
            _load(kind, path)
        except UsageError as exc:
            _one_line_naming(exc, path)

    return run


test_a_damaged_yaml_inventory_loads_or_is_one_usage_error = _fuzz("inventory.yml")
test_a_damaged_ini_inventory_loads_or_is_one_usage_error = _fuzz("inventory.ini")
test_a_damaged_playbook_loads_or_is_one_usage_error = _fuzz("playbook.yml")
test_a_damaged_waiver_file_loads_or_is_one_usage_error = _fuzz("waivers.yml")


@EXAMPLES
@given(
    pattern=st.lists(
        st.sampled_from([*"ab*?[]!&:,~^-. \t\n\x00", "proxies", "fra-proxy01", "all"]),
        max_size=8,
    ).map("".join)
)
def test_any_host_pattern_selects_or_is_one_usage_error(tmp_path: Path, pattern: str) -> None:
    path = tmp_path / "inventory.yml"
    path.write_text(SEEDS["inventory.yml"])
    inv = load_inventory(path)
    try:
        inv.select([pattern])
    except UsageError as exc:
        line = cli.usage_line(exc)
        assert "\n" not in line and "pattern" in line, line


@settings(max_examples=40, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
@given(data=damaged(SEEDS["inventory.yml"]), pattern=st.sampled_from(["all", "", ",", "x*"]))
def test_the_cli_says_exit_2_in_one_line_never_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], data: bytes, pattern: str
) -> None:
    path = tmp_path / "inventory.yml"
    path.write_bytes(data)
    rc = cli.main(["hosts", "-i", str(path), "--limit", pattern])
    out = capsys.readouterr()
    assert rc in (0, 2), out.err
    assert "Traceback" not in out.err and "internal error" not in out.err
    if rc == 2:
        assert len(out.err.strip().splitlines()) == 1, out.err
        assert re.match(r"fleet: error: ", out.err)


def test_yaml_types_are_never_trusted_blindly() -> None:
    # The seeds are what a user has; the fuzz above damages them. Sanity: they parse as YAML.
    for name, text in SEEDS.items():
        if name.endswith(".yml"):
            assert isinstance(yaml.safe_load(text), dict)
