"""Every host's Endpoint from its `ssh -G` answer: keys, proxy command, jump chain, sources."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from fleet.config.inventory import Host
from fleet.transport.endpoint import Endpoint, Hop
from fleet.transport.sshconfig.argv import (
    JumpSpec,
    ansible_argv,
    config_arg,
    hop_argv,
    parse_jump_spec,
    split_jump,
)
from fleet.transport.sshconfig.openssh import DEFAULT_WORKERS, Answer, AnswerCache, SSHConfigError
from fleet.transport.sshconfig.share import shared_answers
from fleet.transport.sshconfig.sources import ConfigReader, Sources, key_sources
from fleet.transport.sshconfig.tokens import (
    expand_identity_file,
    expand_proxy_command,
    identity_tokens,
    passwd,
)

_MAX_HOPS = 16  # OpenSSH has no limit of its own; a loop of ProxyJumps would spawn forever


def _key_files(answer: Answer, host_arg: str) -> tuple[list[str], list[str]]:
    """(existing key files in ssh's order, missing ones); duplicates kept once."""
    tokens = identity_tokens(answer, host_arg)
    found: list[str] = []
    missing: list[str] = []
    for raw in answer.settings.get("identityfile", ()):
        path = expand_identity_file(raw, tokens)
        if path in found or path in missing:
            continue
        (found if os.path.isfile(path) else missing).append(path)
    return found, missing


def _hop(spec: JumpSpec, answer: Answer) -> Hop:
    keys, _ = _key_files(answer, spec.host)
    return Hop(
        name=spec.text,
        address=answer.one("hostname", spec.host) or spec.host,
        port=int(answer.one("port", "22") or 22),
        user=answer.one("user") or passwd().pw_name,
        key_files=tuple(keys),
    )


def _jump_argv(
    answer: Answer, parent_argv: Sequence[str]
) -> tuple[JumpSpec, tuple[str, ...]] | None:
    value = answer.one("proxyjump")
    if not value or value.lower() == "none" or answer.one("proxycommand") not in (None, "none"):
        return None
    extra, last = split_jump(value)
    spec = parse_jump_spec(last)
    return spec, hop_argv(spec, extra, config_arg(parent_argv))


def _chain(
    answer: Answer,
    argv: tuple[str, ...],
    cache: AnswerCache,
    seen: tuple[tuple[str, ...], ...] = (),
) -> tuple[Hop, ...]:
    """Jump hosts first to last, each resolved by the ssh -W OpenSSH would run for it (so the
    first hop's own ProxyJump applies, recursively)."""
    nxt = _jump_argv(answer, argv)
    if nxt is None:
        return ()
    spec, hargv = nxt
    if hargv in seen or len(seen) >= _MAX_HOPS:
        raise SSHConfigError(f"ProxyJump loop through {spec.text!r}")
    hop_answer = cache.get(hargv)
    if hop_answer.one("proxycommand") not in (None, "none"):
        raise SSHConfigError(
            f"jump host {spec.text!r} is reached by a ProxyCommand; "
            "fleet follows ProxyJump hops only"
        )
    return (*_chain(hop_answer, hargv, cache, (*seen, hargv)), _hop(spec, hop_answer))


def _prefetch_hops(answers: Iterable[tuple[Answer, tuple[str, ...]]], cache: AnswerCache) -> None:
    """Run the hops' ssh -G level by level, each level in parallel."""
    level = list(answers)
    for _ in range(_MAX_HOPS):
        nexts: list[tuple[str, ...]] = []
        for answer, argv in level:
            try:
                found = _jump_argv(answer, argv)
            except SSHConfigError:
                continue  # reported when the chain is built
            if found:
                nexts.append(found[1])
        fresh = [a for a in dict.fromkeys(nexts) if a not in cache.answers]
        if not fresh:
            return
        cache.fill(fresh)
        level = [(a, argv) for argv in fresh if isinstance(a := cache.answers[argv], Answer)]


def endpoint_from_answer(
    host: Host,
    argv: tuple[str, ...],
    answer: Answer,
    cache: AnswerCache,
    reader: ConfigReader | None = None,
) -> Endpoint:
    """The endpoint fleet connects to, from the host's own `ssh -G` answer."""
    s = Sources(host, answer, reader or ConfigReader())
    tokens = identity_tokens(answer, host.address)
    written = key_sources(host, s)
    keys: list[str] = []
    key_notes: list[str] = []
    for raw in answer.settings.get("identityfile", ()):
        path = expand_identity_file(raw, tokens)
        where = next((src for value, src in written if value == raw), "default")
        if path in keys:
            continue
        if os.path.isfile(path):
            keys.append(path)
            key_notes.append(f"{path} ({where})")
        elif where != "default":  # ssh skips absent default keys silently; so do we
            key_notes.append(f"{path} (missing, skipped; {where})")
    proxy_command = None
    proxy = answer.one("proxycommand")
    if proxy and proxy.lower() != "none":
        proxy_command = expand_proxy_command(proxy, answer, host.address)
    jump = _chain(answer, argv, cache)

    named = s.var("ansible_host") if host.vars.get("ansible_host") else "inventory name"
    sources = {
        "address": s.args("hostname") or next(iter(s.config("hostname")), None) or named,
        "port": s.first("port", "ansible_port", "default (22)"),
        "user": s.first("user", "ansible_user", "default (local user)"),
        "key_files": "; ".join(key_notes) or "none",
    }
    if proxy_command:
        sources["proxy"] = s.args("proxycommand") or next(iter(s.config("proxycommand")), "?")
    elif jump:
        via = s.var("fleet_jump") if getattr(host, "jump", None) else None
        via = via or s.args("proxyjump") or next(iter(s.config("proxyjump")), "?")
        sources["proxy"] = f"ProxyJump from {via}; each hop resolved by its own ssh -G"
    else:
        sources["proxy"] = "direct"
    return Endpoint(
        address=answer.one("hostname", host.address) or host.address,
        port=int(answer.one("port", "22") or 22),
        user=answer.one("user") or passwd().pw_name,
        key_files=tuple(keys),
        proxy_command=proxy_command,
        jump=jump,
        sources=MappingProxyType(sources),
    )


@dataclass
class Resolution:
    endpoints: dict[str, Endpoint]
    warnings: list[str] = field(default_factory=list)
    ssh_runs: int = 0  # `ssh -G` processes run (targets and jump hosts)


def ssh_client() -> str | None:
    return shutil.which("ssh")


def resolve_endpoints(
    hosts: Sequence[Host],
    config: Path | None = None,
    *,
    ssh: str | None = None,
    workers: int = DEFAULT_WORKERS,
    share: bool = True,
) -> Resolution:
    """Every host's Endpoint, before anything connects. `config` is an explicit ssh_config
    (`ssh -F`); None lets ssh read ~/.ssh/config and /etc/ssh/ssh_config as it always does.
    `share=False` runs ssh -G for every distinct argv (the reference for the sharing).

    Raises SSHConfigError naming the host when OpenSSH refuses its settings."""
    ssh = ssh or ssh_client()
    if ssh is None:
        return _fallback(hosts, config)
    cache = AnswerCache(ssh, workers)
    reader = ConfigReader()
    argvs = {h.name: ansible_argv(h, config) for h in hosts}
    if share:
        answers = shared_answers(hosts, argvs, cache, reader)
    else:
        cache.fill(argvs.values())
        answers = {h.name: cache.answers[argvs[h.name]] for h in hosts}
    _prefetch_hops(
        ((a, argvs[name]) for name, a in answers.items() if isinstance(a, Answer)), cache
    )
    endpoints: dict[str, Endpoint] = {}
    for h in hosts:
        try:
            answer = answers[h.name]
            if isinstance(answer, SSHConfigError):
                raise answer
            endpoints[h.name] = endpoint_from_answer(h, argvs[h.name], answer, cache, reader)
        except SSHConfigError as exc:
            raise SSHConfigError(f"host '{h.name}' ({h.address}): ssh_config: {exc}") from None
    return Resolution(endpoints, [], cache.runs)


def _fallback(hosts: Sequence[Host], config: Path | None) -> Resolution:
    from fleet.transport.ssh import load_ssh_config, resolve_endpoint

    cfg = load_ssh_config(config or Path(passwd().pw_dir) / ".ssh" / "config")
    endpoints = {h.name: resolve_endpoint(h, cfg) for h in hosts}
    warning = (
        "no ssh client found: ssh_config read by paramiko's parser "
        "(no Include or Match; install openssh-client for OpenSSH's own reading)"
    )
    return Resolution(endpoints, [warning], 0)
