"""Load an Ansible-style YAML inventory into Host records and select hosts by target patterns.

The file format is Ansible's YAML inventory, so an inventory that already drives Ansible works
unchanged. Every problem is raised as InventoryError with a one-line message that names the file
and, where one exists, the line.
"""

from __future__ import annotations

import ipaddress
import os
import re
import shlex
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from types import MappingProxyType
from typing import Any, NoReturn

import yaml
from yaml.reader import ReaderError

from fleet.errors import InventoryError

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

_ALL = "all"
# Ansible always has this implicit group: hosts that belong to no group but "all".
_UNGROUPED = "ungrouped"
_GROUP_KEYS = ("hosts", "children", "vars")
_NULL_TAG = "tag:yaml.org,2002:null"
_MERGE_TAG = "tag:yaml.org,2002:merge"
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
# Pattern terms are separated by ',' or ':', except inside a [...] character class.
_COMMA = re.compile(r",(?![^\[]*\])")
_COLON = re.compile(r":(?![^\[]*\])")
_CPU_ITEM = re.compile(r"([0-9]+)(?:-([0-9]+))?")
_HOST_PORT = re.compile(r"(.+):([0-9]+)")
# The one template fleet evaluates, the usual way to keep a secret out of the inventory:
# {{ lookup('env', 'NAME') }}. Any other template is refused rather than sent literally.
_ENV_LOOKUP = re.compile(
    r"""\{\{\s*lookup\(\s*(['"])env\1\s*,\s*(['"])([A-Za-z_][A-Za-z0-9_]*)\2\s*\)\s*\}\}"""
)


@dataclass(frozen=True)
class EncryptedValue:
    """An Ansible Vault (`!vault`) value: kept opaque because fleet cannot decrypt it."""

    ciphertext: str = field(repr=False)

    def __str__(self) -> str:
        return "<vault-encrypted>"


@dataclass(frozen=True)
class Host:
    name: str
    address: str  # ansible_host or name
    port: int  # ansible_port or 22
    user: str | None
    key_file: str | None
    become: bool
    groups: tuple[str, ...]  # every group holding the host, directly or via children, sorted
    vars: Mapping[str, Any] = field(compare=False, hash=False)  # merged, read-only
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


@dataclass(frozen=True)
class Inventory:
    path: Path
    hosts: dict[str, Host]  # in inventory order
    groups: dict[str, tuple[str, ...]]  # group -> host names through children, "all" included

    def select(self, patterns: str | Sequence[str] | None) -> list[Host]:
        """Hosts matched by Ansible-style target patterns, in inventory order.

        None, "" or [] selects every host. Several patterns are a union, like a comma.
        """
        texts = [patterns] if isinstance(patterns, str) else list(patterns or [])
        plain: list[str] = []
        both: list[str] = []
        minus: list[str] = []
        for term in (t for text in texts for t in _split_terms(text)):
            bucket = plain
            if term[0] in "&!":
                bucket = both if term[0] == "&" else minus
                op, term = term[0], term[1:].strip()
                if not term:
                    raise InventoryError(f"{self.path}: pattern '{op}' names no host or group")
            bucket.append(term)
        if not (plain or both or minus):
            return list(self.hosts.values())

        # Match every term before combining so that a typo is reported even when an
        # earlier term already emptied the selection.
        plain_sets = [self._match(term) for term in plain]
        both_sets = [self._match(term) for term in both]
        minus_sets = [self._match(term) for term in minus]
        selected: set[str] = set().union(*plain_sets) if plain else set(self.hosts)
        for names in both_sets:
            selected &= names
        for names in minus_sets:
            selected -= names
        if not selected:
            shown = ",".join(texts)
            raise InventoryError(f"{self.path}: pattern '{shown}' selects no hosts")
        return [host for name, host in self.hosts.items() if name in selected]

    def _match(self, pattern: str) -> set[str]:
        names = {name for name in self.hosts if fnmatchcase(name, pattern)}
        matched_group = False
        for group, members in self.groups.items():
            if fnmatchcase(group, pattern):
                matched_group = True
                names.update(members)
        if not names and not matched_group:
            raise InventoryError(f"{self.path}: pattern '{pattern}' matches no host or group")
        return names


