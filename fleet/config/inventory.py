"""Host and Inventory records, loading an Ansible inventory, and selecting hosts by patterns.

Inventories are read as ansible-core reads them (YAML, INI, directories, group_vars/host_vars,
ansible-inventory for the rest: fleet.config.inventory_sources and the modules it names), so
one that already drives Ansible works unchanged. Every problem is raised as InventoryError with a
one-line message that names the file and, where one exists, the line.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from types import MappingProxyType
from typing import Any

from fleet.config.inventory_data import EncryptedValue
from fleet.config.patterns import GroupLayout, PatternSpace, ansible_group_hosts, select_names

__all__ = [
    "DEFAULT_INVENTORY",
    "INVENTORY_ENV",
    "EncryptedValue",
    "Host",
    "Inventory",
    "default_inventory_path",
    "load_inventory",
    "parse_cpu_list",
]

INVENTORY_ENV = "FLEET_INVENTORY"
DEFAULT_INVENTORY = Path("inventory/hosts.yml")
DEFAULT_PORT = 22
DEFAULT_ROOT = "/"
DEFAULT_NETDATA_RESTART = "systemctl restart netdata"
# Far above any real NR_CPUS; stops a typo like "0-4800000" from building a huge set.
MAX_CPU = 65535

_CPU_ITEM = re.compile(r"([0-9]+)(?:-([0-9]+))?")


@dataclass(frozen=True)
class Host:
    name: str
    address: str  # ansible_host or name
    port: int  # ansible_port or 22
    user: str | None
    key_file: str | None
    become: bool
    groups: tuple[str, ...]  # every group holding the host, directly or via children, sorted
    # merged, read-only; not in repr: it may hold ansible_become_password
    vars: Mapping[str, Any] = field(compare=False, hash=False, repr=False)
    fleet_root: str
    known_hosts: str | None
    netdata_restart: str
    cpus: frozenset[int] | None
    cpus_text: str | None  # fleet_cpus as written
    become_user: str | None = None  # ansible_become_user; None: sudo's default (root)
    # ansible_become_password, env lookups resolved; travels only over the SSH channel.
    become_password: str | None = field(default=None, repr=False)
    # ansible_ssh_common_args + ansible_ssh_extra_args, split as Ansible splits them (shlex).
    ssh_args: tuple[str, ...] = ()
    jump: str | None = None  # fleet_jump: a ProxyJump spec, `[user@]host[:port][,...]`
    # var name -> "FILE:LINE" (or the source, via ansible-inventory) that set the winning value.
    var_sources: Mapping[str, str] = field(
        default_factory=lambda: MappingProxyType({}), compare=False, hash=False
    )

    def __reduce__(self) -> tuple[Any, ...]:
        # To another process (a Dask worker): read-only views do not pickle, their dicts do.
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values["vars"] = dict(self.vars)
        values["var_sources"] = dict(self.var_sources)
        return (_host_from, (values,))


def _host_from(values: dict[str, Any]) -> Host:
    values["vars"] = MappingProxyType(values["vars"])
    values["var_sources"] = MappingProxyType(values["var_sources"])
    return Host(**values)


@dataclass(frozen=True)
class Inventory:
    path: Path
    hosts: dict[str, Host]  # in inventory order
    groups: dict[str, tuple[str, ...]]  # group -> host names through children, "all" included

    # Groups as their source declares them, for Ansible's host order in subscripts (web[0]).
    # Empty when built without it: then each group's hosts are taken in inventory order.
    layout: Mapping[str, GroupLayout] = field(default_factory=dict, compare=False)

    def select(self, patterns: str | Sequence[str] | None) -> list[Host]:
        """Hosts matched by Ansible's target patterns (fleet.config.patterns), in inventory order.

        None or [] (no --limit given) selects every host; a pattern that names nothing
        ("", ",", " ") is an error, so a changing command never falls back to "all".
        Several patterns are a union, like a comma.
        """
        if patterns is None:
            return list(self.hosts.values())
        texts = [patterns] if isinstance(patterns, str) else list(patterns)
        if not texts:
            return list(self.hosts.values())
        order = ansible_group_hosts(list(self.hosts), self.layout) if self.layout else self.groups
        space = PatternSpace(hosts=tuple(self.hosts), groups=order)
        selected = select_names(texts, space, str(self.path))
        return [host for name, host in self.hosts.items() if name in selected]


def default_inventory_path() -> Path:
    """$FLEET_INVENTORY if set and non-empty, else inventory/hosts.yml relative to the cwd."""
    return Path(os.environ.get(INVENTORY_ENV) or DEFAULT_INVENTORY)


def load_inventory(path: str | Path) -> Inventory:
    """The inventory at path: a file or directory of Ansible inventory sources, read as
    Ansible reads them (fleet.config.inventory_sources); InventoryError, one line, on bad input."""
    from fleet.config.inventory_sources import load_sources  # imports this module: load it late

    return load_sources(Path(path))


def parse_cpu_list(text: str) -> frozenset[int]:
    """Parse a Linux cpu list such as "0-47" or "0,2,4-7"; raise ValueError if malformed."""
    if not text.strip():
        raise ValueError("empty cpu list")
    cpus: set[int] = set()
    for part in text.split(","):
        item = part.strip()
        match = _CPU_ITEM.fullmatch(item)
        if match is None:
            raise ValueError(
                f"bad cpu list {text!r}: {item!r} is not a cpu number or a range like 4-7"
            )
        low = int(match[1])
        high = int(match[2]) if match[2] is not None else low
        if high < low:
            raise ValueError(f"bad cpu list {text!r}: range {item!r} ends before it starts")
        if high > MAX_CPU:
            raise ValueError(f"bad cpu list {text!r}: cpu {high} is above {MAX_CPU}")
        cpus.update(range(low, high + 1))
    return frozenset(cpus)
