"""fleet's effective SSH endpoint against OpenSSH itself, for a corpus of ssh_config files.

For every host of every case (tests/fixtures/ssh_config/*.conf) the oracle is built without
fleet's code:
- the argv is Ansible's own: ansible-core's ssh connection plugin builds it (`_build_command`)
  from the case's inventory, and the address is its `remote_addr`;
- address, port, user and ProxyJump come from `ssh -G` with that argv;
- key files are the paths the real `ssh -v` says it tries ("identity file ..."), so token
  expansion (%h %p %r %n %C %d %u %i %l %L %k %% ${ENV}, ~) is OpenSSH's;
- the ProxyCommand is the one `ssh -v` says it executes;
- each jump hop is the argv of the `ssh -W` OpenSSH starts for it (a stub `ssh` first on PATH
  records it and exits, so nothing connects), then that hop's own `ssh -G` / `ssh -v`.
The paramiko fallback is compared too; where it differs, the case header says so.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paramiko
import pytest
import yaml

from fleet.config.inventory import Host, load_inventory
from fleet.transport.endpoint import Endpoint
from fleet.transport.ssh import resolve_endpoint
from fleet.transport.sshconfig import resolve_endpoints

CORPUS = Path(__file__).parent.parent / "fixtures" / "ssh_config"
SSH = shutil.which("ssh")
pytestmark = pytest.mark.skipif(SSH is None, reason="no OpenSSH client")

# Ansible builds its ssh command line for each inventory host; print them as JSON.
_ANSIBLE_ARGV = r"""
import json, sys
from ansible.inventory.manager import InventoryManager
from ansible.module_utils.common.text.converters import to_text
from ansible.parsing.dataloader import DataLoader
from ansible.playbook.play import Play
from ansible.playbook.play_context import PlayContext
from ansible.playbook.task import Task
from ansible.plugins.loader import connection_loader
from ansible.template import Templar
from ansible.vars.manager import VariableManager

out = {}
for source in sys.argv[1:]:
    loader = DataLoader()
    inv = InventoryManager(loader=loader, sources=[source])
    vm = VariableManager(loader=loader, inventory=inv)
    play = Play.load({"hosts": "all", "gather_facts": False}, variable_manager=vm, loader=loader)
    hosts = {}
    for host in inv.get_hosts():
        hv = vm.get_vars(play=play, host=host)
        pc = PlayContext(play=play).set_task_and_variable_override(
            task=Task(), variables=hv, templar=Templar(loader=loader, variables=hv))
        conn = connection_loader.get("ssh", pc, None)
        conn.set_options(var_options=hv)
        argv = [to_text(a) for a in conn._build_command("ssh", "ssh")][1:]
        hosts[host.name] = argv + [pc.remote_addr or host.name]  # as TaskExecutor falls back
    out[source] = hosts
