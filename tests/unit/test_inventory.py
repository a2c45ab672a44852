"""Tests for fleet.config.inventory: loading an Ansible YAML inventory and selecting hosts."""

from __future__ import annotations

import re
import socket
from pathlib import Path

import pytest

from fleet.config.inventory import (
    EncryptedValue,
    Host,
    Inventory,
    default_inventory_path,
    load_inventory,
    parse_cpu_list,
)
from fleet.errors import InventoryError, UsageError

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "inventory"


def fixture(name: str) -> Path:
    return FIXTURES / name


def load(name: str) -> Inventory:
    return load_inventory(fixture(name))


def load_error(path: Path) -> str:
    with pytest.raises(InventoryError) as info:
        load_inventory(path)
    return str(info.value)


@pytest.fixture
def nested() -> Inventory:
    return load("nested.yml")


@pytest.fixture
def precedence() -> Inventory:
    return load("precedence.yml")


@pytest.fixture
def values(monkeypatch: pytest.MonkeyPatch) -> Inventory:
    monkeypatch.setenv("HOME", "/home/auditor")
    return load("values.yml")


# --- structure ---------------------------------------------------------------------------


def test_hosts_keep_the_order_they_first_appear_in_the_file(nested: Inventory) -> None:
    assert list(nested.hosts) == [
        "bastion",
        "ams-proxy1",
        "ams-proxy2",
        "fra-proxy1",
        "fra-proxy2",
        "mon1",
        "lab-proxy",
    ]


def test_nested_children_put_a_host_in_every_ancestor_group(nested: Inventory) -> None:
    assert nested.hosts["fra-proxy2"].groups == (
        "all",
        "canary",
        "fra",
        "fra_canary",
        "proxies",
    )


def test_host_listed_in_several_groups_is_one_host_in_all_of_them(nested: Inventory) -> None:
    assert nested.hosts["ams-proxy1"].groups == ("all", "ams", "monitoring", "proxies")
    assert nested.groups["monitoring"] == ("ams-proxy1", "mon1")


def test_top_level_group_other_than_all_is_a_child_of_all(nested: Inventory) -> None:
    assert nested.hosts["lab-proxy"].groups == ("all", "canary")
    assert "lab-proxy" in nested.groups["all"]


def test_groups_map_to_their_hosts_through_children_in_inventory_order(
    nested: Inventory,
) -> None:
    assert nested.groups == {
        "all": (
            "bastion",
            "ams-proxy1",
            "ams-proxy2",
            "fra-proxy1",
            "fra-proxy2",
            "mon1",
            "lab-proxy",
        ),
        "proxies": ("ams-proxy1", "ams-proxy2", "fra-proxy1", "fra-proxy2"),
        "ams": ("ams-proxy1", "ams-proxy2"),
        "fra": ("fra-proxy1", "fra-proxy2"),
        "fra_canary": ("fra-proxy2",),
        "lon": (),
        "monitoring": ("ams-proxy1", "mon1"),
        "canary": ("fra-proxy2", "lab-proxy"),
        "ungrouped": ("bastion",),
    }


def test_host_in_no_group_but_all_is_in_ungrouped_like_ansible(nested: Inventory) -> None:
    assert nested.hosts["bastion"].groups == ("all", "ungrouped")


def test_host_without_vars_gets_every_default(nested: Inventory) -> None:
    expected = Host(
        name="bastion",
        address="bastion",
        port=22,
        user=None,
        key_file=None,
        become=False,
        groups=("all", "ungrouped"),
        vars={},
        fleet_root="/",
        known_hosts=None,
        netdata_restart="systemctl restart netdata",
        cpus=None,
        cpus_text=None,
    )
    assert nested.hosts["bastion"] == expected
    assert dict(nested.hosts["bastion"].vars) == {}


def test_inventory_remembers_its_path(nested: Inventory) -> None:
    assert nested.path == fixture("nested.yml")


# --- var precedence ----------------------------------------------------------------------


def test_host_vars_override_group_vars(precedence: Inventory) -> None:
    assert precedence.hosts["fra-proxy1"].vars["level"] == "host"


def test_child_group_vars_override_parent_group_vars(precedence: Inventory) -> None:
    assert precedence.hosts["fra-proxy2"].vars["level"] == "fra"


