"""Ansible's INI inventory read into SourceData, following ansible-core's ini plugin.

The file reads as if it began with `[ungrouped]`. `[g]` lists hosts (`name[:port]` or a range,
then `key=value` words split like a shell line, `#` starting a comment), `[g:vars]` holds one
`key=value` per line (the rest of the line is the value), `[g:children]` one group per line.
Values are typed the same way in both places, by Python's literal syntax (`ast.literal_eval`:
`5` is an int, `True` a bool, `[1, 2]` a list, anything else stays the text) -- but a host
line's quotes are removed by the shell-style split first, so `x="5"` is the int 5 there and the
string "5" in a `:vars` section.
"""

from __future__ import annotations

import ast
import re
import shlex
import warnings
from pathlib import Path
from typing import Any, NoReturn

from fleet.config.inventory_data import (
    SourceData,
    Val,
    expand_host_range,
    fail,
    split_host_port,
)

_COMMENT = ("#", ";")
_SECTION = re.compile(r"^\[([^:\]\s]+)(?::(\w+))?\]\s*(?:#.*)?$")
_GROUP_NAME = re.compile(r"^([^:\]\s]+)\s*(?:#.*)?$")
_STATES = ("hosts", "children", "vars")
_SHELL_SPECIAL = re.compile(r"""['"\\#]""")


def ini_value(text: str) -> Any:
    """A value as Ansible's ini plugin types it (literal_eval, else the text itself)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SyntaxWarning)
            value = ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return text
    return _coerce(value)


def _coerce(value: Any) -> Any:
    # Ansible keeps only YAML-like types: tuples and sets become lists, bytes text,
    # complex numbers and Ellipsis their text.
    if isinstance(value, list | tuple | set | frozenset):
        return [_coerce(item) for item in value]
    if isinstance(value, dict):
        return {_coerce(k): _coerce(v) for k, v in value.items()}
    if isinstance(value, bytes):
        return value.decode("utf-8", "surrogateescape")
    if value is Ellipsis:
        return "..."
    if isinstance(value, complex):
        return str(value)
    return value


class _IniReader:
    def __init__(self, path: Path, data: SourceData) -> None:
        self.path = path
        self.data = data
        self.line = 0

    def fail(self, message: str, line: int | None = None) -> NoReturn:
        fail(self.path, line if line is not None else self.line, message)

    def val(self, value: Any, raw: str | None) -> Val:
        return Val(value, self.path, self.line, raw)

    def read(self, lines: list[str]) -> None:
        # name -> (line, state, parents): groups named by [g:vars] or [g:children] before
        # they are declared; any left at the end is an error, as in Ansible.
        pending: dict[str, tuple[int, str, list[str]]] = {}
        data = self.data
        group = data.group("ungrouped")
        state = "hosts"
        for number, text in enumerate(lines, 1):
            self.line = number
            line = text.strip()
            if not line or line[0] in _COMMENT:
                continue
            section = _SECTION.match(line)
            if section:
                name, state = section[1], section[2] or "hosts"
                if state not in _STATES:
                    self.fail(f"section [{name}:{state}] has unknown type '{state}'")
                if name not in data.groups:
                    # [g] or [g:children] declares a group; [g:vars] alone does not.
                    if state == "vars" and name not in pending:
                        pending[name] = (number, state, [])
                    data.group(name)
                if name in pending and state != "vars":
                    if pending[name][1] == "children":
                        self.add_pending_children(name, pending)
                    else:
                        del pending[name]
                group = data.groups[name]
                continue
            if line.startswith("[") and line.endswith("]"):
                self.fail(
                    f"invalid section '{line}' (no spaces, one ':' before hosts, vars or children)"
                )
            if state == "hosts":
                self.host_line(group.name, line)
            elif state == "vars":
                key, sep, value = line.partition("=")
                if not sep:
                    self.fail(f"[{group.name}:vars]: expected key=value, got '{line}'")
                raw = value.strip()
                group.vars[key.strip()] = self.val(ini_value(raw), raw)
            else:
                match = _GROUP_NAME.match(line)
                if match is None:
                    self.fail(f"[{group.name}:children]: expected a group name, got '{line}'")
                child = match[1]
                if child in data.groups:
                    group.children.setdefault(child, self.val(None, None))
                elif child in pending:
                    pending[child][2].append(group.name)
                else:
                    pending[child] = (number, "children", [group.name])
        for name, (line, kind, parents) in pending.items():
            if kind == "vars":
                self.fail(f"section [{name}:vars] is for group '{name}', never declared", line)
            self.fail(f"section [{parents[-1]}:children] names undeclared group '{name}'", line)

    def add_pending_children(
        self, name: str, pending: dict[str, tuple[int, str, list[str]]]
    ) -> None:
        line, _, parents = pending.pop(name)
        for parent in parents:
            self.data.group(parent).children.setdefault(name, Val(None, self.path, line))
            if parent in pending and pending[parent][1] == "children":
                self.add_pending_children(parent, pending)

    def host_line(self, group_name: str, line: str) -> None:
        if _SHELL_SPECIAL.search(line) is None:
            tokens = line.split()  # what shlex.split gives, ~20x faster (1000-host files)
        else:
            try:
                tokens = shlex.split(line, comments=True)
            except ValueError as exc:
                self.fail(f"host line '{line}': {exc}")
        if not tokens:  # only a comment after all (e.g. "  # note" inside quotes rules)
            return
        pattern = tokens[0]
        try:
            name_part, port = split_host_port(pattern)
            names = expand_host_range(name_part)
        except ValueError as exc:
            self.fail(f"host '{pattern}': {exc}")
        if pattern.endswith(":") and port is None:
            self.fail(f"host '{pattern}': a trailing ':' must be followed by a port")
        if "---" in (n.strip() for n in names):
            self.fail("host '---': this looks like a YAML file; name it .yml or .yaml")
        variables: dict[str, Val] = {}
        for token in tokens[1:]:
            key, sep, value = token.partition("=")
            if not sep:
                self.fail(f"host '{pattern}': expected key=value, got '{token}'")
            variables[key] = self.val(ini_value(value), value)
        port_val = None if port is None else self.val(port, str(port))
        group = self.data.groups[group_name]
        for host in names:
            self.data.add_host(group, host, port_val).update(variables)


def read_ini_inventory(path: Path, text: str, data: SourceData) -> None:
    """Add an INI inventory's groups, hosts and vars to data (InventoryError on bad input)."""
    _IniReader(path, data).read(text.splitlines())