print(json.dumps(out))
"""


@dataclass
class Case:
    name: str
    config: Path
    inventory: Path
    differs: set[str]


@dataclass(frozen=True)
class Effective:
    """What a connection would use, in comparable form."""

    address: str
    port: int
    user: str
    key_files: tuple[str, ...]
    proxy: str | None
    jump: tuple[tuple[str, int, str, tuple[str, ...]], ...]


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    """A temp HOME (Ansible's ~/.ansible, fleet's ~ for inventory paths), the corpus copied
    with @DIR@/@REL@ filled in, and a stub `ssh` that records how OpenSSH runs a jump."""
    root = tmp_path_factory.mktemp("sshcfg")
    home, corpus, stub = root / "home", root / "corpus", root / "stub"
    for d in (home, stub):
        d.mkdir()
    # A relative Include is globbed (GLOB_TILDE) from "~/.ssh", and glob's ~ is $HOME.
    (home / ".ssh").mkdir()
    rel = os.path.relpath(corpus, home / ".ssh")
    shutil.copytree(CORPUS, corpus)
    for f in corpus.rglob("*.conf"):
        f.write_text(f.read_text().replace("@DIR@", str(corpus)).replace("@REL@", rel))
    (corpus / "keys").mkdir()
    (stub / "ssh").write_text(
        '#!/bin/sh\nprintf "%s\\037" "$@" >> "$FLEET_TEST_JUMPLOG"\necho >> "$FLEET_TEST_JUMPLOG"\n'
        "exit 1\n"
    )
    (stub / "ssh").chmod(0o755)
    saved = {k: os.environ.get(k) for k in ("HOME", "FLEET_TEST_KEYS", "SSH_AUTH_SOCK")}
    os.environ["HOME"] = str(home)
    os.environ["FLEET_TEST_KEYS"] = str(corpus / "keys")
    os.environ.pop("SSH_AUTH_SOCK", None)
    try:
        yield {"root": root, "home": home, "corpus": corpus, "stub": stub}
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _cases(env: dict[str, Path]) -> list[Case]:
    out = []
    for cfg in sorted(env["corpus"].glob("*.conf")):
        hosts: dict[str, dict[str, Any]] = {}
        differs: set[str] = set()
        for line in cfg.read_text().splitlines():
            if line.startswith("# host:"):
                name, _, data = line[len("# host:") :].strip().partition(" ")
                hosts[name] = json.loads(data)
            elif line.startswith("# paramiko-differs:"):
                differs = set(line.split(":", 1)[1].split())
        for hv in hosts.values():
            # The config reaches ssh the way a person gives it to Ansible: an ssh arg.
            hv["ansible_ssh_extra_args"] = f"-F {cfg}"
        inv = env["root"] / f"{cfg.stem}.yml"
        inv.write_text(yaml.safe_dump({"all": {"hosts": hosts}}))
        out.append(Case(cfg.stem, cfg, inv, differs))
    return out


def _ansible_argvs(env: dict[str, Path], cases: list[Case]) -> dict[str, dict[str, list[str]]]:
    cfg = env["root"] / "ansible.cfg"
    cfg.write_text("[defaults]\n")
    proc = subprocess.run(
        [sys.executable, "-c", _ANSIBLE_ARGV, *(str(c.inventory) for c in cases)],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "ANSIBLE_CONFIG": str(cfg)},
        timeout=120,
    )
    return json.loads(proc.stdout)


# ---------------------------------------------------------------- the oracle: OpenSSH
def _ssh_G(argv: list[str]) -> dict[str, list[str]]:
    out = subprocess.run(
        [str(SSH), "-G", *argv], capture_output=True, text=True, check=True, timeout=20
    ).stdout
    settings: dict[str, list[str]] = {}
    for line in out.splitlines():
        key, _, value = line.partition(" ")
        settings.setdefault(key, []).append(value)
    return settings


def _ssh_v(env: dict[str, Path], argv: list[str]) -> tuple[list[str], str | None, list[str]]:
    """Run the real `ssh -v` so far as it goes without a network: (identity files it tries,
    the proxy command it executes, the argv of the jump ssh it starts)."""
    g = _ssh_G(argv)
    pre: list[str] = []
    proxy = g.get("proxycommand", [None])[0]
    if proxy is not None:
        assert proxy.startswith("/bin/true"), "corpus rule: every ProxyCommand is /bin/true"
    elif "proxyjump" not in g:
        pre = ["-o", "ProxyCommand=/bin/true"]  # stop before any TCP connect
    log = env["root"] / "jumplog"
    log.unlink(missing_ok=True)
    run_env = {
        **os.environ,
        "PATH": f"{env['stub']}:{os.environ['PATH']}",
        "SHELL": "/bin/sh",
        "FLEET_TEST_JUMPLOG": str(log),
    }
    # argv[0] "ssh": OpenSSH starts a jump's ssh by its own argv[0], so the stub gets it.
    proc = subprocess.run(
        ["ssh", "-v", "-o", "BatchMode=yes", *pre, *argv, "true"],
        executable=str(SSH),
        capture_output=True,
        text=True,
        env=run_env,
        timeout=20,
        stdin=subprocess.DEVNULL,
    )
    keys: list[str] = []
    executed = None
    for line in proc.stderr.splitlines():
        if line.startswith("debug1: identity file "):
            path = line[len("debug1: identity file ") :].rsplit(" type ", 1)[0]
            if not (keys and path == keys[-1] + "-cert"):
                keys.append(path)
        elif line.startswith("debug1: Executing proxy command: exec "):
            executed = line[len("debug1: Executing proxy command: exec ") :]
    jump: list[str] = []
    if "proxyjump" in g:
        assert log.exists(), proc.stderr
        jump = log.read_text().split("\n")[0].split("\037")[:-1]
        executed = None  # the implicit ProxyCommand is ssh's own -W, compared as hops
    if pre:
        executed = None  # ours, not the config's
    return keys, executed, jump


def _strip_w(jump_argv: list[str]) -> list[str]:
    """The jump ssh's argv without -v and `-W host:port`: what resolves the hop itself."""
    out, skip = [], False
    for a in jump_argv:
        if skip:
            skip = False
        elif a == "-W":
            skip = True
        elif a != "-v":
            out.append(a)
    return out