def test_group_vars_override_all_vars(precedence: Inventory) -> None:
    assert precedence.hosts["proxy-direct"].vars["level"] == "proxies"


def test_all_vars_apply_when_nothing_nearer_sets_them(precedence: Inventory) -> None:
    assert dict(precedence.hosts["loner"].vars) == {"level": "all", "only_all": "from-all"}
    assert precedence.hosts["fra-proxy2"].vars["only_all"] == "from-all"
    assert precedence.hosts["fra-proxy2"].vars["only_proxies"] == "from-proxies"


def test_same_depth_groups_later_name_alphabetically_wins(precedence: Inventory) -> None:
    # alpha comes later in the file, beta sorts later: beta must win.
    assert precedence.hosts["fra-proxy2"].vars["tie"] == "beta"


def test_deeper_group_beats_shallower_group_whatever_its_name(precedence: Inventory) -> None:
    assert precedence.hosts["fra-proxy1"].groups == ("all", "fra", "proxies", "zz_top")
    assert precedence.hosts["fra-proxy1"].vars["nearness"] == "fra"


def test_host_vars_given_in_several_places_merge_and_later_wins(
    precedence: Inventory,
) -> None:
    host_vars = precedence.hosts["fra-proxy3"].vars
    assert (host_vars["first"], host_vars["second"], host_vars["third"]) == ("one", "two", "two")


def test_group_defined_in_several_places_merges_its_vars(precedence: Inventory) -> None:
    assert precedence.hosts["fra-proxy2"].vars["fra_note"] == "merged"
    assert precedence.hosts["fra-proxy2"].vars["level"] == "fra"


def test_merged_vars_are_read_only_and_host_stays_hashable(precedence: Inventory) -> None:
    host = precedence.hosts["loner"]
    with pytest.raises(TypeError):
        host.vars["level"] = "changed"  # type: ignore[index]
    assert {host, host} == {host}


# --- connection and fleet keys ----------------------------------------------------------


def test_connection_and_fleet_keys_are_read(values: Inventory) -> None:
    assert values.hosts["custom"] == Host(
        name="custom",
        address="192.0.2.10",
        port=2222,
        user="root",
        key_file="/home/auditor/.ssh/fleet_ed25519",
        become=True,
        groups=("all", "ungrouped"),
        vars={},
        fleet_root="/srv/chroot",
        known_hosts="/home/auditor/.ssh/fleet_known_hosts",
        netdata_restart="rc-service netdata restart",
        cpus=frozenset({0, 2, 4, 5, 6, 7}),
        cpus_text="0,2,4-7",
    )


def test_port_given_as_a_string_of_digits_becomes_an_int(values: Inventory) -> None:
    assert values.hosts["custom"].port == 2222
    assert values.hosts["custom"].vars["ansible_port"] == "2222"


def test_group_user_applies_when_host_sets_none(values: Inventory) -> None:
    assert values.hosts["plain"].user == "ops"
    assert values.hosts["plain"].address == "plain"


@pytest.mark.parametrize(
    ("host", "become"),
    [
        ("custom", True),  # "Yes"
        ("become-yaml-on", True),  # on
        ("become-string-off", False),  # "OFF"
        ("become-int-one", True),  # 1
        ("become-string-zero", False),  # "0"
        ("become-null", False),  # empty value: the default
        ("plain", False),  # not set
    ],
)
def test_ansible_become_accepts_ansible_booleans(
    values: Inventory, host: str, become: bool
) -> None:
    assert values.hosts[host].become is become


def test_fleet_cpus_is_parsed_and_kept_as_written(values: Inventory) -> None:
    assert values.hosts["cpus-range"].cpus == frozenset(range(48))
    assert values.hosts["cpus-range"].cpus_text == "0-47"
    assert values.hosts["cpus-int"].cpus == frozenset({3})
    assert values.hosts["cpus-int"].cpus_text == "3"


def test_old_ansible_spellings_are_read_and_host_level_beats_group_level(
    values: Inventory,
) -> None:
    host = values.hosts["legacy-names"]
    # all: sets ansible_user: ops; the host's ansible_ssh_user is nearer.
    assert (host.address, host.port, host.user, host.key_file) == (
        "192.0.2.11",
        2200,
        "legacy",
        "/keys/legacy",
    )
    # vars show the winning value under the modern name too (ssh.py checks "ansible_host").
    assert (host.vars["ansible_host"], host.vars["ansible_user"]) == ("192.0.2.11", "legacy")
    assert host.vars["ansible_ssh_user"] == "legacy"


