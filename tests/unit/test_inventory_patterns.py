"""fleet's host patterns against Ansible's own: the same --limit must select the same hosts.

The oracle is ansible-core itself (InventoryManager.list_hosts, what `ansible PATTERN
--list-hosts` prints), run once for the whole corpus in one child process; one test also runs
the `ansible` command to show the batch answers are the command's.
"""

from __future__ import annotations

import importlib.util
import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from fleet.cli import main
from fleet.config.inventory import Inventory, load_inventory
from fleet.config.patterns import split_pattern
from fleet.errors import InventoryError

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "inventory" / "patterns"

# Per inventory: patterns whose answer must agree with Ansible's.
CORPUS: dict[str, list[str]] = {
    "sites.yml": [
        # all, *, groups, exclusion and intersection; '!'/'&' alone start from all
        "all",
        "*",
        "proxies",
        "all:!canary",
        "proxies:!ams",
        "proxies:&monitoring",
        "&canary",
        "!proxies",
        "!proxies:!db",
        "&proxies:&monitoring",
        "canary:&42",
        "monitoring:!ams-proxy-0*",
        "ungrouped",
        "ungr*",
        # subscripts slice Ansible's group order, not the file's
        "ams[0]",
        "ams[1]",
        "ams[-1]",
        "ams[-4]",
        "ams[1:]",
        "ams[1:2]",
        "ams[1-2]",
        "ams[0:0]",
        "ams[2:0]",
        "ams[3:1]",
        "ams[9]",
        "ams[-5]",
        "proxies[0]",
        "proxies[1:3]",
        "db,proxies[1:3]",
        "proxies[4:]",
        "all[0:2]",
        "all[5:7]",
        "*[16]",
        "*[0:1]",
        "*[-1]",
        "p*[1]",
        "*proxy*[2]",
        "canary[1]",
        "42[0]",
        "ams-proxy-01[0]",
        "edge[1]",
        # a bracket with digits is a subscript, one with other text a glob class
        "ams-proxy-0[1-4]",
        "~ams-proxy-0[1-4]$",
        "ams-proxy-0[1-4]*",
        "ams[0:1]",
        "ams-proxy-0[1:4]",
        "ams-proxy-0[!4]",
        "ams-proxy-0[a-c]",
        "fra-proxy-[a:b]",
        "fra-proxy-[a-b]",
        # a group and a host named alike; numeric names
        "db",
        "&db",
        "db:&db",
        "db*",
        "db,!db",
        "ams",
        "&ams",
        "42:!ams",
        "42:&ams",
        "am?",
        "10",
        "42",
        "4*",
        # regex: re.match, anchored at the start only
        "~db",
        "~d",
        "~^(ams|fra)$",
        "~.*-0[12]",
        "~ams-proxy-0[1-2]",
        "~proxy",
        "~proxi",
        "~(",
        # separators: ',' first; else one address; else ':' and whitespace outside [...]
        "2001:db8::10",
        "2001:db8::10,edge",
        "!2001:db8::10",
        "all:!2001:db8::10",
        "all,!2001:db8::10",
        "192.0.2.7",
        "192.0.2.7:22",
        "192.0.2.*",
        "mon1 edge",
        "mon1 , edge",
        "mon1:edge",
        "web9",
        "proxies:web9",
        "proxies:&web9",
    ],
    "deep.yml": [
        "world",
        "world[3]",
        "world[3:]",
        "world[0:1]",
        "eu[-1]",
        "eu[1-3]",
        "extra[2]",
        "extra[-1]",
        "world:&extra",
        "nl:!extra",
        "*l",
        "*d",
        "e*",
        "e?",
        "u1,x1",
        "~[ux]1",
        "ungrouped",
        "all:!world",
        "us[0]",
        "us[1]",
    ],
    "hosts.ini": [
        "all",
        "all[0:2]",
        "all[-1]",
        "deep[1:2]",
        "proxies[0]",
        "canary:&proxies",
        "!canary",
        "ungrouped",
        "~fra-[ab]",
        "fra[1]",
        "lone*",
    ],
    "flat.yml": [
        "1",
        "2",
        "10",
        "1*",
        "ungrouped",
        "ungrouped:&web",
        "!ungrouped",
        "web",
        "web*",
        "web?.example.net",
        "web1.example.net:web2.example.net",
        "web[0]",
        "web[1:]",
        "*.example.net",
        "web1.example.net:22",
        "2001:db8::1",
        "[2001:db8::1]:22",
        "2001:db8::*",
        "2001:db8::*,web",
        "192.0.2.1",
        "192.0.2.[0:3]",
        "ungrouped[0]",
        "all[-1]",
    ],
}
# Patterns that name nothing: Ansible selects every host (or, for " ,: ", none); fleet refuses.
NAMING_NOTHING = ["", " ", ",", ":", " , ", ",,", ": :", "\t", " ,: "]