def _split_terms(text: str) -> list[str]:
    """Split a pattern into non-empty terms on ',' and ':' (Ansible's separators)."""
    terms: list[str] = []
    for chunk in _COMMA.split(text):
        chunk = chunk.strip()
        # Like Ansible, an IPv6 address is one term: its colons are not separators.
        if _is_ipv6(chunk.lstrip("!&").strip()):
            terms.append(chunk)
        else:
            terms.extend(part.strip() for part in _COLON.split(chunk))
    return [term for term in terms if term]


def default_inventory_path() -> Path:
    """$FLEET_INVENTORY if set and non-empty, else inventory/hosts.yml relative to the cwd."""
    return Path(os.environ.get(INVENTORY_ENV) or DEFAULT_INVENTORY)


def load_inventory(path: str | Path) -> Inventory:
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InventoryError(f"{path}: no such inventory file") from None
    except OSError as exc:
        raise InventoryError(f"{path}: {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise InventoryError(f"{path}:{line}: not valid UTF-8 text") from None
    return _Parser(path, text).parse()


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


class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads the tags Ansible adds (!unsafe, !vault)."""


def _construct_unsafe(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    # !unsafe only switches off Jinja templating in Ansible; the data itself is ordinary.
    if isinstance(node, yaml.ScalarNode):
        return loader.construct_scalar(node)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    assert isinstance(node, yaml.MappingNode)
    return loader.construct_mapping(node, deep=True)


def _construct_vault(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> EncryptedValue:
    # Existing inventories often vault a password fleet never reads: keep it, don't fail.
    return EncryptedValue(str(loader.construct_scalar(node)))


_Loader.add_constructor("!unsafe", _construct_unsafe)
_Loader.add_constructor("!vault", _construct_vault)

# libyaml composes a 1000-host inventory in ~10 ms where pure Python takes ~150 ms.
_CLoader: type | None = getattr(yaml, "CSafeLoader", None)


def _compose(text: str) -> yaml.Node | None:
    """The node tree, by libyaml when present; a broken file is composed again in pure
    Python, so error messages (and their line numbers) do not depend on libyaml."""
    if _CLoader is not None:
        try:
            return yaml.compose(text, Loader=_CLoader)
        except yaml.YAMLError:
            pass
    return yaml.compose(text, Loader=_Loader)


@dataclass
class _Val:
    """One variable as found in the file: its value, the line it was set on, its source text."""

    value: Any
    line: int
    raw: str | None = None  # scalar text as written (YAML would turn "010" into 8)


@dataclass
class _Group:
    name: str
    vars: dict[str, _Val] = field(default_factory=dict)
    hosts: dict[str, None] = field(default_factory=dict)  # direct members, ordered set
    children: dict[str, int] = field(default_factory=dict)  # child -> line first linked


_Items = list[tuple[str, yaml.Node, yaml.Node]]


def _line(node: yaml.Node) -> int:
    return node.start_mark.line + 1


def _is_null(node: yaml.Node) -> bool:
    return isinstance(node, yaml.ScalarNode) and node.tag == _NULL_TAG


def _describe(node: yaml.Node) -> str:
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    return repr(node.value) if node.value != "" else "an empty value"


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _is_ipv6(text: str) -> bool:
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


def _split_host_port(entry: str) -> tuple[str, int | None]:
    """Split Ansible's "name:port" host key; bare IPv6 addresses keep their colons."""
    if entry.startswith("[") and entry.endswith("]") and _is_ipv6(entry[1:-1]):
        return entry[1:-1], None
    match = _HOST_PORT.fullmatch(entry)
    if match is None:
        return entry, None
    head, port = match[1], int(match[2])
    if head.startswith("[") and head.endswith("]") and _is_ipv6(head[1:-1]):
        return head[1:-1], port
    # A ':' left outside [...] means the whole entry is an IPv6 address, not name:port.
    if ":" in re.sub(r"\[[^\]]*\]", "", head):
        return entry, None
    return head, port


def _expand_host_range(entry: str) -> list[str]:
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
    return [head + item + rest for item in items for rest in _expand_host_range(tail)]


class _Parser:
    """Walks the composed YAML node tree so that every error can carry a line number."""

    def __init__(self, path: Path, text: str) -> None:
        self.path = path
        self.text = text
        self.loader = _Loader("")
        self.groups: dict[str, _Group] = {_ALL: _Group(_ALL)}
        self.host_vars: dict[str, dict[str, _Val]] = {}  # key order is inventory order
        self._items_cache: dict[int, _Items] = {}

    def fail(self, where: yaml.Node | int, message: str) -> NoReturn:
        line = where if isinstance(where, int) else _line(where)
        raise InventoryError(f"{self.path}:{line}: {message}")

    def yaml_failure(self, exc: yaml.YAMLError) -> InventoryError:
        if isinstance(exc, yaml.MarkedYAMLError):
            mark = exc.problem_mark or exc.context_mark
            problem = exc.problem or exc.context or "invalid YAML"
            if exc.problem and exc.context:
                problem = f"{exc.problem} ({exc.context})"
            where = f":{mark.line + 1}" if mark is not None else ""
            return InventoryError(f"{self.path}{where}: {_one_line(problem)}")
        if isinstance(exc, ReaderError):
            line = self.text.count("\n", 0, exc.position) + 1
            char = exc.character if isinstance(exc.character, int) else ord(exc.character)
            return InventoryError(
                f"{self.path}:{line}: unacceptable character #x{char:04x}: {exc.reason}"
            )
        return InventoryError(f"{self.path}: {_one_line(str(exc))}")

    def parse(self) -> Inventory:
        try:
            root = _compose(self.text)
        except yaml.YAMLError as exc:
            raise self.yaml_failure(exc) from None
        if root is not None and not _is_null(root):
            if not isinstance(root, yaml.MappingNode):
                self.fail(root, f"top level must be a mapping of groups, got {_describe(root)}")
            self.check_duplicate_keys(root)
            for name, key_node, value in self.items(root, "top level"):
                if name != _ALL:
                    # Other top-level groups are implicitly children of "all".
                    self.groups[_ALL].children.setdefault(name, _line(key_node))
                self.walk_group(name, value, (name,))
        if not self.host_vars:
            raise InventoryError(f"{self.path}: inventory defines no hosts")
        return self.build()

    def check_duplicate_keys(self, root: yaml.Node) -> None:
        """Reject repeated keys anywhere; PyYAML would silently keep the last one."""
        first_dup: tuple[int, str] | None = None
        seen: set[int] = set()
        stack = [root]
        while stack:
            node = stack.pop()
            if id(node) in seen:  # aliases may share (or even loop back to) a node
                continue
            seen.add(id(node))
            if isinstance(node, yaml.MappingNode):
                lines: dict[str, int] = {}
                for key, value in node.value:
                    if isinstance(key, yaml.ScalarNode) and key.tag != _MERGE_TAG:
                        if key.value in lines and (first_dup is None or _line(key) < first_dup[0]):
                            message = (
                                f"duplicate key '{key.value}' (first given at line "
                                f"{lines[key.value]})"
                            )
                            first_dup = (_line(key), message)
                        lines.setdefault(key.value, _line(key))
                    stack.extend((key, value))
            elif isinstance(node, yaml.SequenceNode):
                stack.extend(node.value)
        if first_dup is not None:
            self.fail(*first_dup)

    def items(self, node: yaml.MappingNode, owner: str) -> _Items:
        """A mapping's (name, key node, value node) triples in file order, `<<:` merges applied."""
        cached = self._items_cache.get(id(node))
        if cached is not None:
            return cached
        try:
            self.loader.flatten_mapping(node)
        except yaml.YAMLError as exc:
            raise self.yaml_failure(exc) from None
        merged: dict[str, tuple[yaml.Node, yaml.Node]] = {}
        for key, value in node.value:
            if not isinstance(key, yaml.ScalarNode) or key.value == "":
                self.fail(key, f"{owner}: keys must be names, got {_describe(key)}")
            # Keys are names, so keep them as written: "01" must not become the int 1.
            merged[key.value] = (key, value)
        result = [(name, key, value) for name, (key, value) in merged.items()]
        self._items_cache[id(node)] = result
        return result

    def walk_group(self, name: str, node: yaml.Node, lineage: tuple[str, ...]) -> None:
        group = self.groups.setdefault(name, _Group(name))
        if _is_null(node):
            return
        if not isinstance(node, yaml.MappingNode):
            self.fail(
                node,
                f"group '{name}' must be a mapping with hosts, children or vars, "
                f"got {_describe(node)}",
            )
        for key, key_node, value in self.items(node, f"group '{name}'"):
            if key == "hosts":
                self.walk_hosts(group, value)
            elif key == "children":
                self.walk_children(group, value, lineage)
            elif key == "vars":
                group.vars.update(self.read_vars(value, f"group '{name}'"))
            else:
                self.fail(
                    key_node,
                    f"group '{name}': unknown key '{key}' (expected {', '.join(_GROUP_KEYS)})",
                )

    def walk_hosts(self, group: _Group, node: yaml.Node) -> None:
        if _is_null(node):
            return
        if not isinstance(node, yaml.MappingNode):
            self.fail(
                node,
                f"group '{group.name}': hosts must be a mapping of host names, "
                f"got {_describe(node)}",
            )
        for entry, key_node, value in self.items(node, f"group '{group.name}' hosts"):
            try:
                name_part, port = _split_host_port(entry)
                names = _expand_host_range(name_part)
            except ValueError as exc:
                self.fail(key_node, f"group '{group.name}': host '{entry}': {exc}")
            entry_vars: dict[str, _Val] = {}
            if port is not None:
                # As in Ansible, "name:port" sets ansible_port; explicit host vars still win.
                entry_vars["ansible_port"] = _Val(port, _line(key_node), str(port))
            if not _is_null(value):
                if not isinstance(value, yaml.MappingNode):
                    self.fail(
                        value, f"host '{entry}': vars must be a mapping, got {_describe(value)}"
                    )
                entry_vars.update(self.read_vars(value, f"host '{entry}'"))
            for host in names:
                group.hosts[host] = None
                self.host_vars.setdefault(host, {}).update(entry_vars)

    def walk_children(self, group: _Group, node: yaml.Node, lineage: tuple[str, ...]) -> None:
        if _is_null(node):
            return
        if not isinstance(node, yaml.MappingNode):
            self.fail(
                node,
                f"group '{group.name}': children must be a mapping of group names, "
                f"got {_describe(node)}",
            )
        for child, key_node, value in self.items(node, f"group '{group.name}' children"):
            if child == _ALL:
                self.fail(key_node, f"group '{group.name}': 'all' cannot be a child group")
            if child in lineage:
                # Checked here as well as in order_groups: a YAML alias can loop forever.
                cycle = " -> ".join((*lineage[lineage.index(child) :], child))
                self.fail(key_node, f"group '{child}' is its own ancestor ({cycle})")
            group.children.setdefault(child, _line(key_node))
            self.walk_group(child, value, (*lineage, child))

    def read_vars(self, node: yaml.Node, owner: str) -> dict[str, _Val]:
        if _is_null(node):
            return {}
        if not isinstance(node, yaml.MappingNode):
            self.fail(node, f"{owner}: vars must be a mapping, got {_describe(node)}")
        result: dict[str, _Val] = {}
        for name, key_node, value in self.items(node, f"{owner} vars"):
            try:
                data = self.loader.construct_object(value, deep=True)
            except yaml.YAMLError as exc:
                raise self.yaml_failure(exc) from None
            raw = value.value if isinstance(value, yaml.ScalarNode) else None
            result[name] = _Val(data, _line(key_node), raw)
        return result

    def order_groups(self) -> list[str]:
        """Groups with every parent before its children; raises on a cycle across definitions."""
        postorder: list[str] = []
        state: dict[str, int] = {}  # 1: on the current path, 2: done

        def visit(name: str, path: tuple[str, ...]) -> None:
            state[name] = 1
            for child, line in self.groups[name].children.items():
                if state.get(child) == 1:
                    start = path.index(child)
                    cycle = " -> ".join((*path[start:], child))
                    self.fail(line, f"group '{child}' is its own ancestor ({cycle})")
                if child not in state:
                    visit(child, (*path, child))
            state[name] = 2
            postorder.append(name)

        visit(_ALL, (_ALL,))
        return postorder[::-1]

    def build(self) -> Inventory:
        order = self.order_groups()
        # Ansible's group depth: the longest chain of parents from "all".
        depth = {_ALL: 0}
        for name in order:
            for child in self.groups[name].children:
                depth[child] = max(depth.get(child, 0), depth[name] + 1)
        members: dict[str, set[str]] = {}
        for name in reversed(order):  # children first
            group = self.groups[name]
            members[name] = set(group.hosts).union(*(members[c] for c in group.children))

        host_groups: dict[str, set[str]] = {host: set() for host in self.host_vars}
        for name, hosts in members.items():
            for host in hosts:
                host_groups[host].add(name)
        implicit_ungrouped = _UNGROUPED not in self.groups
        if implicit_ungrouped:
            depth[_UNGROUPED] = 1
            members[_UNGROUPED] = set()
        for host, names in host_groups.items():
            if names == {_ALL}:
                names.add(_UNGROUPED)
                members[_UNGROUPED].add(host)

        hosts: dict[str, Host] = {}
        for host, names in host_groups.items():
            # Farther groups first so nearer ones override; same depth: later name wins.
            ordered = sorted(names & self.groups.keys(), key=lambda g: (depth[g], g))
            sources = [self.groups[g].vars for g in ordered] + [self.host_vars[host]]
            merged: dict[str, _Val] = {}
            settings: dict[str, tuple[str, _Val]] = {}
            for source in sources:
                merged.update(source)
                _apply_settings(settings, source)
            hosts[host] = self.make_host(host, tuple(sorted(names)), merged, settings)

        group_names = list(self.groups)
        if implicit_ungrouped:
            group_names.append(_UNGROUPED)  # last, as in `ansible-inventory --graph`
        groups = {g: tuple(h for h in self.host_vars if h in members[g]) for g in group_names}
        return Inventory(path=self.path, hosts=hosts, groups=groups)

    def make_host(
        self,
        name: str,
        groups: tuple[str, ...],
        merged: dict[str, _Val],
        settings: dict[str, tuple[str, _Val]],
    ) -> Host:
        def pick(key: str) -> tuple[str, _Val | None]:
            """The key as written (maybe an old alias) and its value; null counts as unset."""
            written, found = settings.get(key, (key, None))
            if found is None or found.value is None:
                return key, None
            if isinstance(found.value, EncryptedValue):
                self.fail(
                    found.line,
                    f"host '{name}': {written} is vault-encrypted; "
                    "fleet cannot decrypt Ansible Vault values",
                )
            return written, found

        def text(key: str, found: _Val | None, what: str = "a non-empty string") -> str | None:
            if found is None:
                return None
            if not isinstance(found.value, str) or not found.value:
                self.fail(found.line, f"host '{name}': {key} must be {what}, got {found.value!r}")
            return found.value

        def local_path(key: str, found: _Val | None) -> str | None:
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
                self.fail(
                    found.line,
                    f"host '{name}': {key} must be an integer from 1 to 65535, got {value!r}",
                )
            port = parsed

        become = False
        key, found = pick("ansible_become")
        if found is not None:
            flag = _as_bool(found.value)
            if flag is None:
                self.fail(
                    found.line,
                    f"host '{name}': {key} must be a boolean (true/false, yes/no, on/off, 1/0), "
                    f"got {found.value!r}",
                )
            become = flag

        root = DEFAULT_ROOT
        key, found = pick("fleet_root")
        if found is not None:
            if not isinstance(found.value, str) or not found.value.startswith("/"):
                self.fail(
                    found.line,
                    f"host '{name}': {key} must be an absolute path, got {found.value!r}",
                )
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
                self.fail(
                    found.line,
                    f"host '{name}': {key} must be a cpu list like \"0-47\", got {value!r}",
                )
            try:
                cpus = parse_cpu_list(cpus_text)
            except ValueError as exc:
                self.fail(found.line, f"host '{name}': {key}: {exc}")

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
                self.fail(found.line, f"host '{name}': {key}: {exc}")
        jump = text(*pick("fleet_jump"), "a ProxyJump spec like user@bastion:22")

        shown = {key: val.value for key, val in merged.items()}
        # Code that asks "did the inventory set ansible_host?" must also see it when it was
        # spelled ansible_ssh_host, and see the value that actually won.
        for key in _ALIASES.values():
            if key in settings:
                shown[key] = settings[key][1].value
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
        )

    def secret(self, name: str, key: str, found: _Val) -> str:
        """A password as written, or read from the environment by an env lookup."""
        value = found.value
        if isinstance(value, int | float) and not isinstance(value, bool):
            value = found.raw if found.raw is not None else str(value)
        if not isinstance(value, str):
            self.fail(found.line, f"host '{name}': {key} must be a string")
        if "{{" not in value and "{%" not in value:
            return value
        match = _ENV_LOOKUP.fullmatch(value.strip())
        if match is None:
            self.fail(
                found.line,
                f"host '{name}': {key}: the only template fleet evaluates is "
                "{{ lookup('env', 'NAME') }}",
            )
        env_value = os.environ.get(match[3])
        if env_value is None:
            self.fail(
                found.line, f"host '{name}': {key}: environment variable {match[3]} is not set"
            )
        return env_value


def _apply_settings(settings: dict[str, tuple[str, _Val]], source: dict[str, _Val]) -> None:
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