def test_host_ranges_expand_like_ansible() -> None:
    inventory = load("ranges.yml")
    assert list(inventory.hosts)[:9] == [
        "web01.example.net",
        "web02.example.net",
        "web03.example.net",
        "db-a",
        "db-b",
        "db-c",
        "cache0",
        "cache5",
        "cache10",
    ]


def test_name_colon_port_sets_the_port_and_explicit_port_wins() -> None:
    hosts = load("ranges.yml").hosts
    assert (hosts["edge1"].address, hosts["edge1"].port) == ("edge1", 2222)
    assert hosts["edge2"].port == 2200
    assert (hosts["2001:db8::5"].address, hosts["2001:db8::5"].port) == ("2001:db8::5", 2201)
    assert (hosts["2001:db8::6"].address, hosts["2001:db8::6"].port) == ("2001:db8::6", 22)


@pytest.mark.parametrize(
    ("patterns", "expected"),
    [
        ("2001:db8::6", ["2001:db8::6"]),
        ("web,!2001:db8::6,!2001:db8::5,!db-*,!web0*,!cache*", ["edge1", "edge2"]),
        ("cache[a05]:edge[!1]", ["cache0", "cache5", "edge2"]),
    ],
)
def test_ipv6_host_and_bracket_class_are_single_pattern_terms(
    patterns: str, expected: list[str]
) -> None:
    assert [host.name for host in load("ranges.yml").select(patterns)] == expected


def test_yaml_merge_keys_unsafe_and_vault_tags_load() -> None:
    host = load("anchors.yml").hosts["proxy1"]
    assert (host.user, host.cpus_text) == ("ops", "4-7")
    assert host.vars["motd"] == "{{ not a template }}"
    secret = host.vars["ansible_become_password"]
    assert isinstance(secret, EncryptedValue)
    assert secret.ciphertext.startswith("$ANSIBLE_VAULT;1.1;AES256\n")


