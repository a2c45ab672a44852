"""Each host's SSH settings as OpenSSH itself resolves them (`ssh -G`), for the address
Ansible connects to.

Ansible runs `ssh -o Port=.. -o IdentityFile=".." -o User=".." [ssh args] ADDRESS`; OpenSSH
matches its config on that ADDRESS (not the inventory name), follows Include and Match, and
the first value obtained wins. Asking `ssh -G` with the same argv gives exactly those values.
Fleet adds only what `ssh -G` leaves undone: it expands the tokens of IdentityFile and
ProxyCommand (printed raw) as ssh would at connect time, keeps key files that exist, and
resolves every ProxyJump hop with its own `ssh -G`, run as the `ssh -W` OpenSSH starts for it.

Which config line set a value (for `fleet hosts -v`) is read from `ssh -G -vvv`'s account of
the blocks it applied; the values themselves always come from `ssh -G`.
"""

from __future__ import annotations

import functools
import hashlib
import os
import pwd
import re
import shlex
import shutil
import socket
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from fleet.endpoint import Endpoint, Hop
from fleet.errors import UsageError
from fleet.inventory import Host

__all__ = [
    "Answer",
    "Resolution",
    "SSHConfigError",
    "ansible_argv",
    "expand_identity_file",
    "expand_proxy_command",
    "parse_jump_spec",
    "parse_ssh_G",
    "resolve_endpoints",
]

# One `ssh -G` costs ~7 ms here, mostly process start and dynamic linking; threads only wait.
DEFAULT_WORKERS = 16
_MAX_HOPS = 16  # OpenSSH has no limit of its own; a loop of ProxyJumps would spawn forever
_TIMEOUT_S = 20.0  # `Match exec` runs user commands


class SSHConfigError(UsageError):
    """ssh_config (or ssh args in the inventory) that OpenSSH itself refuses for a host."""


@dataclass(frozen=True)
class Answer:
    """One `ssh -G -vvv` run: the settings it printed and what its debug log says it read."""

    settings: Mapping[str, tuple[str, ...]]
    reads: tuple[str, ...] = ()  # config files in the order ssh opened them
    applied: frozenset[tuple[str, int]] = frozenset()  # Host/Match lines that matched
    includes: Mapping[tuple[str, int], tuple[str, ...]] = field(
        default_factory=lambda: MappingProxyType({})
    )
    has_match: bool = False  # a `Match` line was evaluated

    def one(self, key: str, default: str | None = None) -> str | None:
        values = self.settings.get(key)
        return values[0] if values else default


_READ = re.compile(r"debug1: Reading configuration data (.+)$")
_APPLY = re.compile(r"debug1: (.+) line (\d+): Applying options for ")
# "(parse only)": an Include in a block that did not match is read for syntax, not applied.
_INCLUDE = re.compile(
    r"debug3: (.+) line (\d+): Including file (.+) depth \d+(?: \(parse only\))?$"
)
_MATCH_LINE = re.compile(r"debug3: (.+) line (\d+): (?:not )?matched ")


def parse_ssh_G(stdout: str, stderr: str = "") -> Answer:
    """`ssh -G` output (`key value` lines) and its `-vvv` log, as data."""
    settings: dict[str, list[str]] = {}
    for line in stdout.splitlines():
        key, _, value = line.partition(" ")
        if key:
            settings.setdefault(key, []).append(value)
    reads: list[str] = []
    applied: set[tuple[str, int]] = set()
    includes: dict[tuple[str, int], list[str]] = {}
    match_at: tuple[str, int] | None = None
    has_match = False
    for line in stderr.splitlines():
        if m := _READ.match(line):
            reads.append(m[1])
        elif m := _APPLY.match(line):
            applied.add((m[1], int(m[2])))
        elif m := _INCLUDE.match(line):
            includes.setdefault((m[1], int(m[2])), []).append(m[3])
        elif line.startswith("debug2: checking match for"):
            match_at, has_match = None, True
        elif m := _MATCH_LINE.match(line):
            match_at = (m[1], int(m[2]))
        elif line.startswith("debug2: match found") and match_at:
            applied.add(match_at)
    return Answer(
        settings=MappingProxyType({k: tuple(v) for k, v in settings.items()}),
        reads=tuple(reads),
        applied=frozenset(applied),
        includes=MappingProxyType({k: tuple(v) for k, v in includes.items()}),
        has_match=has_match,
    )


# ------------------------------------------------------------------ the argv, as Ansible
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


def _config_arg(argv: Sequence[str]) -> str | None:
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