_ORACLE = r"""
import json, sys
from ansible.inventory import manager
from ansible.inventory.manager import InventoryManager
from ansible.parsing.dataloader import DataLoader

UNMATCHED = "Could not match supplied host pattern, ignoring: "
jobs = json.load(sys.stdin)
out = {"split": [manager.split_host_pattern(text) for text in jobs["split"]]}
for path, patterns in jobs["select"].items():
    inventory = InventoryManager(loader=DataLoader(), sources=[path])
    answers = out[path] = {}
    for pattern in patterns:
        warnings = []
        manager.display.warning = lambda msg, *a, **k: warnings.append(str(msg))
        inventory.clear_pattern_cache()
        inventory._hosts_patterns_cache.clear()  # else a repeated term warns only once
        try:
            hosts = [getattr(h, "name", h) for h in inventory.list_hosts(pattern)]
        except Exception as exc:  # what Ansible stops on: bad regex, subscript out of range
            answers[pattern] = {"error": f"{type(exc).__name__}: {exc}"}
            continue
        unmatched = [w[len(UNMATCHED):] for w in warnings if w.startswith(UNMATCHED)]
        answers[pattern] = {"hosts": hosts, "unmatched": unmatched}
print(json.dumps(out))
"""


def _need_ansible() -> None:
    if importlib.util.find_spec("ansible") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("ansible-core is not installed; the pattern oracle needs it in CI")
        pytest.skip("ansible-core is not installed (pip install ansible-core)")


def ask_ansible(select: dict[str, list[str]], split: list[str]) -> dict[str, Any]:
    """Ansible's answer for every (inventory, pattern), and its split of every text in
    `split`, from one child process."""
    _need_ansible()
    done = subprocess.run(
        [sys.executable, "-c", _ORACLE],
        input=json.dumps({"select": select, "split": split}),
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
        env={**os.environ, "ANSIBLE_LOCALHOST_WARNING": "false"},
    )
    return json.loads(done.stdout)


def split_corpus() -> list[str]:
    """Texts built from names, addresses, ranges, ports, operators and separators."""
    atoms = [
        *("web", "web01", "web-1", "web_", "-web", "a.b", "10", "ÄÖ", "*", "w?b", "[a-b]x"),
        *("192.0.2.7", "256.1.1.1", "2001:db8::1", "::1", "::", "fe80::1:2", "1:2:3:4:5:6:7:8"),
        *("::ffff:1.2.3.4", "[2001:db8::1]", "web[01:03]", "web[a:c]", "web[1]", "db-[a:c].x"),
        *("web[1:]", "[0:3]", "!web", "&web", "~we.*", "x[0:9:2]", "[12:ab]"),
    ]
    texts = {*atoms, *(a + sep + b for a in atoms for b in atoms for sep in (":", ",", " "))}
    for atom in atoms:
        for suffix in (":22", ":x", "]", "[", " "):
            texts.update((atom + suffix, f"[{atom}]{suffix}"))
    return sorted(texts)


SPLIT_CORPUS = split_corpus()


def random_patterns(count: int, seed: int) -> list[str]:
    """Combinations of sites.yml's names, globs, regexes and subscripts with '!', '&', ','
    and ':' (a fixed seed: the same patterns every run)."""
    rng = random.Random(seed)
    atoms = [
        *("all", "*", "proxies", "ams", "fra", "db", "monitoring", "42", "canary", "ungrouped"),
        *("edge", "bastion", "10", "lab1", "ams-proxy-02", "fra-proxy-b", "192.0.2.7", "db2"),
        *("ams-proxy-0*", "*-[ab]", "?d*", "*proxy*", "~a", "~.*[24]$", "fra-proxy-[!a]"),
        *("ams[1]", "ams[-1]", "ams[1:]", "proxies[2:5]", "all[3]", "*[10:12]", "fra[0-1]"),
    ]
    patterns = []
    for _ in range(count):
        terms = [
            rng.choice(["", "", "!", "&"]) + rng.choice(atoms) for _ in range(rng.randint(1, 4))
        ]
        patterns.append(rng.choice([",", ":"]).join(terms))
    return sorted(set(patterns))


