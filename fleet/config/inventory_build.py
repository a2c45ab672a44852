"""Ansible's variable precedence over SourceData and vars files, then one Host per host.

Per host, lowest first (ansible-core's VariableManager with the default precedence):
the `all` group's inventory vars; every other group's inventory vars, groups sorted by
(depth, ansible_group_priority, name); group_vars/all; group_vars of the other groups in the
same order; the host's inventory vars; host_vars. Each level replaces whole values.
"""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path
from types import MappingProxyType
from typing import Any

from fleet.config.inventory import (
    DEFAULT_NETDATA_RESTART,
    DEFAULT_PORT,
    DEFAULT_ROOT,
    Host,
    Inventory,
    parse_cpu_list,
)
from fleet.config.inventory_data import (
    ALL,
    PRIORITY_VAR,
    UNGROUPED,
    EncryptedValue,
    SourceData,
    Val,
    VarSources,
    fail,
    fail_at,
)
from fleet.config.inventory_vars import VarsDir
from fleet.config.patterns import GroupLayout

# Older Ansible spellings still found in inventories, and the key each stands for.
_ALIASES = {
    "ansible_ssh_host": "ansible_host",
    "ansible_ssh_port": "ansible_port",
    "ansible_ssh_user": "ansible_user",
    "ansible_private_key_file": "ansible_ssh_private_key_file",
    "ansible_become_pass": "ansible_become_password",
    "ansible_sudo_pass": "ansible_become_password",
}
_TRUE = frozenset({"true", "yes", "on", "1"})
_FALSE = frozenset({"false", "no", "off", "0"})
# The one template fleet evaluates, the usual way to keep a secret out of the inventory:
# {{ lookup('env', 'NAME') }}. Any other template is refused rather than sent literally.
_ENV_LOOKUP = re.compile(
    r"""\{\{\s*lookup\(\s*(['"])env\1\s*,\s*(['"])([A-Za-z_][A-Za-z0-9_]*)\2\s*\)\s*\}\}"""
)


def build_inventory(path: Path, data: SourceData, vars_dir: VarsDir | None) -> Inventory:
    """The Inventory of what the sources define; vars_dir adds group_vars/host_vars."""
    if not data.host_vars:
        fail(path, None, "inventory defines no hosts")
    return _Builder(path, data, vars_dir).build()


