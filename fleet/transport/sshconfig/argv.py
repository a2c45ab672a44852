"""The ssh command lines: the one Ansible builds for a host, the one OpenSSH builds for a
jump host, and reading options back out of them."""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from fleet.config.inventory import Host
from fleet.transport.sshconfig.openssh import SSHConfigError


def ansible_argv(host: Host, config: Path | None = None) -> tuple[str, ...]:
    """ssh's arguments for `host` in the order Ansible's ssh plugin puts them (first value
    obtained wins in OpenSSH, so the order is the precedence), ending with the address."""
    argv: list[str] = []
    if config is not None:
        argv += ["-F", str(config)]
    if host.vars.get("ansible_port") is not None:  # null is unset, as in Ansible
        argv += ["-o", f"Port={host.port}"]
    if host.key_file:
        argv += ["-o", f'IdentityFile="{host.key_file}"']
    if host.user:
        argv += ["-o", f'User="{host.user}"']
    jump = getattr(host, "jump", None)
    if jump:  # fleet_jump: before the ssh args, so it wins over a ProxyJump there
        argv += ["-J", jump]
    argv += list(getattr(host, "ssh_args", ()))
    argv.append(host.address)
    return tuple(argv)


def config_arg(argv: Sequence[str]) -> str | None:
    """The -F that ssh uses from `argv` (the last one), passed on to each jump's ssh."""
    found = None
    for i, arg in enumerate(argv[:-1]):
        if arg == "-F" and i + 1 < len(argv) - 1:
            found = argv[i + 1]
        elif arg.startswith("-F") and len(arg) > 2:
            found = arg[2:]
    return found


@dataclass(frozen=True)
class JumpSpec:
    text: str  # as written
    user: str | None
    host: str
    port: int | None


def parse_jump_spec(text: str) -> JumpSpec:
    """`[user@]host[:port]`, `[user@][v6addr]:port` or `ssh://[user@]host[:port]`."""
    rest = text.strip()
    rest = rest.removeprefix("ssh://")
    user, at, rest = rest.rpartition("@")
    port_text = ""
    if rest.startswith("["):
        host, _, tail = rest[1:].partition("]")
        port_text = tail.removeprefix(":")
    elif rest.count(":") == 1:
        host, port_text = rest.split(":")
    else:
        host = rest
    if not host or (port_text and not port_text.isdigit()):
        raise SSHConfigError(f"ProxyJump {text!r}: not [user@]host[:port]")
    return JumpSpec(text.strip(), user if at else None, host, int(port_text) if port_text else None)


def split_jump(value: str) -> tuple[str | None, str]:
    """ProxyJump `a,b,c` as OpenSSH splits it: (`a,b` for the next ssh's -J, `c`)."""
    extra, comma, last = value.rpartition(",")
    return (extra if comma else None), last


def hop_argv(spec: JumpSpec, extra: str | None, config: str | None) -> tuple[str, ...]:
    """The `ssh -W` OpenSSH starts for the last hop: `ssh -l U -p P -J EXTRA -F CFG HOST`."""
    argv: list[str] = []
    if spec.user:
        argv += ["-l", spec.user]
    if spec.port:
        argv += ["-p", str(spec.port)]
    if extra:
        argv += ["-J", extra]
    if config:
        argv += ["-F", config]
    argv.append(spec.host)
    return tuple(argv)


_FLAGS = {"port": "-p", "user": "-l", "identityfile": "-i", "proxyjump": "-J"}


def cmdline_sets(argv: Sequence[str], keyword: str) -> bool:
    """Does `argv` (ssh args from the inventory) set `keyword` (-o Key=.., or its flag)?"""
    return bool(option_values(argv, keyword, _FLAGS.get(keyword)))


def unquote(text: str) -> str:
    try:
        parts = shlex.split(text)
    except ValueError:
        return text
    return parts[0] if len(parts) == 1 else text


def option_values(argv: Sequence[str], keyword: str, flag: str | None) -> list[str]:
    """Values `argv` gives `keyword` (`-o Key=v`, `-oKey v`, or its flag), in order."""
    out: list[str] = []
    for i, arg in enumerate(argv):
        if flag and arg == flag and i + 1 < len(argv):
            out.append(argv[i + 1])
        elif flag and arg.startswith(flag) and len(arg) > 2:
            out.append(arg[2:])
        opt = argv[i + 1] if arg == "-o" and i + 1 < len(argv) else None
        if arg.startswith("-o") and len(arg) > 2:
            opt = arg[2:]
        if opt:
            key, _, value = opt.strip().partition("=") if "=" in opt else opt.strip().partition(" ")
            if key.strip().lower() == keyword:
                out.append(unquote(value.strip()))
    return out
