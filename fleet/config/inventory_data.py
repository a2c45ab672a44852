"""What inventory sources define before precedence is applied: groups, hosts, and their vars.

Every parser (YAML, INI, ansible-inventory's JSON) fills one SourceData; several sources (an
inventory directory) fill the same one in Ansible's order, so later sources override earlier
ones key by key, as Ansible's InventoryData does. Every value remembers the file and line that
set it, for error messages and for `fleet hosts -v`.
"""

from __future__ import annotations

import ipaddress
import re
import string
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from fleet.errors import InventoryError

ALL = "all"
# Ansible always has this implicit group: hosts that belong to no group but "all".
UNGROUPED = "ungrouped"
PRIORITY_VAR = "ansible_group_priority"

_HOST_PORT = re.compile(r"(.+):([0-9]+)")


@dataclass(frozen=True)
class EncryptedValue:
    """An Ansible Vault (`!vault`) value: kept opaque because fleet cannot decrypt it."""

    ciphertext: str = field(repr=False)

    def __str__(self) -> str:
        return "<vault-encrypted>"


@dataclass
class Val:
    """One variable as found in a source: its value, where it was set, its text as written."""

    value: Any
    file: Path
    line: int | None
    raw: str | None = None  # scalar text as written (YAML would turn "010" into 8)

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}" if self.line is not None else str(self.file)


class VarSources(Mapping[str, str]):
    """var name -> where its value was set ("FILE:LINE"), formatted only when asked for."""

    __slots__ = ("_vals",)

    def __init__(self, vals: Mapping[str, Val]) -> None:
        self._vals = vals

    def __getitem__(self, key: str) -> str:
        return self._vals[key].where

    def __iter__(self) -> Iterator[str]:
        return iter(self._vals)

    def __len__(self) -> int:
        return len(self._vals)

    def __repr__(self) -> str:
        return f"VarSources({dict(self)!r})"


@dataclass
class Group:
    name: str
    vars: dict[str, Val] = field(default_factory=dict)
    hosts: dict[str, None] = field(default_factory=dict)  # direct members, ordered set
    children: dict[str, Val] = field(default_factory=dict)  # child -> where first linked


@dataclass
class SourceData:
    groups: dict[str, Group] = field(default_factory=lambda: {ALL: Group(ALL)})
    host_vars: dict[str, dict[str, Val]] = field(default_factory=dict)  # inventory order

    def group(self, name: str) -> Group:
        return self.groups.setdefault(name, Group(name))

    def add_host(self, group: Group, host: str, port: Val | None = None) -> dict[str, Val]:
        """Put a host in a group; returns its vars for the caller to update.

        As in Ansible, a `name:port` port becomes ansible_port only where the host is first
        seen (Host(name, port)); later mentions keep the first port.
        """
        group.hosts[host] = None
        known = self.host_vars.get(host)
        if known is not None:
            return known
        known = self.host_vars[host] = {}
        if port is not None:
            known["ansible_port"] = port
        return known


def fail(file: Path | str, line: int | None, message: str) -> NoReturn:
    where = f"{file}:{line}" if line is not None else str(file)
    raise InventoryError(f"{where}: {message}")


def fail_at(val: Val, message: str) -> NoReturn:
    raise InventoryError(f"{val.where}: {message}")


def is_ipv6(text: str) -> bool:
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


def split_host_port(entry: str) -> tuple[str, int | None]:
    """Split Ansible's "name:port" host key; bare IPv6 addresses keep their colons."""
    if entry.startswith("[") and entry.endswith("]") and is_ipv6(entry[1:-1]):
        return entry[1:-1], None
    match = _HOST_PORT.fullmatch(entry)
    if match is None:
        return entry, None
    head, port = match[1], int(match[2])
    if head.startswith("[") and head.endswith("]") and is_ipv6(head[1:-1]):
        return head[1:-1], port
    # A ':' left outside [...] means the whole entry is an IPv6 address, not name:port.
    if ":" in re.sub(r"\[[^\]]*\]", "", head):
        return entry, None
    return head, port


def expand_host_range(entry: str) -> list[str]:
    """Expand Ansible host ranges: web[01:03] -> web01 web02 web03, db-[a:c], [0:10:5]."""
    start = entry.find("[")
    if start < 0:
        return [entry]
    end = entry.find("]", start)
    if end < 0:
        raise ValueError("unclosed '[' in host range")
    head, spec, tail = entry[:start], entry[start + 1 : end], entry[end + 1 :]
    bounds = spec.split(":")
    if len(bounds) not in (2, 3):
        raise ValueError(f"host range '[{spec}]' must be [begin:end] or [begin:end:step]")
    begin, finish = bounds[0] or "0", bounds[1]
    step_text = bounds[2] if len(bounds) == 3 else "1"
    if not step_text.isdigit() or int(step_text) == 0:
        raise ValueError(f"host range '[{spec}]' needs a positive integer step")
    step = int(step_text)
    items: list[str]
    if begin.isdigit() and finish.isdigit():
        if int(begin) > int(finish):
            raise ValueError(f"host range '[{spec}]' must have begin <= end")
        # Like Ansible, a leading zero means "pad to this width" (web[01:10]).
        width = len(begin) if begin.startswith("0") and len(begin) > 1 else 0
        if width and len(finish) != width:
            raise ValueError(f"host range '[{spec}]' must give begin and end the same width")
        items = [str(n).zfill(width) for n in range(int(begin), int(finish) + 1, step)]
    elif (
        len(begin) == 1
        and len(finish) == 1
        and begin in string.ascii_letters
        and finish in string.ascii_letters
    ):
        first, last = string.ascii_letters.index(begin), string.ascii_letters.index(finish)
        if first > last:
            raise ValueError(f"host range '[{spec}]' must have begin <= end")
        items = list(string.ascii_letters[first : last + 1 : step])
    else:
        raise ValueError(f"host range '[{spec}]' must be numbers or single letters")
    return [head + item + rest for item in items for rest in expand_host_range(tail)]