def _oracle(env: dict[str, Path], argv: list[str], depth: int = 0) -> Effective:
    assert depth < 8, "jump loop in the corpus"
    g = _ssh_G(argv)
    keys, proxy, jump_argv = _ssh_v(env, argv)
    hops: tuple[tuple[str, int, str, tuple[str, ...]], ...] = ()
    if jump_argv:
        hop = _oracle(env, _strip_w(jump_argv), depth + 1)
        hops = (*hop.jump, (hop.address, hop.port, hop.user, hop.key_files))
    return Effective(
        address=g["hostname"][0],
        port=int(g["port"][0]),
        user=g["user"][0],
        key_files=tuple(k for k in keys if os.path.isfile(k)),
        proxy=proxy,
        jump=hops,
    )


def _effective(e: Endpoint) -> Effective:
    return Effective(
        e.address,
        e.port,
        e.user,
        tuple(e.key_files),
        e.proxy_command,
        tuple((h.address, h.port, h.user, tuple(h.key_files)) for h in e.jump),
    )


def _touch_keys(env: dict[str, Path], argv: list[str]) -> None:
    """Create every key file ssh would try under the corpus dir, so "existing files only"
    keeps them and the comparison covers the token expansion."""
    keys, _, _ = _ssh_v(env, argv)
    for k in keys:
        if k.startswith(str(env["corpus"])):
            Path(k).parent.mkdir(parents=True, exist_ok=True)
            Path(k).touch()


# ---------------------------------------------------------------- the tests
@pytest.fixture(scope="module")
def corpus(env: dict[str, Path]) -> list[tuple[Case, Host, list[str], Effective]]:
    """Every (case, host, Ansible's argv, what OpenSSH uses), keys created first."""
    cases = _cases(env)
    argvs = _ansible_argvs(env, cases)
    out = []
    for case in cases:
        inv = load_inventory(case.inventory)
        for name, host in inv.hosts.items():
            out.append((case, host, argvs[str(case.inventory)][name]))
    for _case, _host, argv in out:
        _touch_keys(env, argv)
    for k in ("inventory", "config"):  # keys the inventories name directly
        (env["corpus"] / "keys" / k).touch()
    return [(case, host, argv, _oracle(env, argv)) for case, host, argv in out]


def test_every_case_has_hosts_and_the_corpus_covers_the_features(
    corpus: list[tuple[Case, Host, list[str], Effective]],
) -> None:
    names = {case.name for case, _, _, _ in corpus}
    assert len(names) == len(list(CORPUS.glob("*.conf"))) >= 12
    text = "\n".join(p.read_text() for p in CORPUS.rglob("*.conf")).lower()
    for feature in (
        "!",
        "match host",
        "originalhost",
        "match user",
        "match exec",
        "include",
        "proxyjump",
        "proxycommand",
        "%h",
        "%p",
        "%r",
        "%u",
        "%d",
        "%n",
        "%c",
    ):
        assert feature in text, feature


def test_fleet_resolves_every_host_as_openssh_does_when_ansible_runs_it(
    env: dict[str, Path], corpus: list[tuple[Case, Host, list[str], Effective]]
) -> None:
    mismatches = []
    for case, host, _argv, want in corpus:
        got = resolve_endpoints([host]).endpoints[host.name]
        if _effective(got) != want:
            mismatches.append(f"{case.name}/{host.name}:\n fleet {_effective(got)}\n ssh {want}")
    assert not mismatches, "\n".join(mismatches)
    assert len(corpus) >= 18