# --- parse_cpu_list ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "cpus"),
    [
        ("0-47", set(range(48))),
        ("0,2,4-7", {0, 2, 4, 5, 6, 7}),
        ("5", {5}),
        (" 1 , 3-4 ", {1, 3, 4}),
        ("2-2,0-3", {0, 1, 2, 3}),
    ],
)
def test_parse_cpu_list_accepts_linux_cpu_lists(text: str, cpus: set[int]) -> None:
    assert parse_cpu_list(text) == frozenset(cpus)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty cpu list"),
        ("7-5", "bad cpu list '7-5': range '7-5' ends before it starts"),
        ("0-", "bad cpu list '0-': '0-' is not a cpu number or a range like 4-7"),
        ("0,,2", "bad cpu list '0,,2': '' is not a cpu number or a range like 4-7"),
        ("cpu0", "bad cpu list 'cpu0': 'cpu0' is not a cpu number or a range like 4-7"),
        ("0-70000", "bad cpu list '0-70000': cpu 70000 is above 65535"),
    ],
)
def test_parse_cpu_list_rejects_bad_syntax_with_a_clear_message(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        parse_cpu_list(text)


# --- errors ------------------------------------------------------------------------------


def test_yaml_syntax_error_names_file_and_line() -> None:
    path = fixture("bad_syntax.yml")
    assert load_error(path) == (
        f"{path}:5: expected <block end>, but found '<block mapping start>' "
        "(while parsing a block mapping)"
    )


@pytest.mark.parametrize(
    ("name", "line", "message"),
    [
        (
            "bad_port.yml",
            5,
            "host 'proxy2': ansible_port must be an integer from 1 to 65535, got 70000",
        ),
        (
            # Set in group vars: the line is where the group sets it, the message names the host.
            "bad_port_group.yml",
            5,
            "host 'proxy1': ansible_port must be an integer from 1 to 65535, got 'ssh'",
        ),
        (
            "bad_become.yml",
            4,
            "host 'proxy1': ansible_become must be a boolean (true/false, yes/no, on/off, 1/0), "
            "got 'maybe'",
        ),
        (
            "bad_root.yml",
            4,
            "host 'proxy1': fleet_root must be an absolute path, got 'srv/chroot'",
        ),
        (
            "bad_cpus.yml",
            4,
            "host 'proxy1': fleet_cpus: bad cpu list '0-3,7-5': range '7-5' ends before it starts",
        ),
        (
            "hosts_list.yml",
            5,
            "group 'proxies': hosts must be a mapping of host names, got a list",
        ),
        (
            "host_vars_string.yml",
            4,
            "host 'proxy2': vars must be a mapping, got 'ansible_port=2222'",
        ),
        (
            "unknown_key.yml",
            4,
            "group 'proxies': unknown key 'host' (expected hosts, children, vars)",
        ),
        (
            "duplicate_key.yml",
            6,
            "duplicate key 'proxy1' (first given at line 3)",
        ),
        (
            "group_not_mapping.yml",
            6,
            "group 'sites' must be a mapping with hosts, children or vars, got a list",
        ),
        (
            "cycle.yml",
            9,
            "group 'a' is its own ancestor (a -> b -> a)",
        ),
        (
            "bad_range.yml",
            3,
            "group 'all': host 'web[3:1]': host range '[3:1]' must have begin <= end",
        ),
        (
            "top_list.yml",
            1,
            "top level must be a mapping of groups, got a list",
        ),
        (
            "vault_user.yml",
            4,
            "host 'proxy1': ansible_user is vault-encrypted; "
            "fleet cannot decrypt Ansible Vault values",
        ),
    ],
)
def test_structural_error_names_file_line_and_culprit(name: str, line: int, message: str) -> None:
    path = fixture(name)
    assert load_error(path) == f"{path}:{line}: {message}"


def test_inventory_error_is_a_usage_error_on_one_line() -> None:
    with pytest.raises(UsageError) as info:
        load_inventory(fixture("bad_syntax.yml"))
    assert "\n" not in str(info.value)


def test_missing_file_is_reported() -> None:
    path = fixture("does_not_exist.yml")
    assert load_error(path) == f"{path}: no such inventory file"


def test_unreadable_path_reports_the_os_error(tmp_path: Path) -> None:
    # open() of a unix socket fails with ENXIO, even for root.
    sock = tmp_path / "hosts"
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(sock))
        assert load_error(sock) == f"{sock}: No such device or address"


def test_directory_without_sources_defines_no_hosts(tmp_path: Path) -> None:
    assert load_error(tmp_path) == f"{tmp_path}: inventory defines no hosts"


def test_empty_file_defines_no_hosts() -> None:
    path = fixture("empty.yml")
    assert load_error(path) == f"{path}: inventory defines no hosts"


def test_groups_without_any_host_define_no_hosts() -> None:
    path = fixture("no_hosts.yml")
    assert load_error(path) == f"{path}: inventory defines no hosts"


def test_invalid_utf8_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yml"
    path.write_bytes(b"all:\n  hosts:\n    caf\xe9:\n")
    assert load_error(path) == f"{path}:3: not valid UTF-8 text"


def test_path_may_be_given_as_a_string(tmp_path: Path) -> None:
    path = tmp_path / "hosts.yml"
    path.write_text("all:\n  hosts:\n    proxy1:\n")
    inventory = load_inventory(str(path))
    assert (inventory.path, list(inventory.hosts)) == (path, ["proxy1"])


# --- default path ------------------------------------------------------------------------


def test_default_inventory_path_uses_fleet_inventory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLEET_INVENTORY", "/etc/fleet/prod.yml")
    assert default_inventory_path() == Path("/etc/fleet/prod.yml")