# ------------------------------------------------------------------ tokens
@functools.cache
def _passwd() -> pwd.struct_passwd:
    return pwd.getpwuid(os.getuid())


@functools.cache
def _thishost() -> str:
    return socket.gethostname()


def tilde_expand(path: str) -> str:
    """`~` and `~user` as OpenSSH expands them: from the password database, not $HOME."""
    if not path.startswith("~"):
        return path
    name, slash, rest = path[1:].partition("/")
    try:
        home = pwd.getpwnam(name).pw_dir if name else _passwd().pw_dir
    except KeyError:
        raise SSHConfigError(f"{path}: no such user {name!r}") from None
    return home.rstrip("/") + "/" + rest if slash else home


def percent_expand(text: str, tokens: Mapping[str, str], what: str, dollar: bool) -> str:
    """OpenSSH's percent (and `${ENV}`) expansion: one pass, an unknown token is an error."""
    out: list[str] = []
    i = 0
    while i < len(text):
        c = text[i]
        if c == "%":
            key = text[i + 1 : i + 2]
            if key == "%":
                out.append("%")
            elif key in tokens:
                out.append(tokens[key])
            else:
                raise SSHConfigError(f"{what} {text!r}: unknown token %{key}")
            i += 2
        elif dollar and text.startswith("${", i):
            end = text.find("}", i)
            if end < 0:
                raise SSHConfigError(f"{what} {text!r}: unterminated ${{")
            name = text[i + 2 : end]
            if name not in os.environ:
                raise SSHConfigError(f"{what} {text!r}: environment variable {name} is not set")
            out.append(os.environ[name])
            i = end + 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def identity_tokens(answer: Answer, host_arg: str) -> dict[str, str]:
    """The tokens OpenSSH 9.2 expands in IdentityFile (no %j before 9.4)."""
    pw = _passwd()
    thishost = _thishost()
    hostname = answer.one("hostname", host_arg) or host_arg
    port = answer.one("port", "22") or "22"
    user = answer.one("user", pw.pw_name) or pw.pw_name
    conn_hash = hashlib.sha1((thishost + hostname + port + user).encode()).hexdigest()
    return {
        "C": conn_hash,
        "L": thishost.split(".")[0],
        "i": str(pw.pw_uid),
        "k": answer.one("hostkeyalias") or host_arg,
        "l": thishost,
        "n": host_arg,
        "p": port,
        "d": pw.pw_dir,
        "h": hostname,
        "r": user,
        "u": pw.pw_name,
    }


def expand_identity_file(path: str, tokens: Mapping[str, str]) -> str:
    """IdentityFile as ssh opens it: `~` first, then %-tokens and ${ENV}."""
    return percent_expand(tilde_expand(path), tokens, "IdentityFile", dollar=True)


def expand_proxy_command(command: str, answer: Answer, host_arg: str) -> str:
    """ProxyCommand's tokens (%h %n %p %r %%), the values ssh passes when it runs it."""
    tokens = {
        "h": answer.one("hostname", host_arg) or host_arg,
        "n": host_arg,
        "p": answer.one("port", "22") or "22",
        "r": answer.one("user", "") or "",
    }
    return percent_expand(command, tokens, "ProxyCommand", dollar=False)