def _relevant(argv: list[str]) -> list[str]:
    """The arguments that set what the corpus checks, in order."""
    keep = ("Port=", "IdentityFile=", "User=", "ProxyJump=", "-F", "-J")
    return [a for i, a in enumerate(argv) if a.startswith(keep) or argv[i - 1] in ("-F", "-J")]


def test_ansible_argv_is_what_fleet_passes_to_ssh_G(
    corpus: list[tuple[Case, Host, list[str], Effective]],
) -> None:
    """The ssh options Ansible sets from the inventory (Port, IdentityFile, User), in
    Ansible's order, then its ssh args, then the address: fleet's argv keeps them all."""
    from fleet.transport.sshconfig import ansible_argv

    for _case, host, argv, _ in corpus:
        theirs, ours = _relevant(argv), _relevant(list(ansible_argv(host)))
        assert ours == theirs, host.name
        assert ansible_argv(host)[-1] == argv[-1] == host.address


def test_paramiko_fallback_differs_exactly_where_the_case_says(
    env: dict[str, Path],
    corpus: list[tuple[Case, Host, list[str], Effective]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The fallback (no ssh client) reads the same file with paramiko: it has no Include,
    ignores ssh args, expands tokens in its own order, and tries only the inventory key."""
    # paramiko runs `Match exec` through invoke, which reads stdin; pytest's stdin refuses.
    monkeypatch.setattr(sys, "stdin", open(os.devnull))  # noqa: SIM115
    seen: dict[str, set[str]] = {}
    for case, host, _argv, want in corpus:
        got = _effective(resolve_endpoint(host, paramiko.SSHConfig.from_path(str(case.config))))
        fields = {
            "address": got.address != want.address,
            "port": got.port != want.port,
            "user": got.user != want.user,
            "key_files": got.key_files != want.key_files,
            "proxy": got.proxy != want.proxy,
            "jump": got.jump != want.jump,
        }
        seen.setdefault(case.name, set()).update(k for k, v in fields.items() if v)
    declared = {c.name: c.differs for c, _, _, _ in corpus}
    wrong = {n: sorted(d) for n, d in seen.items() if d != declared[n]}
    assert not wrong, f"paramiko differs (actual): {wrong}"
    assert any(seen.values()), "the fallback is worse somewhere, or this test proves nothing"


_ADDRESSES = (
    "good.example.com",
    "Good.Example.com",  # OpenSSH lowercases the pattern, not the host
    "bad.example.com",
    "x.example.com",
    "10.1.2.3",
    "10.1.22.3",
    "10.4.0.9",
    "10.5.0.1",
    "10.5.9.9",
    "10.6.0.3",
    "10.7.0.1",
    "10.8.0.1",
    "10.9.0.7",
    "10.10.0.5",
    "db1.prod",
    "db2.prod",
    "db01",
    "tok.example",
    "127.0.0.1",
    "plain",
)


def test_sharing_one_ssh_G_answer_between_addresses_changes_no_endpoint(
    env: dict[str, Path], corpus: list[tuple[Case, Host, list[str], Effective]]
) -> None:
    """Addresses that match the same Host lines share one `ssh -G` run; the reference is
    `ssh -G` for every address. Every corpus config x every address, sources included."""
    hosts: dict[str, dict[str, Any]] = {}
    for cfg in sorted(env["corpus"].glob("*.conf")):
        for i, address in enumerate(_ADDRESSES):
            hosts[f"{cfg.stem}-{i}"] = {
                "ansible_host": address,
                "ansible_ssh_extra_args": f"-F {cfg}",
            }
    inv = env["root"] / "sharing.yml"
    inv.write_text(yaml.safe_dump({"all": {"hosts": hosts}}))
    targets = list(load_inventory(inv).hosts.values())
    shared = resolve_endpoints(targets)
    each = resolve_endpoints(targets, share=False)
    for h in targets:
        a, b = shared.endpoints[h.name], each.endpoints[h.name]
        assert (a, dict(a.sources)) == (b, dict(b.sources)), h.name
    assert shared.ssh_runs < each.ssh_runs / 2, (shared.ssh_runs, each.ssh_runs)