def test_default_inventory_path_without_env_var(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FLEET_INVENTORY", raising=False)
    assert default_inventory_path() == Path("inventory/hosts.yml")


def test_default_inventory_path_ignores_empty_env_var(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLEET_INVENTORY", "")
    assert default_inventory_path() == Path("inventory/hosts.yml")


# --- target patterns ---------------------------------------------------------------------

ALL_HOSTS = ["bastion", "ams-proxy1", "ams-proxy2", "fra-proxy1", "fra-proxy2", "mon1", "lab-proxy"]


@pytest.mark.parametrize(
    ("patterns", "expected"),
    [
        (None, ALL_HOSTS),
        ([], ALL_HOSTS),
        ("all", ALL_HOSTS),
        ("*", ALL_HOSTS),
        ("ams-proxy1", ["ams-proxy1"]),
        ("*-proxy1", ["ams-proxy1", "fra-proxy1"]),
        ("?ms-proxy[!3]", ["ams-proxy1", "ams-proxy2"]),
        ("fra-proxy[!1]", ["fra-proxy2"]),
        ("fra", ["fra-proxy1", "fra-proxy2"]),
        ("proxies", ["ams-proxy1", "ams-proxy2", "fra-proxy1", "fra-proxy2"]),
        ("*canary", ["fra-proxy2", "lab-proxy"]),
        ("ungrouped", ["bastion"]),
        ("mon1,ams", ["ams-proxy1", "ams-proxy2", "mon1"]),
        ("mon1:ams", ["ams-proxy1", "ams-proxy2", "mon1"]),
        (" mon1 , ams ", ["ams-proxy1", "ams-proxy2", "mon1"]),
        ("proxies:!fra", ["ams-proxy1", "ams-proxy2"]),
        ("proxies,!fra_canary", ["ams-proxy1", "ams-proxy2", "fra-proxy1"]),
        ("proxies:&monitoring", ["ams-proxy1"]),
        ("!fra:proxies", ["ams-proxy1", "ams-proxy2"]),
        ("!proxies", ["bastion", "mon1", "lab-proxy"]),
        ("&canary", ["fra-proxy2", "lab-proxy"]),
        ("all:&proxies:!ams-proxy1:!fra", ["ams-proxy2"]),
        (["ams-proxy2", "mon1"], ["ams-proxy2", "mon1"]),
        (["proxies:!ams", "bastion"], ["bastion", "fra-proxy1", "fra-proxy2"]),
    ],
)
def test_select_follows_ansible_pattern_semantics(
    nested: Inventory, patterns: str | list[str] | None, expected: list[str]
) -> None:
    assert [host.name for host in nested.select(patterns)] == expected


def test_select_returns_the_inventory_host_records(nested: Inventory) -> None:
    assert nested.select("mon1") == [nested.hosts["mon1"]]


@pytest.mark.parametrize(
    ("patterns", "culprit"),
    [
        ("web9", "web9"),
        ("proxies:web9", "web9"),
        ("proxies:&web9", "web9"),
        ("proxies:!web9", "web9"),
        ("web*", "web*"),
        (["proxies", "mon2"], "mon2"),
    ],
)
def test_any_term_matching_no_host_or_group_is_an_error(
    nested: Inventory, patterns: str | list[str], culprit: str
) -> None:
    with pytest.raises(InventoryError) as info:
        nested.select(patterns)
    assert str(info.value) == f"{nested.path}: pattern '{culprit}' matches no host or group"


@pytest.mark.parametrize(
    ("patterns", "shown"),
    [
        ("ams:&fra", "ams:&fra"),
        ("proxies:!proxies", "proxies:!proxies"),
        ("lon", "lon"),  # the group exists but holds no host
        (["ams", "&fra"], "ams,&fra"),
    ],
)
def test_empty_selection_is_an_error(
    nested: Inventory, patterns: str | list[str], shown: str
) -> None:
    with pytest.raises(InventoryError) as info:
        nested.select(patterns)
    assert str(info.value) == f"{nested.path}: pattern '{shown}' selects no hosts"


def test_operator_without_a_name_is_an_error(nested: Inventory) -> None:
    with pytest.raises(InventoryError) as info:
        nested.select("proxies:!")
    assert str(info.value) == f"{nested.path}: pattern '!' names no host or group"


def test_example_inventory_loads_and_selects_proxies() -> None:
    example = Path(__file__).resolve().parents[2] / "inventory" / "hosts.example.yml"
    inventory = load_inventory(example)
    selected = inventory.select("proxies:!canary")
    assert [host.name for host in selected] == [
        "ams-proxy02",
        "fra-proxy01",
        "fra-proxy02",
        "lon-proxy02",
    ]
    assert [(host.become, host.cpus_text, host.port) for host in selected] == [
        (True, "0-47", 22),
        (True, "0-47", 22),
        (True, "0-47", 22),
        (True, "0-31", 2222),
    ]
    assert inventory.hosts["mon01"].netdata_restart == "rc-service netdata restart"