# ------------------------------------------------------------------ running ssh -G
def run_ssh_G(ssh: str, argv: Sequence[str]) -> Answer:
    """One `ssh -G -vvv ARGV`; a refusal becomes SSHConfigError with ssh's own words."""
    try:
        proc = subprocess.run(
            [ssh, "-G", "-vvv", *argv],
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise SSHConfigError(f"ssh -G did not finish in {_TIMEOUT_S:g} s (a Match exec?)") from None
    if proc.returncode != 0:
        noise = ("debug", "OpenSSH_", "Pseudo-terminal")
        lines = [ln for ln in proc.stderr.splitlines() if ln and not ln.startswith(noise)]
        raise SSHConfigError("; ".join(lines[-3:]) or f"ssh -G exited {proc.returncode}")
    return parse_ssh_G(proc.stdout, proc.stderr)


class _Cache:
    """`ssh -G` answers by argv: each distinct argv runs once per fleet run."""

    def __init__(self, ssh: str, workers: int) -> None:
        self.ssh = ssh
        self.workers = workers
        self.answers: dict[tuple[str, ...], Answer | SSHConfigError] = {}
        self.runs = 0

    def fill(self, argvs: Iterable[tuple[str, ...]]) -> None:
        todo = list(dict.fromkeys(a for a in argvs if a not in self.answers))
        if not todo:
            return
        self.runs += len(todo)

        def one(argv: tuple[str, ...]) -> Answer | SSHConfigError:
            try:
                return run_ssh_G(self.ssh, argv)
            except SSHConfigError as exc:
                return exc

        with ThreadPoolExecutor(max_workers=max(1, min(self.workers, len(todo)))) as pool:
            for argv, answer in zip(todo, pool.map(one, todo), strict=True):
                self.answers[argv] = answer

    def get(self, argv: tuple[str, ...]) -> Answer:
        if argv not in self.answers:
            self.fill([argv])
        answer = self.answers[argv]
        if isinstance(answer, SSHConfigError):
            raise answer
        return answer


# ------------------------------------------------------------------ attribution
_KEYWORD = re.compile(r"\s*([A-Za-z]+)\s*(?:=\s*|\s+)(.*?)\s*$")


_Line = tuple[int, str, str]  # line number, keyword (lowercase), value as written


class _Reader:
    """The config files ssh read, each read once per run, and what is derived from them."""

    def __init__(self) -> None:
        self._blocks: dict[str, list[tuple[int | None, list[_Line]]]] = {}
        self._applied: dict[tuple[Any, ...], list[tuple[str, int, str, str]]] = {}
        self._matchers: dict[tuple[str, ...], _Matcher] = {}

    def blocks(self, path: str) -> list[tuple[int | None, list[_Line]]]:
        """The file cut at each Host/Match line: (that line's number or None, body)."""
        if path not in self._blocks:
            try:
                text = Path(path).read_text(errors="replace")
            except OSError:
                text = ""
            blocks: list[tuple[int | None, list[_Line]]] = [(None, [])]
            for n, raw in enumerate(text.splitlines(), 1):
                if raw.lstrip().startswith("#") or not (m := _KEYWORD.match(raw)):
                    continue
                kw = m[1].lower()
                if kw in ("host", "match"):
                    blocks.append((n, [(n, kw, m[2])]))
                else:
                    blocks[-1][1].append((n, kw, m[2]))
            self._blocks[path] = blocks
        return self._blocks[path]

    def applied(self, answer: Answer) -> list[tuple[str, int, str, str]]:
        """Every config line (file, line, keyword, value) in a block ssh applied, in the
        order ssh read them (an Include's lines at the Include)."""
        key = (answer.reads, answer.applied, tuple(sorted(answer.includes.items())))
        if key in self._applied:
            return self._applied[key]
        included = {f for files in answer.includes.values() for f in files}
        out: list[tuple[str, int, str, str]] = []

        def walk(path: str, active: bool, depth: int) -> None:
            for start, body in self.blocks(path):
                if start is not None:
                    active = (path, start) in answer.applied
                if not active:
                    continue  # an Include here is parse-only: nothing in it applies
                for n, kw, value in body:
                    if kw == "include":
                        for inc in answer.includes.get((path, n), ()) if depth < 16 else ():
                            walk(inc, True, depth + 1)
                    elif kw not in ("host", "match"):
                        out.append((path, n, kw, value))

        for root in dict.fromkeys(answer.reads):
            if root not in included:
                walk(root, True, 0)
        self._applied[key] = out
        return out

    def matcher(self, files: tuple[str, ...]) -> _Matcher:
        if files not in self._matchers:
            lines = [
                [p.strip('"') for p in value.split()]
                for path in files
                for start, body in self.blocks(path)
                if start is not None and body[0][1] == "host"
                for value in (body[0][2],)
            ]
            self._matchers[files] = _Matcher(lines)
        return self._matchers[files]


_FLAGS = {"port": "-p", "user": "-l", "identityfile": "-i", "proxyjump": "-J"}


def _cmdline_sets(argv: Sequence[str], keyword: str) -> bool:
    """Does `argv` (ssh args from the inventory) set `keyword` (-o Key=.., or its flag)?"""
    return bool(_option_values(argv, keyword, _FLAGS.get(keyword)))


class _Sources:
    """Where each of one host's settings came from, for `fleet hosts -v`."""

    def __init__(self, host: Host, answer: Answer, reader: _Reader):
        self.host = host
        self.lines = reader.applied(answer)
        self.ssh_args = tuple(getattr(host, "ssh_args", ()))
        self.var_sources: Mapping[str, Any] = getattr(host, "var_sources", None) or {}

    def var(self, name: str) -> str:
        where = self.var_sources.get(name)
        return f"inventory var {name}" + (f" ({where})" if where else "")

    def config(self, keyword: str) -> list[str]:
        return [f"ssh_config {f}:{n}" for f, n, kw, _ in self.lines if kw == keyword]

    def args(self, keyword: str) -> str | None:
        if not _cmdline_sets(self.ssh_args, keyword):
            return None
        for var in ("ansible_ssh_common_args", "ansible_ssh_extra_args"):
            if self.host.vars.get(var) is not None and _cmdline_sets(
                shlex.split(str(self.host.vars[var])), keyword
            ):
                return self.var(var)
        return "inventory ssh args"

    def first(self, keyword: str, inventory_var: str | None, default: str) -> str:
        if inventory_var and self.host.vars.get(inventory_var) is not None:
            return self.var(inventory_var)
        found = self.args(keyword) or next(iter(self.config(keyword)), None)
        return found or default


def _unquote(text: str) -> str:
    try:
        parts = shlex.split(text)
    except ValueError:
        return text
    return parts[0] if len(parts) == 1 else text


def _option_values(argv: Sequence[str], keyword: str, flag: str | None) -> list[str]:
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
                out.append(_unquote(value.strip()))
    return out


def _key_sources(host: Host, s: _Sources) -> list[tuple[str, str]]:
    """(IdentityFile as written, where) in the order ssh collects them: command line first."""
    out: list[tuple[str, str]] = []
    if host.key_file:
        out.append((host.key_file, s.var("ansible_ssh_private_key_file")))
    for value in _option_values(s.ssh_args, "identityfile", "-i"):
        out.append((value, s.args("identityfile") or "inventory ssh args"))
    for f, n, kw, value in s.lines:
        if kw == "identityfile":
            out.append((_unquote(value), f"ssh_config {f}:{n}"))
    return out


# ------------------------------------------------------------------ endpoints
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
        user=answer.one("user") or _passwd().pw_name,
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
    return spec, hop_argv(spec, extra, _config_arg(parent_argv))


def _chain(
    answer: Answer, argv: tuple[str, ...], cache: _Cache, seen: tuple[tuple[str, ...], ...] = ()
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


def _prefetch_hops(answers: Iterable[tuple[Answer, tuple[str, ...]]], cache: _Cache) -> None:
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
    cache: _Cache,
    reader: _Reader | None = None,
) -> Endpoint:
    """The endpoint fleet connects to, from the host's own `ssh -G` answer."""
    s = _Sources(host, answer, reader or _Reader())
    tokens = identity_tokens(answer, host.address)
    written = _key_sources(host, s)
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
        user=answer.one("user") or _passwd().pw_name,
        key_files=tuple(keys),
        proxy_command=proxy_command,
        jump=jump,
        sources=MappingProxyType(sources),
    )


