"""group_vars/ and host_vars/ beside an inventory, found as Ansible's host_group_vars finds them.

For an entity NAME in `group_vars/` (or `host_vars/`): the first of `NAME`, `NAME.yml`,
`NAME.yaml`, `NAME.json` that exists; when it is a directory, every file under it (recursively,
sorted by name, skipping hidden files, `~` backups and other extensions), later files
overriding earlier ones key by key.
"""

from __future__ import annotations

import os
from pathlib import Path

from fleet.config.inventory_data import Val, fail
from fleet.config.inventory_yaml import read_vars_file

VARS_EXTENSIONS = (".yml", ".yaml", ".json")
VAULT_HEADER = "$ANSIBLE_VAULT;"


class VaultedFile(Exception):
    """A whole file encrypted with Ansible Vault: only ansible-core (with the password) reads it."""

    def __init__(self, path: Path) -> None:
        super().__init__(str(path))
        self.path = path


def find_vars_files(directory: Path, name: str) -> list[Path]:
    """The files host_group_vars would load for NAME under directory, in load order."""
    base = directory / name
    for candidate in [base, *(Path(f"{base}{ext}") for ext in VARS_EXTENSIONS)]:
        if candidate.is_dir():
            return _dir_files(candidate)
        if candidate.exists():
            return [candidate]
    return []


def _dir_files(directory: Path) -> list[Path]:
    found: list[Path] = []
    for entry in sorted(os.listdir(directory)):
        if entry.startswith(".") or entry.endswith("~"):
            continue
        path = directory / entry
        ext = os.path.splitext(entry)[1]
        if path.is_dir() and not ext:
            found.extend(_dir_files(path))
        elif path.is_file() and (not ext or ext in VARS_EXTENSIONS):
            found.append(path)
    return found


def read_text(path: Path, ini_comments: bool = False) -> str:
    """A source file as text; InventoryError naming the file (and line) when it cannot be.

    ini_comments: like Ansible's ini plugin, a comment line need not be UTF-8 (it is blanked).
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        fail(path, None, "no such inventory file")
    except OSError as exc:
        fail(path, None, exc.strerror or str(exc))
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        if not ini_comments:
            fail(path, data.count(b"\n", 0, exc.start) + 1, "not valid UTF-8 text")
    lines: list[str] = []
    for number, line in enumerate(data.split(b"\n"), 1):
        if line[:1] in (b"#", b";"):
            line = b""
        try:
            lines.append(line.decode("utf-8"))
        except UnicodeDecodeError:
            fail(path, number, "not valid UTF-8 text")
    return "\n".join(lines)


def is_vaulted(text: str) -> bool:
    return text.lstrip().startswith(VAULT_HEADER)


class VarsDir:
    """group_vars/ and host_vars/ of one inventory base directory, each file read once."""

    def __init__(self, base: Path) -> None:
        self.base = base
        # One listing per directory instead of four stats per host: 1000 hosts stay cheap.
        self._names: dict[str, frozenset[str]] = {}
        for sub in ("group_vars", "host_vars"):
            try:
                self._names[sub] = frozenset(os.listdir(base / sub))
            except (FileNotFoundError, NotADirectoryError):
                self._names[sub] = frozenset()
        self._files: dict[Path, dict[str, Val]] = {}
        self._entities: dict[tuple[str, str], dict[str, Val]] = {}

    def group(self, name: str) -> dict[str, Val]:
        return self._entity("group_vars", name)

    def host(self, name: str) -> dict[str, Val]:
        return self._entity("host_vars", name)

    def _entity(self, sub: str, name: str) -> dict[str, Val]:
        cached = self._entities.get((sub, name))
        if cached is not None:
            return cached
        merged: dict[str, Val] = {}
        # Like Ansible, names that are absolute paths (chroot-style hosts) get no vars files.
        listed = self._names[sub]
        if listed and name and not name.startswith(os.sep):
            head = name.split(os.sep, 1)[0]
            if any(n in listed for n in (head, *(head + ext for ext in VARS_EXTENSIONS))):
                for path in find_vars_files(self.base / sub, name):
                    merged.update(self._load(path))
        self._entities[(sub, name)] = merged
        return merged

    def _load(self, path: Path) -> dict[str, Val]:
        cached = self._files.get(path)
        if cached is None:
            text = read_text(path)
            if is_vaulted(text):
                raise VaultedFile(path)
            cached = self._files[path] = read_vars_file(path, text)
        return cached