class _Builder:
    def __init__(self, path: Path, data: SourceData, vars_dir: VarsDir | None) -> None:
        self.path = path
        self.data = data
        self.groups = data.groups
        self.vars_dir = vars_dir

    def order_groups(self) -> list[str]:
        """Groups with every parent before its children; raises on a cycle."""
        postorder: list[str] = []
        state: dict[str, int] = {}  # 1: on the current path, 2: done

        def visit(name: str, path: tuple[str, ...]) -> None:
            state[name] = 1
            for child, where in self.groups[name].children.items():
                if state.get(child) == 1:
                    start = path.index(child)
                    cycle = " -> ".join((*path[start:], child))
                    fail_at(where, f"group '{child}' is its own ancestor ({cycle})")
                if child not in state:
                    visit(child, (*path, child))
            state[name] = 2
            postorder.append(name)

        # Like Ansible's reconcile_inventory, a group nobody lists as a child is one of all's.
        children = {c for g in self.groups.values() for c in g.children}
        for name in list(self.groups):
            if name != ALL and name not in children:
                self.groups[ALL].children.setdefault(name, Val(None, self.path, None))
        visit(ALL, (ALL,))
        for name in self.groups:  # groups only reachable through a loop
            if name not in state:
                visit(name, (name,))
        return postorder[::-1]

    def group_priority(self, name: str) -> int:
        # Ansible keeps ansible_group_priority from inventory sources as the group's
        # priority, not as a var (Group.set_variable); vars files leave it a plain var.
        found = self.groups[name].vars.pop(PRIORITY_VAR, None)
        if found is None:
            return 1
        try:
            return int(found.value)
        except (TypeError, ValueError):
            fail_at(
                found, f"group '{name}': {PRIORITY_VAR} must be an integer, got {found.value!r}"
            )

    def build(self) -> Inventory:
        # As the sources declare them, before "all" adopts the orphans (fleet.config.patterns
        # applies Ansible's reconcile itself for host order).
        layout = {
            name: GroupLayout(tuple(group.hosts), tuple(group.children))
            for name, group in self.groups.items()
        }
        order = self.order_groups()
        # Ansible's group depth: the longest chain of parents from "all".
        depth = {ALL: 0}
        for name in order:
            for child in self.groups[name].children:
                depth[child] = max(depth.get(child, 0), depth.get(name, 0) + 1)
        priority = {name: self.group_priority(name) for name in self.groups}
        members: dict[str, set[str]] = {}
        for name in reversed(order):  # children first
            group = self.groups[name]
            members[name] = set(group.hosts).union(*(members[c] for c in group.children))

        host_vars = self.data.host_vars
        host_groups: dict[str, set[str]] = {host: set() for host in host_vars}
        for name, hosts in members.items():
            for host in hosts:
                host_groups[host].add(name)
        implicit_ungrouped = UNGROUPED not in self.groups
        if implicit_ungrouped:
            depth[UNGROUPED] = 1
            priority[UNGROUPED] = 1
            members[UNGROUPED] = set()
        for host, names in host_groups.items():
            names.add(ALL)
            if names - {ALL, UNGROUPED}:
                # Ansible's reconcile: a host in a real group is not also "ungrouped".
                if host in members[UNGROUPED]:
                    names.discard(UNGROUPED)
                    members[UNGROUPED].discard(host)
            else:
                names.add(UNGROUPED)
                members[UNGROUPED].add(host)

        hosts: dict[str, Host] = {}
        for host, names in host_groups.items():
            # Farther groups first so nearer ones override; then priority, then name.
            ordered = sorted(
                (g for g in names if g != ALL),
                key=lambda g: (depth[g], priority[g], g),
            )
            levels = [self.groups[ALL].vars]
            levels += [self.groups[g].vars for g in ordered if g in self.groups]
            if self.vars_dir is not None:
                levels.append(self.vars_dir.group(ALL))
                levels += [self.vars_dir.group(g) for g in ordered]
            levels.append(host_vars[host])
            if self.vars_dir is not None:
                levels.append(self.vars_dir.host(host))
            merged: dict[str, Val] = {}
            settings: dict[str, tuple[str, Val]] = {}
            for level in levels:
                merged.update(level)
                _apply_settings(settings, level)
            hosts[host] = self.make_host(host, tuple(sorted(names)), merged, settings)

        group_names = list(self.groups)
        if implicit_ungrouped:
            group_names.append(UNGROUPED)  # last, as in `ansible-inventory --graph`
        groups = {g: tuple(h for h in host_vars if h in members[g]) for g in group_names}
        return Inventory(path=self.path, hosts=hosts, groups=groups, layout=layout)

    def make_host(
        self,
        name: str,
        groups: tuple[str, ...],
        merged: dict[str, Val],
        settings: dict[str, tuple[str, Val]],
    ) -> Host:
        def pick(key: str) -> tuple[str, Val | None]:
            """The key as written (maybe an old alias) and its value; null counts as unset."""
            written, found = settings.get(key, (key, None))
            if found is None or found.value is None:
                return key, None
            if isinstance(found.value, EncryptedValue):
                fail_at(
                    found,
                    f"host '{name}': {written} is vault-encrypted; "
                    "fleet cannot decrypt Ansible Vault values",
                )
            return written, found

        def text(key: str, found: Val | None, what: str = "a non-empty string") -> str | None:
            if found is None:
                return None
            if not isinstance(found.value, str) or not found.value:
                fail_at(found, f"host '{name}': {key} must be {what}, got {found.value!r}")
            return found.value

        def local_path(key: str, found: Val | None) -> str | None:
            value = text(key, found, "a path")
            return os.path.expanduser(value) if value is not None else None

        address = text(*pick("ansible_host")) or name
        user = text(*pick("ansible_user"))
        key_file = local_path(*pick("ansible_ssh_private_key_file"))
        known_hosts = local_path(*pick("fleet_known_hosts"))
        netdata_restart = text(*pick("fleet_netdata_restart")) or DEFAULT_NETDATA_RESTART

        port = DEFAULT_PORT
        key, found = pick("ansible_port")
        if found is not None:
            value = found.value
            parsed: int | None = None
            if isinstance(value, int) and not isinstance(value, bool):
                parsed = value
            elif isinstance(value, str) and value.isascii() and value.isdigit():
                parsed = int(value)
            if parsed is None or not 1 <= parsed <= 65535:
                fail_at(
                    found,
                    f"host '{name}': {key} must be an integer from 1 to 65535, got {value!r}",
                )
            port = parsed

        become = False
        key, found = pick("ansible_become")
        if found is not None:
            flag = _as_bool(found.value)
            if flag is None:
                fail_at(
                    found,
                    f"host '{name}': {key} must be a boolean (true/false, yes/no, on/off, 1/0), "
                    f"got {found.value!r}",
                )
            become = flag

        root = DEFAULT_ROOT
        key, found = pick("fleet_root")
        if found is not None:
            if not isinstance(found.value, str) or not found.value.startswith("/"):
                fail_at(
                    found,
                    f"host '{name}': {key} must be an absolute path, got {found.value!r}",
                )
            if "\n" in found.value:
                # The probe's output names files line by line: such a path cannot be framed.
                fail_at(found, f"host '{name}': {key} must not contain a newline")
            root = found.value

        cpus: frozenset[int] | None = None
        cpus_text: str | None = None
        key, found = pick("fleet_cpus")
        if found is not None:
            value = found.value
            if isinstance(value, str):
                cpus_text = value
            elif isinstance(value, int) and not isinstance(value, bool):
                cpus_text = found.raw if found.raw is not None else str(value)
            else:
                fail_at(
                    found,
                    f"host '{name}': {key} must be a cpu list like \"0-47\", got {value!r}",
                )
            try:
                cpus = parse_cpu_list(cpus_text)
            except ValueError as exc:
                fail_at(found, f"host '{name}': {key}: {exc}")

        become_user = text(*pick("ansible_become_user"))
        become_password: str | None = None
        key, found = settings.get("ansible_become_password", ("", None))
        # A vaulted password stays unknown (fleet cannot decrypt Vault): --ask-become-pass.
        if found is not None and not isinstance(found.value, EncryptedValue | None):
            become_password = self.secret(name, key, found)
        ssh_args: list[str] = []
        for args_key in ("ansible_ssh_common_args", "ansible_ssh_extra_args"):
            key, found = pick(args_key)
            if found is None:
                continue
            try:
                ssh_args += shlex.split(str(found.value))
            except ValueError as exc:
                fail_at(found, f"host '{name}': {key}: {exc}")
        jump = text(*pick("fleet_jump"), "a ProxyJump spec like user@bastion:22")

        shown = {key: val.value for key, val in merged.items()}
        # Code that asks "did the inventory set ansible_host?" must also see it when it was
        # spelled ansible_ssh_host, and see the value that actually won.
        sources = dict(merged)
        for key in _ALIASES.values():
            if key in settings:
                shown[key] = settings[key][1].value
                sources[key] = settings[key][1]
        return Host(
            name=name,
            address=address,
            port=port,
            user=user,
            key_file=key_file,
            become=become,
            groups=groups,
            vars=MappingProxyType(shown),
            fleet_root=root,
            known_hosts=known_hosts,
            netdata_restart=netdata_restart,
            cpus=cpus,
            cpus_text=cpus_text,
            become_user=become_user,
            become_password=become_password,
            ssh_args=tuple(ssh_args),
            jump=jump,
            var_sources=VarSources(sources),
        )

    def secret(self, name: str, key: str, found: Val) -> str:
        """A password as written, or read from the environment by an env lookup."""
        value = found.value
        if isinstance(value, int | float) and not isinstance(value, bool):
            value = found.raw if found.raw is not None else str(value)
        if not isinstance(value, str):
            fail_at(found, f"host '{name}': {key} must be a string")
        if "{{" not in value and "{%" not in value:
            return value
        match = _ENV_LOOKUP.fullmatch(value.strip())
        if match is None:
            fail_at(
                found,
                f"host '{name}': {key}: the only template fleet evaluates is "
                "{{ lookup('env', 'NAME') }}",
            )
        env_value = os.environ.get(match[3])
        if env_value is None:
            fail_at(found, f"host '{name}': {key}: environment variable {match[3]} is not set")
        return env_value


def _apply_settings(settings: dict[str, tuple[str, Val]], source: dict[str, Val]) -> None:
    """Merge one level's vars into the keys fleet reads, resolving old aliases per level.

    Resolving per level keeps "nearer wins" true across spellings: a host's ansible_ssh_user
    beats a group's ansible_user. Within one level the modern spelling wins.
    """
    for key, val in source.items():
        if key in _ALIASES:
            settings[_ALIASES[key]] = (key, val)
    for key, val in source.items():
        if key not in _ALIASES:
            settings[key] = (key, val)


def _as_bool(value: Any) -> bool | None:
    """Ansible's booleans; None when the value is not one."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        lowered = value.lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
    return None