# ------------------------------------------------------------------ sharing one answer
# `ssh -G` costs ~7 ms of CPU, nearly all of it exec and dynamic linking: 1,000 distinct
# addresses cost 7 s. Without Match, OpenSSH's answer depends on the address only through
# which `Host` lines match it (and the host/hostname it prints), so addresses that match the
# same Host lines of the same files, with otherwise the same argv, get the same answer.
# Anything else (Match, canonicalization, a HostName with tokens) runs ssh -G per address.
@functools.cache
def _glob(pattern: str) -> re.Pattern[str]:
    """OpenSSH's match_pattern: `*` and `?` only; the pattern is lowercased, the host not."""
    parts = ("." if c == "?" else ".*" if c == "*" else re.escape(c) for c in pattern.lower())
    return re.compile("".join(parts), re.DOTALL)


def host_line_matches(host: str, patterns: Sequence[str]) -> bool:
    """A `Host` line's rule: a matching negated pattern vetoes, else any positive one."""
    positive = False
    for p in patterns:
        if p.startswith("!"):
            if _glob(p[1:]).fullmatch(host):
                return False
        elif _glob(p).fullmatch(host):
            positive = True
    return positive


class _Matcher:
    """Which `Host` lines of some files match an address: literal patterns by lookup (a
    config with a block per host stays linear), wildcards and negations one by one."""

    def __init__(self, lines: list[list[str]]) -> None:
        self.literal: dict[str, list[int]] = {}
        self.other: list[tuple[int, list[str]]] = []
        for i, patterns in enumerate(lines):
            if any(p.startswith("!") or "*" in p or "?" in p for p in patterns):
                self.other.append((i, patterns))
            else:
                for p in patterns:
                    self.literal.setdefault(p.lower(), []).append(i)

    def signature(self, host: str) -> frozenset[int]:
        found = set(self.literal.get(host, ()))
        found.update(i for i, patterns in self.other if host_line_matches(host, patterns))
        return frozenset(found)


