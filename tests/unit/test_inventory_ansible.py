"""fleet reads inventories as ansible-core does: each case is run through `ansible-inventory
--list` in the test and compared with fleet's hosts, groups and vars.

Cases are directories under tests/fixtures/inventory/ansible/. ansible-inventory must be
installed (the `test` extra has ansible-core); without it these tests fail under CI=true and
skip elsewhere, never silently.
"""

from __future__ import annotations

import json
import os
import random
import shlex
import subprocess
import sys
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from fleet.config.inventory import EncryptedValue, Host, Inventory, load_inventory
from fleet.config.inventory_ansible import find_ansible_inventory
from fleet.errors import InventoryError

CASES_DIR = Path(__file__).resolve().parent.parent / "fixtures" / "inventory" / "ansible"
# case -> the source given as -i, relative to the case directory
CASES = {
    "yaml_vars_files": "hosts.yml",
    "precedence": "hosts.yml",
    "ini_all": "hosts",
    "ini_typing": "hosts.ini",
    "directory_mixed": "inv",
    "ini_edges": "hosts.ini",
    "yaml_edges": "hosts.yml",
    "script": "inventory.sh",
    "plugin": "inventory.yml",
    "toml": "hosts.toml",
    "directory_with_script": "inv",
    "vaulted": "hosts.yml",
    "vaulted_inventory": "hosts.yml",
}
VAULT_PASSWORD = CASES_DIR / "vaulted" / "vault-password"
# Vars fleet turns into Host fields; their effective values are compared one by one.
FLEET_READS = (
    "ansible_host",
    "ansible_port",
    "ansible_user",
    "ansible_ssh_private_key_file",
    "ansible_become",
    "ansible_become_user",
    "fleet_root",
    "fleet_known_hosts",
    "fleet_netdata_restart",
    "fleet_cpus",
    "fleet_jump",
)


@dataclass(frozen=True)
class Oracle:
    returncode: int
    listing: dict[str, Any]
    stderr: str


def _ansible_inventory() -> str | None:
    return find_ansible_inventory(os.environ.get("PATH"), sys.executable)


@pytest.fixture(scope="module")
def ansible_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """An environment where ansible-inventory reads no user config and warns little."""
    exe = _ansible_inventory()
    if exe is None:
        message = "ansible-inventory is not installed (pip install -e '.[test]')"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    home = tmp_path_factory.mktemp("ansible-home")
    config = home / "ansible.cfg"
    config.write_text("[defaults]\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env.update(
        ANSIBLE_CONFIG=str(config),
        ANSIBLE_HOME=str(home),
        ANSIBLE_LOCAL_TEMP=str(home / "tmp"),
        ANSIBLE_COLLECTIONS_PATH=str(home / "collections"),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_DEPRECATION_WARNINGS="False",
        ANSIBLE_SYSTEM_WARNINGS="False",
        ANSIBLE_INVENTORY_UNPARSED_FAILED="True",
    )
    return env


def run_oracle(source: Path, env: Mapping[str, str]) -> Oracle:
    exe = _ansible_inventory()
    assert exe is not None
    done = subprocess.run(
        [exe, "-i", str(source), "--list"],
        capture_output=True,
        text=True,
        env=dict(env),
        cwd=env["ANSIBLE_HOME"],  # no group_vars/ beside the "playbook"
        timeout=120,
        check=False,
    )
    listing = json.loads(done.stdout) if done.returncode == 0 else {}
    return Oracle(done.returncode, listing, done.stderr)


@pytest.fixture(scope="module")
def oracle(ansible_env: dict[str, str]) -> dict[str, Oracle]:
    """Every case through ansible-inventory once, in parallel (each run is ~0.5 s of CPU)."""
    jobs = {case: (CASES_DIR / case / src, ansible_env) for case, src in CASES.items()}
    with_vault = {**ansible_env, "ANSIBLE_VAULT_PASSWORD_FILE": str(VAULT_PASSWORD)}
    for case in ("vaulted", "vaulted_inventory"):
        jobs[f"{case}+password"] = (CASES_DIR / case / CASES[case], with_vault)
    errors = Path(ansible_env["ANSIBLE_HOME"]) / "errors"
    for case, (files, source, _) in BAD_INPUTS.items():
        jobs[f"bad:{case}"] = (write_case(errors / case, files) / source, ansible_env)
    generated = Path(ansible_env["ANSIBLE_HOME"]) / "generated"
    for seed in GENERATED_SEEDS:
        jobs[f"generated:{seed}"] = (generated_inventory(generated / str(seed), seed), ansible_env)
    typing_file = typing_inventory(generated / "typing.ini", TYPING_SEED)
    jobs["typing"] = (typing_file, ansible_env)
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        futures = {case: pool.submit(run_oracle, *job) for case, job in jobs.items()}
        return {case: future.result() for case, future in futures.items()}


