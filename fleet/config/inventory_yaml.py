"""Ansible's YAML inventory (and YAML/JSON vars files) read into SourceData, with line numbers.

The node tree is walked rather than the loaded data so that every error names its line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NoReturn

import yaml
from yaml.reader import ReaderError

from fleet.config.inventory_data import (
    ALL,
    EncryptedValue,
    Group,
    SourceData,
    Val,
    expand_host_range,
    split_host_port,
)
from fleet.errors import InventoryError

_GROUP_KEYS = ("hosts", "children", "vars")
_NULL_TAG = "tag:yaml.org,2002:null"
_MERGE_TAG = "tag:yaml.org,2002:merge"


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


class _Parser:
    """Walks the composed YAML node tree so that every error can carry a line number."""

    def __init__(self, path: Path, text: str, data: SourceData | None = None) -> None:
        self.path = path
        self.text = text
        self.loader = _Loader("")
        self.data = data if data is not None else SourceData()
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

    def root(self) -> yaml.Node | None:
        """The document's top node; None for an empty document."""
        try:
            root = _compose(self.text)
        except yaml.YAMLError as exc:
            raise self.yaml_failure(exc) from None
        return None if root is None or _is_null(root) else root

    def parse(self, root: yaml.Node | None) -> SourceData:
        if root is not None:
            if not isinstance(root, yaml.MappingNode):
                self.fail(root, f"top level must be a mapping of groups, got {_describe(root)}")
            self.check_duplicate_keys(root)
            # Top-level groups nobody lists as a child become children of "all" when the
            # inventory is built (Ansible's reconcile), after the ones "all" declares.
            for name, _key_node, value in self.items(root, "top level"):
                self.walk_group(self.data.group(name), value, (name,))
        return self.data

    def val(self, value: Any, node: yaml.Node, raw: str | None = None) -> Val:
        return Val(value, self.path, _line(node), raw)

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

    def walk_group(self, group: Group, node: yaml.Node, lineage: tuple[str, ...]) -> None:
        name = group.name
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

    def walk_hosts(self, group: Group, node: yaml.Node) -> None:
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
                name_part, port = split_host_port(entry)
                names = expand_host_range(name_part)
            except ValueError as exc:
                self.fail(key_node, f"group '{group.name}': host '{entry}': {exc}")
            entry_vars: dict[str, Val] = {}
            # As in Ansible, "name:port" sets ansible_port; explicit host vars still win.
            port_val = None if port is None else self.val(port, key_node, str(port))
            if not _is_null(value):
                if not isinstance(value, yaml.MappingNode):
                    self.fail(
                        value, f"host '{entry}': vars must be a mapping, got {_describe(value)}"
                    )
                entry_vars.update(self.read_vars(value, f"host '{entry}'"))
            for host in names:
                self.data.add_host(group, host, port_val).update(entry_vars)

    def walk_children(self, group: Group, node: yaml.Node, lineage: tuple[str, ...]) -> None:
        if _is_null(node):
            return
        if not isinstance(node, yaml.MappingNode):
            self.fail(
                node,
                f"group '{group.name}': children must be a mapping of group names, "
                f"got {_describe(node)}",
            )
        for child, key_node, value in self.items(node, f"group '{group.name}' children"):
            if child == ALL:
                self.fail(key_node, f"group '{group.name}': 'all' cannot be a child group")
            if child in lineage:
                # Checked here as well as in order_groups: a YAML alias can loop forever.
                cycle = " -> ".join((*lineage[lineage.index(child) :], child))
                self.fail(key_node, f"group '{child}' is its own ancestor ({cycle})")
            group.children.setdefault(child, self.val(None, key_node))
            self.walk_group(self.data.group(child), value, (*lineage, child))

    def read_vars(self, node: yaml.Node, owner: str) -> dict[str, Val]:
        if _is_null(node):
            return {}
        if not isinstance(node, yaml.MappingNode):
            self.fail(node, f"{owner}: vars must be a mapping, got {_describe(node)}")
        result: dict[str, Val] = {}
        for name, key_node, value in self.items(node, f"{owner} vars"):
            try:
                data = self.loader.construct_object(value, deep=True)
            except yaml.YAMLError as exc:
                raise self.yaml_failure(exc) from None
            raw = value.value if isinstance(value, yaml.ScalarNode) else None
            result[name] = self.val(data, key_node, raw)
        return result


def yaml_root(path: Path, text: str) -> tuple[_Parser, yaml.Node | None]:
    """The composed document (raises InventoryError with the line on bad YAML)."""
    parser = _Parser(path, text)
    return parser, parser.root()


def read_yaml_inventory(
    path: Path, text: str, data: SourceData, root: yaml.Node | None = None
) -> None:
    """Add an Ansible YAML inventory's groups, hosts and vars to data."""
    parser = _Parser(path, text, data)
    parser.parse(root if root is not None else parser.root())


def top_keys(root: yaml.Node | None) -> list[str]:
    """The top-level keys of a document that is a mapping, else []."""
    if not isinstance(root, yaml.MappingNode):
        return []
    return [key.value for key, _ in root.value if isinstance(key, yaml.ScalarNode)]


def read_vars_file(path: Path, text: str) -> dict[str, Val]:
    """A group_vars/host_vars file: a mapping of var names (YAML or JSON); empty is none."""
    parser = _Parser(path, text)
    root = parser.root()
    if root is None:
        return {}
    if not isinstance(root, yaml.MappingNode):
        parser.fail(root, f"vars file must be a mapping of variable names, got {_describe(root)}")
    parser.check_duplicate_keys(root)
    return parser.read_vars(root, "vars file")