RANDOM_SITES = random_patterns(300, seed=7)


@pytest.fixture(scope="module")
def oracle() -> dict[str, Any]:
    jobs = {str(FIXTURES / name): [*patterns, *NAMING_NOTHING] for name, patterns in CORPUS.items()}
    jobs[str(FIXTURES / "sites.yml")] += RANDOM_SITES
    started = time.monotonic()
    answers = ask_ansible(jobs, SPLIT_CORPUS)
    # Measured: ~1 s for all ~400 patterns and ~3200 splits; one `ansible --list-hosts`: ~1.6 s.
    assert time.monotonic() - started < 30
    return {Path(key).name: value for key, value in answers.items()}


@pytest.fixture(scope="module")
def inventories() -> dict[str, Inventory]:
    return {name: load_inventory(FIXTURES / name) for name in CORPUS}


def disagreement(inv: Inventory, pattern: str, answer: dict[str, Any]) -> str | None:
    """None when fleet agrees with Ansible's answer, else what differs.

    Agreeing: the same host set; or fleet refusing where Ansible stops (error), ignores a
    term that matches nothing (fleet names it), or selects nothing."""
    try:
        selected = {host.name for host in inv.select(pattern)}
    except InventoryError as exc:
        message = str(exc)
        if "error" in answer:
            return None
        if answer["unmatched"]:
            named = any(f"'{term}" in message for term in answer["unmatched"])
            if "matches no host or group" in message and named:
                return None
        elif not answer["hosts"] and "selects no hosts" in message:
            return None
        return f"{pattern!r}: fleet refused ({message}), Ansible answered {answer}"
    if "error" in answer or answer["unmatched"] or set(answer["hosts"]) != selected:
        return f"{pattern!r}: fleet selected {sorted(selected)}, Ansible answered {answer}"
    return None


CASES = [(name, pattern) for name, patterns in CORPUS.items() for pattern in patterns]


@pytest.mark.parametrize(("inventory", "pattern"), CASES)
def test_fleet_selects_the_hosts_ansible_selects(
    oracle: dict[str, Any], inventories: dict[str, Inventory], inventory: str, pattern: str
) -> None:
    answer = oracle[inventory][pattern]
    assert disagreement(inventories[inventory], pattern, answer) is None


def test_random_combinations_select_what_ansible_selects(
    oracle: dict[str, Any], inventories: dict[str, Inventory]
) -> None:
    inv = inventories["sites.yml"]
    answers = oracle["sites.yml"]
    found = [disagreement(inv, pattern, answers[pattern]) for pattern in RANDOM_SITES]
    assert [d for d in found if d is not None] == []
    assert len(RANDOM_SITES) > 250
    assert sum(bool(answers[p].get("hosts")) for p in RANDOM_SITES) > 100


def test_patterns_split_into_the_terms_ansible_splits_them_into(oracle: dict[str, Any]) -> None:
    ours = [split_pattern(text) for text in SPLIT_CORPUS]
    differ = [
        (text, mine, theirs)
        for text, mine, theirs in zip(SPLIT_CORPUS, ours, oracle["split"], strict=True)
        if mine != theirs
    ]
    assert differ == []
    assert len(SPLIT_CORPUS) > 3000


def test_the_corpus_covers_selections_and_every_kind_of_refusal(
    oracle: dict[str, Any],
) -> None:
    answers = [oracle[name][pattern] for name, pattern in CASES]
    selecting = [a for a in answers if a.get("hosts") and not a.get("unmatched")]
    assert len(selecting) >= 60
    assert sum("error" in a for a in answers) >= 3  # bad regex, subscripts out of range
    assert sum(bool(a.get("unmatched")) for a in answers) >= 10
    assert sum(a.get("hosts") == [] and not a.get("unmatched") for a in answers) >= 4