@pytest.fixture
def fleet_env(ansible_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The same environment for fleet (its fallback runs ansible-inventory too)."""
    for key in [k for k in os.environ if k.startswith("ANSIBLE_")]:
        monkeypatch.delenv(key)
    for key, value in ansible_env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(ansible_env["ANSIBLE_HOME"])
    yield


# --- what Ansible says, in fleet's terms ---------------------------------------------------


def ansible_groups(listing: Mapping[str, Any]) -> dict[str, set[str]]:
    """host -> every group holding it (through children), as Host.groups counts them."""
    groups = {name: entry for name, entry in listing.items() if name != "_meta"}

    def hosts_of(name: str, seen: frozenset[str]) -> set[str]:
        entry = groups.get(name) or {}
        found = set(entry.get("hosts", []))
        for child in entry.get("children", []):
            if child not in seen:
                found |= hosts_of(child, seen | {child})
        return found

    result: dict[str, set[str]] = {}
    for host in listing["_meta"]["hostvars"]:
        result[host] = {"all"}
    for name in groups:
        for host in hosts_of(name, frozenset({name})):
            result.setdefault(host, {"all"}).add(name)
    return result


def as_json(value: Any) -> Any:
    """fleet's values as ansible-inventory prints them (vaulted values as __ansible_vault)."""

    def default(obj: Any) -> Any:
        if isinstance(obj, EncryptedValue):
            return {"__ansible_vault": obj.ciphertext}
        if isinstance(obj, Mapping):
            return dict(obj)
        raise TypeError(repr(obj))

    return json.loads(json.dumps(value, default=default))


def effective(host: Host) -> dict[str, Any]:
    return {
        "ansible_host": host.address,
        "ansible_port": host.port,
        "ansible_user": host.user,
        "ansible_ssh_private_key_file": host.key_file,
        "ansible_become": host.become,
        "ansible_become_user": host.become_user,
        "fleet_root": host.fleet_root,
        "fleet_known_hosts": host.known_hosts,
        "fleet_netdata_restart": host.netdata_restart,
        "fleet_cpus": host.cpus_text,
        "fleet_jump": host.jump,
        "ssh_args": list(host.ssh_args),
        "ansible_become_password": host.become_password,
    }


def expected_effective(name: str, hostvars: Mapping[str, Any]) -> dict[str, Any]:
    """The fields fleet derives, derived independently from Ansible's values."""
    become = hostvars.get("ansible_become", False)
    if isinstance(become, str):
        become = become.lower() in ("yes", "true", "on", "1")
    key_file = hostvars.get("ansible_ssh_private_key_file")
    known_hosts = hostvars.get("fleet_known_hosts")
    cpus = hostvars.get("fleet_cpus")
    return {
        "ansible_host": hostvars.get("ansible_host", name),
        "ansible_port": int(hostvars.get("ansible_port", 22)),
        "ansible_user": hostvars.get("ansible_user"),
        "ansible_ssh_private_key_file": key_file and os.path.expanduser(key_file),
        "ansible_become": bool(become),
        "ansible_become_user": hostvars.get("ansible_become_user"),
        "fleet_root": hostvars.get("fleet_root", "/"),
        "fleet_known_hosts": known_hosts and os.path.expanduser(known_hosts),
        "fleet_netdata_restart": hostvars.get("fleet_netdata_restart", "systemctl restart netdata"),
        "fleet_cpus": None if cpus is None else str(cpus),
        "fleet_jump": hostvars.get("fleet_jump"),
        "ssh_args": shlex.split(hostvars.get("ansible_ssh_common_args", ""))
        + shlex.split(hostvars.get("ansible_ssh_extra_args", "")),
        "ansible_become_password": hostvars.get("ansible_become_password"),
    }


def unwrap_unsafe(value: Any) -> Any:
    """Ansible marks templated results `{"__ansible_unsafe": x}`; fleet keeps x."""
    if isinstance(value, dict):
        if set(value) == {"__ansible_unsafe"}:
            return unwrap_unsafe(value["__ansible_unsafe"])
        return {key: unwrap_unsafe(item) for key, item in value.items()}
    if isinstance(value, list):
        return [unwrap_unsafe(item) for item in value]
    return value


def assert_same(inventory: Inventory, result: Oracle) -> None:
    assert result.returncode == 0, result.stderr
    hostvars = unwrap_unsafe(result.listing["_meta"]["hostvars"])
    groups = ansible_groups(result.listing)
    assert set(inventory.hosts) == set(groups)
    for name, host in inventory.hosts.items():
        assert set(host.groups) == groups[name], name
        assert as_json(host.vars) == hostvars.get(name, {}), name
        assert effective(host) == expected_effective(name, hostvars.get(name, {})), name
    # Every group with hosts holds the same hosts in both.
    for group, members in inventory.groups.items():
        expected = {h for h, names in groups.items() if group in names}
        assert set(members) == expected, group


NATIVE = [
    "yaml_vars_files",
    "precedence",
    "ini_all",
    "ini_typing",
    "directory_mixed",
    "ini_edges",
    "yaml_edges",
]
FALLBACK = ["script", "plugin", "toml", "directory_with_script"]


@pytest.mark.parametrize("case", NATIVE + FALLBACK)
def test_fleet_reads_the_case_as_ansible_inventory_does(
    case: str, oracle: dict[str, Oracle], fleet_env: None
) -> None:
    inventory = load_inventory(CASES_DIR / case / CASES[case])
    assert_same(inventory, oracle[case])


def test_ansible_values_typed_by_the_ini_rules(oracle: dict[str, Oracle], fleet_env: None) -> None:
    # The same text typed differently on a host line and in a :vars section, as in Ansible.
    host = load_inventory(CASES_DIR / "ini_typing" / "hosts.ini").hosts["h1"]
    assert (host.vars["dq"], host.vars["v_dq"]) == (5, "5")
    assert (host.vars["y"], host.vars["t"], host.vars["z"]) == ("yes", True, "010")
    assert (
        host.vars["v_comment"] == 7
        and host.vars["v_hash"] == "x # not python: the whole text stays"
    )
    assert oracle["ini_typing"].listing["_meta"]["hostvars"]["h1"]["v_comment"] == 7


def test_precedence_follows_depth_then_priority_then_name(
    oracle: dict[str, Oracle], fleet_env: None
) -> None:
    hosts = load_inventory(CASES_DIR / "precedence" / "hosts.yml").hosts
    p1 = hosts["p1"].vars
    # a: deeper group wins; b: zulu sorts after alpha; c: priority 10 beats the name order;
    # d, e: group_vars files beat every inventory group var, deeper group_vars file last.
    assert (p1["a"], p1["b"], p1["c"], p1["d"], p1["e"]) == (
        "deep",
        "zulu",
        "high",
        "group_vars-all",
        "group_vars-deep",
    )
    assert hosts["p3"].vars["f"] == "host_vars-p3"
    assert "ansible_group_priority" not in hosts["p3"].vars  # inventory priority is no var
    assert hosts["p2"].vars["ansible_group_priority"] == 99  # a group_vars file's is
    assert_same(load_inventory(CASES_DIR / "precedence" / "hosts.yml"), oracle["precedence"])


VAULTED = [("vaulted", "host_vars/web1.yml"), ("vaulted_inventory", "hosts.yml")]


@pytest.mark.parametrize(("case", "vaulted"), VAULTED)
def test_vaulted_file_without_the_password_is_one_clear_error(
    case: str, vaulted: str, oracle: dict[str, Oracle], fleet_env: None
) -> None:
    # Ansible itself cannot read the file without the vault password, so neither can fleet:
    # it hands the inventory to ansible-inventory and reports its refusal in one line.
    result = oracle[case]
    assert result.returncode != 0 and "no vault secrets" in result.stderr
    with pytest.raises(InventoryError) as info:
        load_inventory(CASES_DIR / case / CASES[case])
    message = str(info.value)
    assert message.startswith(f"{CASES_DIR / case / vaulted}: ")
    assert "no vault secrets found" in message and "ANSIBLE_VAULT_PASSWORD_FILE" in message
    assert "\n" not in message


@pytest.mark.parametrize(("case", "vaulted"), VAULTED)
def test_vaulted_file_is_read_through_ansible_with_the_password(
    case: str,
    vaulted: str,
    oracle: dict[str, Oracle],
    fleet_env: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ANSIBLE_VAULT_PASSWORD_FILE", str(VAULT_PASSWORD))
    inventory = load_inventory(CASES_DIR / case / CASES[case])
    assert_same(inventory, oracle[f"{case}+password"])
    if case == "vaulted":
        web1 = inventory.hosts["web1"]
        assert (web1.port, web1.become_password) == (2201, "s3cret")
    else:
        assert inventory.hosts["v1"].port == 2205


@pytest.mark.parametrize(
    ("case", "needs"),
    [
        ("script", "inventory.sh"),
        ("plugin", "inventory.yml"),
        ("toml", "hosts.toml"),
        ("directory_with_script", "inv/20-dynamic"),
        ("vaulted", "host_vars/web1.yml"),
    ],
)
def test_without_ansible_core_the_long_tail_is_one_line_naming_what_to_install(
    case: str, needs: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python3"))
    with pytest.raises(InventoryError) as info:
        load_inventory(CASES_DIR / case / CASES[case])
    assert str(info.value) == (
        f"{CASES_DIR / case / needs}: needs ansible-core to read (pip install 'fleet[ansible]')"
    )


def test_each_value_names_the_file_and_line_that_set_it(fleet_env: None) -> None:
    case = CASES_DIR / "yaml_vars_files"
    web03 = load_inventory(case / "hosts.yml").hosts["web03"]
    assert web03.port == 2200
    assert dict(web03.var_sources) == {
        "ansible_user": f"{case}/hosts.yml:3",
        "who": f"{case}/host_vars/web03.yml:2",
        "fleet_cpus": f"{case}/hosts.yml:11",
        "ansible_ssh_private_key_file": f"{case}/group_vars/all.yml:3",
        "web_tier": f"{case}/group_vars/web:2",
        "ansible_become": f"{case}/group_vars/web:3",
        "ansible_port": f"{case}/host_vars/web03.yml:1",
        "api_token": f"{case}/host_vars/web03.yml:4",
        "templated": f"{case}/host_vars/web03.yml:7",
        "raw_braces": f"{case}/host_vars/web03.yml:8",
    }
    assert isinstance(web03.vars["api_token"], EncryptedValue)
    db1 = load_inventory(CASES_DIR / "ini_all" / "hosts").hosts["db1"]
    assert db1.var_sources["ansible_port"] == f"{CASES_DIR / 'ini_all' / 'hosts'}:18"
    assert db1.var_sources["env"] == f"{CASES_DIR / 'ini_all' / 'hosts'}:35"
    script = CASES_DIR / "script" / "inventory.sh"
    assert load_inventory(script).hosts["px1"].var_sources["ansible_port"] == str(script)


# --- bad input: one line naming file and line; ansible-core refuses it too -----------------


def write_case(directory: Path, files: Mapping[str, str]) -> Path:
    for name, text in files.items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return directory


WEB = "[web]\nweb1\n"
# case -> (files, source, fleet's message after "SOURCE_DIR/"); Ansible refuses them all but
# FLEET_ONLY (values Ansible passes on unchecked and fleet must use).
FLEET_ONLY = {"bad_port_in_host_vars"}
BAD_INPUTS: dict[str, tuple[dict[str, str], str, str]] = {
    "vars_for_undeclared_group": (
        {"hosts.ini": "web1\n[web:vars]\nx=1\n"},
        "hosts.ini",
        "hosts.ini:2: section [web:vars] is for group 'web', never declared",
    ),
    "undeclared_child": (
        {"hosts.ini": WEB + "[prod:children]\nweb\ndb\n"},
        "hosts.ini",
        "hosts.ini:5: section [prod:children] names undeclared group 'db'",
    ),
    "host_word_without_equals": (
        {"hosts.ini": "[web]\nweb1 ansible_port 22\n"},
        "hosts.ini",
        "hosts.ini:2: host 'web1': expected key=value, got 'ansible_port'",
    ),
    "unknown_section_type": (
        {"hosts.ini": WEB + "[web:hostvars]\n"},
        "hosts.ini",
        "hosts.ini:3: section [web:hostvars] has unknown type 'hostvars'",
    ),
    "unclosed_quote": (
        {"hosts.ini": "[web]\nweb1 x='a b\n"},
        "hosts.ini",
        "hosts.ini:2: host line 'web1 x='a b': No closing quotation",
    ),
    "section_with_spaces": (
        {"hosts.ini": "[ web ]\nweb1\n"},
        "hosts.ini",
        "hosts.ini:1: invalid section '[ web ]' (no spaces, one ':' before hosts, vars or "
        "children)",
    ),
    "bad_port_in_host_vars": (
        {"hosts.ini": WEB, "host_vars/web1.yml": "# port\nansible_port: 99999\n"},
        "hosts.ini",
        "host_vars/web1.yml:2: host 'web1': ansible_port must be an integer from 1 to 65535, "
        "got 99999",
    ),
    "group_vars_not_a_mapping": (
        {"hosts.ini": WEB, "group_vars/web.yml": "- a\n- b\n"},
        "hosts.ini",
        "group_vars/web.yml:1: vars file must be a mapping of variable names, got a list",
    ),
    "group_vars_bad_yaml": (
        {"hosts.yml": "web:\n  hosts:\n    web1:\n", "group_vars/all/x.yml": "a: 1\nb: [\n"},
        "hosts.yml",
        "group_vars/all/x.yml:3: expected the node content, but found '<stream end>' "
        "(while parsing a flow node)",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_is_one_line_with_file_and_line_and_ansible_refuses_it_too(
    case: str, oracle: dict[str, Oracle], fleet_env: None, tmp_path: Path
) -> None:
    files, source, expected = BAD_INPUTS[case]
    directory = write_case(tmp_path, files)
    with pytest.raises(InventoryError) as info:
        load_inventory(directory / source)
    assert str(info.value) == f"{directory}/{expected}"
    refused = oracle[f"bad:{case}"].returncode != 0
    assert refused == (case not in FLEET_ONLY), oracle[f"bad:{case}"].listing


# --- generated inventories: random mixes of everything above, one directory per seed ------

GENERATED_SEEDS = range(6)
# Value texts as a user might write them. INI host-line texts must be one shell word.
INI_HOST_TEXTS = ["5", '"5"', "'5'", "True", "yes", "[1,2]", "010", "abc", "1e3", "None"]
INI_HOST_TEXTS += ["0x1F", '"a b"', "'{\"k\": 1}'", "-3", '"x=y"', "''", "(1,2)", "a#b"]
INI_VARS_TEXTS = ["5", '"5"', "'5'", "True", "yes", "[1, 2]", "010", "abc", "1e3", "None"]
INI_VARS_TEXTS += ["a b c", '{"k": 1}', "", "7 # c", "x # c", "(1, 2)", "1+2j", "..."]
YAML_TEXTS = ["5", '"5"', "yes", "no", "true", "010", "0o17", "abc", "1e3", "1.5", "null"]
YAML_TEXTS += ["~", "[1, 2]", "{k: 1}", '"a: b"', "'quoted'", "12:30", "0x1F", "!!str 5", "''"]
# Vars fleet turns into Host fields, with values valid for them: (INI texts, YAML texts).
FLEET_TEXTS = {
    "ansible_port": (["2201", '"2202"'], ["2203", '"2204"']),
    "ansible_user": (["deploy", '"ops"'], ["deploy", "'ops'"]),
    "ansible_become": (["yes", "True", "false", "0"], ["yes", "true", "off", "1"]),
    "ansible_become_user": (["postgres"], ["netdata"]),
    "ansible_host": (["192.0.2.7"], ["192.0.2.8"]),
    "fleet_root": (["/srv/a"], ["/srv/b"]),
    "fleet_cpus": (["0-3", '"4-7"', "8"], ['"0-3"', "5"]),
    "fleet_known_hosts": (["~/.ssh/kh"], ["/etc/fleet/kh"]),
}
GENERIC = ["v1", "v2"]  # few names: levels collide often, so precedence shows


def _pick_var(rng: random.Random, where: str) -> tuple[str, str]:
    """A var name and a value text for a host line, a :vars line or YAML."""
    if rng.random() < 0.4:
        name = rng.choice(sorted(FLEET_TEXTS))
        ini, yml = FLEET_TEXTS[name]
        texts = yml if where == "yaml" else ini
    else:
        name = rng.choice(GENERIC)
        texts = {"host": INI_HOST_TEXTS, "vars": INI_VARS_TEXTS, "yaml": YAML_TEXTS}[where]
    return name, rng.choice(texts)


def _vars(rng: random.Random, where: str, most: int) -> dict[str, str]:
    return dict(_pick_var(rng, where) for _ in range(rng.randint(0, most)))


def _yaml_vars(values: Mapping[str, str], indent: str) -> list[str]:
    return [f"{indent}{name}: {text}" for name, text in values.items()]


def generated_inventory(root: Path, seed: int) -> Path:
    """A directory of 4-6 random INI/YAML sources plus group_vars/host_vars; returns it.

    Names repeat across sources on purpose (a shared group, a shared host), so merging order
    matters; groups nest at random depths with random priorities.
    """
    rng = random.Random(seed)
    root.mkdir(parents=True)
    all_groups: set[str] = {"all", "ungrouped"}
    all_hosts: set[str] = set()
    for index in range(rng.randint(4, 6)):
        prefix = f"s{index}"
        groups = [f"{prefix}g{j}" for j in range(rng.randint(2, 5))]
        if rng.random() < 0.5:
            groups.append("shared")
        parents: dict[str, list[str]] = {g: [] for g in groups}
        for j, group in enumerate(groups[1:], 1):
            for parent in rng.sample(groups[:j], k=min(j, rng.randint(0, 2))):
                parents[parent].append(group)
        hosts = [f"{prefix}h{i}" for i in range(rng.randint(2, 6))]
        if rng.random() < 0.5:
            hosts.append("common")
        member: dict[str, list[str]] = {h: rng.sample(groups, k=rng.randint(0, 2)) for h in hosts}
        as_ini = rng.random() < 0.5
        where = "yaml" if not as_ini else "vars"
        group_vars = {g: _vars(rng, where, 3) for g in groups}
        for group in groups:
            if rng.random() < 0.6:
                group_vars[group]["ansible_group_priority"] = str(rng.randint(1, 3))
        host_vars = {h: _vars(rng, "yaml" if not as_ini else "host", 2) for h in hosts}
        all_vars = _vars(rng, where, 2) if rng.random() < 0.3 else {}
        ports = {h: rng.choice([None, None, 2300 + index]) for h in hosts}
        lines: list[str] = []
        if as_ini:
            name = f"{index:02d}-{prefix}" + rng.choice(["", ".ini", ".cfgx"])
            for host in hosts:
                if not member[host]:
                    lines.append(_ini_host(host, ports[host], host_vars[host]))
            for group in groups:
                lines.append(f"[{group}]")
                lines += [_ini_host(h, ports[h], host_vars[h]) for h in hosts if group in member[h]]
                if group_vars[group]:
                    lines.append(f"[{group}:vars]")
                    lines += [f"{k}={v}" for k, v in group_vars[group].items()]
                if parents[group]:
                    lines.append(f"[{group}:children]")
                    lines += parents[group]
            if all_vars:
                lines.append("[all:vars]")
                lines += [f"{k}={v}" for k, v in all_vars.items()]
        else:
            name = f"{index:02d}-{prefix}" + rng.choice([".yml", ".yaml", ""])
            if all_vars or any(not member[h] for h in hosts):
                lines.append("all:")
                if all_vars:
                    lines += ["  vars:", *_yaml_vars(all_vars, "    ")]
                loose = [h for h in hosts if not member[h]]
                if loose:
                    lines.append("  hosts:")
                    for host in loose:
                        lines += _yaml_host(host, ports[host], host_vars[host])
            for group in groups:
                lines.append(f"{group}:")
                if group_vars[group]:
                    lines += ["  vars:", *_yaml_vars(group_vars[group], "    ")]
                mine = [h for h in hosts if group in member[h]]
                if mine:
                    lines.append("  hosts:")
                    for host in mine:
                        lines += _yaml_host(host, ports[host], host_vars[host])
                if parents[group]:
                    lines += ["  children:", *(f"    {child}:" for child in parents[group])]
            if not lines:
                lines.append("all:")
        (root / name).write_text("\n".join(lines) + "\n")
        all_groups.update(groups)
        all_hosts.update(hosts)
    for sub, names in (("group_vars", all_groups), ("host_vars", all_hosts)):
        for entity in sorted(names):
            if rng.random() < 0.4:
                continue
            form = rng.choice(["", ".yml", ".yaml", "/dir"])
            values = _vars(rng, "yaml", 3)
            if form == "/dir":
                directory = root / sub / entity
                directory.mkdir(parents=True)
                (directory / "01.yml").write_text("\n".join(_yaml_vars(values, "")) + "\n")
                more = _vars(rng, "yaml", 2)
                (directory / "02").write_text("\n".join(_yaml_vars(more, "")) + "\n")
            else:
                (root / sub).mkdir(exist_ok=True)
                text = "\n".join(_yaml_vars(values, "")) + "\n"
                (root / sub / f"{entity}{form}").write_text(text)
    return root


def _ini_host(host: str, port: int | None, values: Mapping[str, str]) -> str:
    name = host if port is None else f"{host}:{port}"
    return " ".join([name, *(f"{k}={v}" for k, v in values.items())])


def _yaml_host(host: str, port: int | None, values: Mapping[str, str]) -> list[str]:
    name = host if port is None else f"{host}:{port}"
    if not values:
        return [f"    {name}:"]
    return [f"    {name}:", *_yaml_vars(values, "      ")]


@pytest.mark.parametrize("seed", GENERATED_SEEDS)
def test_generated_inventory_reads_as_ansible_reads_it(
    seed: int, oracle: dict[str, Oracle], fleet_env: None, ansible_env: dict[str, str]
) -> None:
    root = Path(ansible_env["ANSIBLE_HOME"]) / "generated" / str(seed)
    assert_same(load_inventory(root), oracle[f"generated:{seed}"])


# --- INI value typing: many random value texts, one file ---------------------------------

TYPING_SEED = 20261203
# Fragments that steer Python's literal syntax (and shell quoting) into its corners.
_FRAGMENTS = [
    "0",
    "1",
    "7",
    "010",
    "0x1F",
    "0o7",
    "0b1",
    "1_0",
    "1e3",
    "1e400",
    ".5",
    "-",
    "+",
    "j",
    "True",
    "False",
    "None",
    "yes",
    "abc",
    "[",
    "]",
    "(",
    ")",
    "{",
    "}",
    ",",
    ":",
    "'",
    '"',
    "b'x'",
    "u'x'",
    "...",
    " ",
    "#",
    "=",
    "\\",
    "\\n",
    "é",
    "{'k': 1}",
    "[1, (2, 3)]",
    "{1, 2}",
    "()",
    "''",
]


def _random_text(rng: random.Random) -> str:
    return "".join(rng.choice(_FRAGMENTS) for _ in range(rng.randint(1, 4)))


def typing_inventory(path: Path, seed: int, count: int = 200) -> Path:
    """One INI file: up to `count` hosts with a random value on their line (texts the shell
    split does not keep as one key=value word are left out), as many groups with a random
    value in their :vars section."""
    rng = random.Random(seed)
    host_lines: list[str] = []  # at the top: hosts of "ungrouped"
    group_lines: list[str] = []
    for index in range(count):
        text = _random_text(rng)
        line = f"t{index} v={text}".strip()  # both readers strip lines
        try:
            tokens = shlex.split(line, comments=True)
        except ValueError:
            tokens = []
        if len(tokens) == 2 and tokens[1].startswith("v="):  # else both refuse the line
            host_lines.append(line)
        vars_text = _random_text(rng)
        if vars_text.strip():
            group_lines += [f"[g{index}]", f"t{index}", f"[g{index}:vars]", f"w={vars_text}"]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(host_lines + group_lines) + "\n")
    return path


def test_ini_values_are_typed_as_ansible_types_them(
    oracle: dict[str, Oracle], fleet_env: None, ansible_env: dict[str, str]
) -> None:
    path = Path(ansible_env["ANSIBLE_HOME"]) / "generated" / "typing.ini"
    inventory = load_inventory(path)
    assert len(inventory.hosts) > 100
    assert_same(inventory, oracle["typing"])
