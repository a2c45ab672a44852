"""What `-i` names, read as Ansible reads it: a file, or a directory of inventory sources.

A file is tried as Ansible's plugins would take it (script, auto, yaml, ini, toml in that
order): an executable is a script and a `.yml`/`.yaml` file with a top-level `plugin:` key an
inventory plugin config -- both, like TOML and vault-encrypted files, are handed to
ansible-core (fleet/config/inventory_ansible.py). `.yml`, `.yaml`, `.json` files are YAML; a file
without an extension is YAML when it reads as a YAML mapping, else INI; anything else is INI.
A directory contributes every file and subdirectory in it, in sorted order, except hidden
ones, group_vars, host_vars, vars_plugins and Ansible's ignored extensions.
group_vars/ and host_vars/ are read beside the file (or inside the directory) given.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import yaml

from fleet.config.inventory import Inventory
from fleet.config.inventory_ansible import read_ansible_json, run_ansible_inventory
from fleet.config.inventory_build import build_inventory
from fleet.config.inventory_data import SourceData, fail
from fleet.config.inventory_ini import read_ini_inventory
from fleet.config.inventory_vars import VarsDir, VaultedFile, is_vaulted, read_text
from fleet.config.inventory_yaml import read_yaml_inventory, top_keys, yaml_root
from fleet.errors import InventoryError

YAML_EXTENSIONS = (".yml", ".yaml", ".json")
# Ansible's INVENTORY_IGNORE_EXTS default (REJECT_EXTS + .orig, .cfg, .retry) and the names
# inventory_manager always skips in a directory source.
IGNORE_EXTS = (".pyc", ".pyo", ".swp", ".bak", "~", ".rpm", ".md", ".txt", ".rst")
IGNORE_EXTS += (".orig", ".cfg", ".retry")
_IGNORED = re.compile(
    "|".join(
        [r"^\.", "^host_vars$", "^group_vars$", "^vars_plugins$"]
        + [re.escape(ext) + "$" for ext in IGNORE_EXTS]
    )
)
# Extensions fleet reads itself even when the file is executable (Ansible would first try
# to run it as a script, fail, and then read it the same way).
_NOT_SCRIPTS = (*YAML_EXTENSIONS, ".ini")


class NeedsAnsible(Exception):
    """A source only ansible-core reads; `path` is the file that needs it."""

    def __init__(self, path: Path) -> None:
        super().__init__(str(path))
        self.path = path


def load_sources(path: Path) -> Inventory:
    """The inventory `-i path` names (InventoryError, one line, on bad input)."""
    if not path.exists() and "," in str(path):
        return _via_ansible(path, path)  # Ansible's "host1,host2," host list
    if not path.exists():
        fail(path, None, "no such inventory file")
    try:
        data = SourceData()
        if path.is_dir():
            read_directory(path, data)
            base = path
        else:
            read_file(path, data)
            base = path.parent
        return build_inventory(path, data, VarsDir(base))
    except (NeedsAnsible, VaultedFile) as need:
        return _via_ansible(path, need.path)


def _via_ansible(path: Path, needs: Path) -> Inventory:
    listing = run_ansible_inventory(path, needs)
    data = SourceData()
    read_ansible_json(path, listing, data)
    return build_inventory(path, data, None)


def read_directory(directory: Path, data: SourceData) -> None:
    try:
        names = sorted(os.listdir(directory))
    except OSError as exc:
        fail(directory, None, exc.strerror or str(exc))
    for name in names:
        if _IGNORED.search(name):
            continue
        path = directory / name
        if path.is_dir():
            read_directory(path, data)
        else:
            read_file(path, data)


def read_file(path: Path, data: SourceData) -> None:
    ext = os.path.splitext(path.name)[1]
    script = ext not in _NOT_SCRIPTS and path.is_file() and os.access(path, os.X_OK)
    if ext == ".toml" or script:
        raise NeedsAnsible(path)
    text = read_text(path, ini_comments=ext not in YAML_EXTENSIONS)
    if is_vaulted(text):
        raise NeedsAnsible(path)
    if ext in YAML_EXTENSIONS or not ext:
        try:
            root = yaml_root(path, text)[1]
        except InventoryError:
            if ext:
                raise
            root = None  # not YAML: the ini plugin gets its turn
        if ext in (".yml", ".yaml") and "plugin" in top_keys(root):
            raise NeedsAnsible(path)
        if ext or isinstance(root, yaml.MappingNode):
            read_yaml_inventory(path, text, data, root)
            return
    read_ini_inventory(path, text, data)