def test_subscripts_follow_ansibles_group_order_not_the_files(
    inventories: dict[str, Inventory],
) -> None:
    deep = inventories["deep.yml"]
    # deep.yml lists n1 before u1, Ansible walks world's children (eu, us) before nl.
    assert list(deep.groups["world"]) == ["w1", "e1", "e2", "n1", "n2", "u1"]
    assert [h.name for h in deep.select("world[3]")] == ["u1"]
    sites = inventories["sites.yml"]
    assert [h.name for h in sites.select("all[0:1]")] == ["bastion", "10"]


def test_the_batch_oracle_answers_what_the_ansible_command_prints(
    oracle: dict[str, Any], tmp_path: Path
) -> None:
    _need_ansible()
    ansible = shutil.which("ansible", path=str(Path(sys.executable).parent))
    assert ansible is not None, "ansible-core is importable but its `ansible` command is missing"
    env = {**os.environ, "ANSIBLE_HOME": str(tmp_path), "ANSIBLE_LOCALHOST_WARNING": "false"}
    # One run (~1.6 s): a subscript over Ansible's group order, and the db host/group clash.
    pattern = "db,proxies[1:3]"
    done = subprocess.run(
        [ansible, pattern, "-i", str(FIXTURES / "sites.yml"), "--list-hosts"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        cwd=tmp_path,
        env=env,
    )
    printed = [line.strip() for line in done.stdout.splitlines()[1:]]
    assert printed == oracle["sites.yml"][pattern]["hosts"]
    assert printed == ["db", "ams-proxy-01", "ams-proxy-02", "ams-proxy-03"]


@pytest.mark.parametrize("pattern", NAMING_NOTHING)
def test_a_pattern_naming_nothing_is_refused_where_ansible_reads_it_as_all(
    oracle: dict[str, Any],
    inventories: dict[str, Inventory],
    pattern: str,
) -> None:
    inv = inventories["sites.yml"]
    answer = oracle["sites.yml"][pattern]
    # No term at all is Ansible's "all"; a lone ':' kept by a comma split matches nothing.
    everything = set() if answer["unmatched"] == [":"] else set(inv.hosts)
    assert set(answer["hosts"]) == everything
    assert not any(term.strip(":") for term in split_pattern(pattern))
    with pytest.raises(InventoryError, match="names no host or group"):
        inv.select(pattern)
    with pytest.raises(InventoryError, match="names no host or group"):
        inv.select(["proxies", pattern])


def test_every_mix_of_separators_and_blanks_names_nothing() -> None:
    inv = load_inventory(FIXTURES / "flat.yml")
    pieces = ["", " ", "\t", ",", ":", "\n"]
    for first in pieces:
        for second in pieces:
            for third in pieces:
                pattern = first + second + third
                with pytest.raises(InventoryError, match="names no host or group"):
                    inv.select(pattern)


def test_no_limit_at_all_still_means_every_host() -> None:
    inv = load_inventory(FIXTURES / "flat.yml")
    assert inv.select(None) == list(inv.hosts.values())
    assert inv.select([]) == list(inv.hosts.values())


@pytest.mark.parametrize(
    "argv",
    [
        ["audit", "--limit", ""],
        ["audit", "--limit", " , "],
        ["remediate", "--host", ""],
        ["remediate", "--host", ",", "--apply", "--yes"],
        ["rollback", "--host", " "],
    ],
)
def test_the_cli_refuses_an_empty_target_with_exit_2_before_any_host(
    argv: list[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    inventory = FIXTURES / "flat.yml"
    assert main([argv[0], "-i", str(inventory), *argv[1:]]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert f"{inventory}: pattern '" in err and "names no host or group" in err
    assert not (tmp_path / "state").exists()


def test_a_bad_regex_and_an_out_of_range_subscript_are_one_clear_line(
    inventories: dict[str, Inventory],
) -> None:
    inv = inventories["sites.yml"]
    with pytest.raises(InventoryError) as info:
        inv.select("~(")
    assert str(info.value).startswith(f"{inv.path}: pattern '~(' is not a valid regular expr")
    with pytest.raises(InventoryError) as info:
        inv.select("proxies:ams[4]")
    assert str(info.value) == (
        f"{inv.path}: pattern 'ams[4]': index 4 is out of range "
        "(it matches 4 host(s) before the subscript)"
    )
