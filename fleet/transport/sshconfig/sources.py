"""Where a setting came from (`fleet hosts -v`): the config lines in the blocks `ssh -G -vvv`
says it applied, in the order ssh read them, and the inventory vars."""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fleet.config.inventory import Host
from fleet.transport.sshconfig.argv import cmdline_sets, option_values, unquote
from fleet.transport.sshconfig.openssh import Answer

KEYWORD = re.compile(r"\s*([A-Za-z]+)\s*(?:=\s*|\s+)(.*?)\s*$")


Line = tuple[int, str, str]  # line number, keyword (lowercase), value as written


class ConfigReader:
    """The config files ssh read, each read once per run, and what is derived from them."""

    def __init__(self) -> None:
        self._blocks: dict[str, list[tuple[int | None, list[Line]]]] = {}
        self._applied: dict[tuple[Any, ...], list[tuple[str, int, str, str]]] = {}
        self.derived: dict[Any, Any] = {}  # for other modules' caches (share.py)

    def blocks(self, path: str) -> list[tuple[int | None, list[Line]]]:
        """The file cut at each Host/Match line: (that line's number or None, body)."""
        if path not in self._blocks:
            try:
                text = Path(path).read_text(errors="replace")
            except OSError:
                text = ""
            blocks: list[tuple[int | None, list[Line]]] = [(None, [])]
            for n, raw in enumerate(text.splitlines(), 1):
                if raw.lstrip().startswith("#") or not (m := KEYWORD.match(raw)):
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

    def host_patterns(self, files: tuple[str, ...]) -> list[list[str]]:
        """The patterns of every `Host` line of `files`, in order."""
        return [
            [p.strip('"') for p in body[0][2].split()]
            for path in files
            for start, body in self.blocks(path)
            if start is not None and body[0][1] == "host"
        ]


class Sources:
    """Where each of one host's settings came from, for `fleet hosts -v`."""

    def __init__(self, host: Host, answer: Answer, reader: ConfigReader):
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
        if not cmdline_sets(self.ssh_args, keyword):
            return None
        for var in ("ansible_ssh_common_args", "ansible_ssh_extra_args"):
            if self.host.vars.get(var) is not None and cmdline_sets(
                shlex.split(str(self.host.vars[var])), keyword
            ):
                return self.var(var)
        return "inventory ssh args"

    def first(self, keyword: str, inventory_var: str | None, default: str) -> str:
        if inventory_var and self.host.vars.get(inventory_var) is not None:
            return self.var(inventory_var)
        found = self.args(keyword) or next(iter(self.config(keyword)), None)
        return found or default


def key_sources(host: Host, s: Sources) -> list[tuple[str, str]]:
    """(IdentityFile as written, where) in the order ssh collects them: command line first."""
    out: list[tuple[str, str]] = []
    if host.key_file:
        out.append((host.key_file, s.var("ansible_ssh_private_key_file")))
    for value in option_values(s.ssh_args, "identityfile", "-i"):
        out.append((value, s.args("identityfile") or "inventory ssh args"))
    for f, n, kw, value in s.lines:
        if kw == "identityfile":
            out.append((unquote(value), f"ssh_config {f}:{n}"))
    return out