@dataclass(frozen=True)
class _Class:
    """An answer that other addresses may share, and how to recognise them."""

    files: tuple[str, ...]
    signature: frozenset[int]
    answer: Answer
    keeps_hostname: bool  # HostName set (without tokens): printed as is for every member


def _share(answer: Answer, address: str, argv: Sequence[str], reader: _Reader) -> _Class | None:
    if answer.has_match or (answer.one("canonicalizehostname") or "false") not in ("false", "no"):
        return None
    set_by_config = [v for _, _, kw, v in reader.applied(answer) if kw == "hostname"]
    first = (_option_values(argv, "hostname", None) or set_by_config or [None])[0]
    if first is not None and "%" in first:
        return None
    keeps = first is not None or answer.one("hostname") != address.lower()
    files = tuple(dict.fromkeys(answer.reads))
    return _Class(files, reader.matcher(files).signature(address), answer, keeps)


def _as_member(c: _Class, address: str) -> Answer:
    """The class's answer for another address. Only what fleet reads is made exact (host,
    hostname; IdentityFile and ProxyCommand are printed raw and expanded per address later);
    a setting ssh -G prints expanded with %h (UserKnownHostsFile, say) keeps the first one's."""
    settings = dict(c.answer.settings)
    settings["host"] = (address,)
    if not c.keeps_hostname:
        settings["hostname"] = (address.lower(),)
    return Answer(
        MappingProxyType(settings), c.answer.reads, c.answer.applied, c.answer.includes, False
    )


_Classes = dict[tuple[str, ...], dict[frozenset[int], _Class]]  # files -> signature -> class


def _member(address: str, classes: _Classes, reader: _Reader) -> Answer | None:
    for files, table in classes.items():
        found = table.get(reader.matcher(files).signature(address))
        if found is not None:
            return _as_member(found, address)
    return None


def _answers(
    hosts: Sequence[Host],
    argvs: Mapping[str, tuple[str, ...]],
    cache: _Cache,
    reader: _Reader,
) -> dict[str, Answer | SSHConfigError]:
    """Each host's `ssh -G` answer: run for one address of each class, shared by the rest."""
    pending: dict[tuple[str, ...], list[Host]] = {}
    for h in hosts:
        pending.setdefault(argvs[h.name][:-1], []).append(h)  # same argv but the address
    classes: dict[tuple[str, ...], _Classes] = {}
    shareable: dict[tuple[str, ...], bool] = {}
    out: dict[str, Answer | SSHConfigError] = {}
    while any(pending.values()):
        run: list[tuple[str, ...]] = []
        for prefix, group in pending.items():
            known = classes.get(prefix, {})
            left = []
            for h in group:
                shared = _member(h.address, known, reader) if known else None
                if shared is not None:
                    out[h.name] = shared
                else:
                    left.append(h)
            pending[prefix] = left
            if not left:
                continue
            if prefix not in shareable:
                reps = left[:1]  # first round: one address shows whether sharing applies
            elif not shareable[prefix]:
                reps = left  # nothing to share: every address on its own
            else:
                matcher = reader.matcher(tuple(dict.fromkeys(f for fs in known for f in fs)))
                by_sig: dict[frozenset[int], Host] = {}
                for h in left:
                    by_sig.setdefault(matcher.signature(h.address), h)
                reps = list(by_sig.values())
            run += [argvs[h.name] for h in reps]
        cache.fill(run)
        for prefix, group in pending.items():
            left = []
            for h in group:
                answer = cache.answers.get(argvs[h.name])
                if answer is None:
                    left.append(h)
                    continue
                out[h.name] = answer
                c = (
                    _share(answer, h.address, prefix, reader)
                    if isinstance(answer, Answer)
                    else None
                )
                shareable[prefix] = shareable.get(prefix, True) and c is not None
                if c is not None:
                    classes.setdefault(prefix, {}).setdefault(c.files, {})[c.signature] = c
            pending[prefix] = left
    return out


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
    cache = _Cache(ssh, workers)
    reader = _Reader()
    argvs = {h.name: ansible_argv(h, config) for h in hosts}
    if share:
        answers = _answers(hosts, argvs, cache, reader)
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
    from fleet.ssh import load_ssh_config, resolve_endpoint

    cfg = load_ssh_config(config or Path(_passwd().pw_dir) / ".ssh" / "config")
    endpoints = {h.name: resolve_endpoint(h, cfg) for h in hosts}
    warning = (
        "no ssh client found: ssh_config read by paramiko's parser "
        "(no Include or Match; install openssh-client for OpenSSH's own reading)"
    )
    return Resolution(endpoints, [warning], 0)
