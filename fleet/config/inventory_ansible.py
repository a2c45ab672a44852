"""The long tail of inventory sources, read by ansible-core itself: `ansible-inventory --list`.

Executable inventory scripts, inventory plugin configs (`plugin: amazon.aws.aws_ec2`), TOML,
vault-encrypted files: fleet does not re-implement them. When ansible-core is installed its
answer (hosts, groups, children and every host's vars already merged) becomes SourceData;
otherwise the user is told, in one line, what to install.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from fleet.config.inventory_data import ALL, EncryptedValue, SourceData, Val, fail

INSTALL_HINT = "needs ansible-core to read (pip install 'fleet[ansible]')"
TIMEOUT_S = 300  # cloud inventory plugins page through APIs; a hung one must still end
# Make an unreadable source an error (not a warning and an empty inventory).
_ENV = {
    "ANSIBLE_INVENTORY_UNPARSED_FAILED": "True",
    "ANSIBLE_INVENTORY_ANY_UNPARSED_IS_FAILED": "True",
    "ANSIBLE_NOCOLOR": "True",
    "ANSIBLE_FORCE_COLOR": "False",
}


def find_ansible_inventory(path_env: str | None = None, python: str | None = None) -> str | None:
    """`ansible-inventory` on PATH, else next to this Python (a venv with fleet[ansible])."""
    found = shutil.which("ansible-inventory", path=path_env)
    if found is not None:
        return found
    beside = Path(python or sys.executable).parent / "ansible-inventory"
    return str(beside) if os.access(beside, os.X_OK) else None


def run_ansible_inventory(source: Path, needs: Path) -> dict[str, Any]:
    """ansible-inventory's JSON for source; InventoryError naming `needs` when it is missing."""
    exe = find_ansible_inventory(os.environ.get("PATH"))
    if exe is None:
        fail(needs, None, INSTALL_HINT)
    try:
        done = subprocess.run(
            [exe, "-i", str(source), "--list"],
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
            env={**os.environ, **_ENV},
            check=False,
        )
    except subprocess.TimeoutExpired:
        fail(source, None, f"ansible-inventory gave no answer in {TIMEOUT_S} s")
    except OSError as exc:
        fail(source, None, f"cannot run {exe}: {exc.strerror or exc}")
    if done.returncode != 0:
        why = _error_line(done.stderr)
        if "vault" in why.lower():
            why += " (give ansible the password: ANSIBLE_VAULT_PASSWORD_FILE or ansible.cfg)"
        if needs != source:
            fail(needs, None, f"ansible-inventory -i {source} failed: {why}")
        fail(source, None, f"ansible-inventory failed: {why}")
    try:
        data = json.loads(done.stdout)
    except json.JSONDecodeError as exc:
        fail(source, None, f"ansible-inventory printed no JSON inventory ({exc})")
    if not isinstance(data, dict):
        fail(source, None, "ansible-inventory printed no JSON inventory (not an object)")
    return data


def _error_line(stderr: str) -> str:
    """The line that says what went wrong, out of ansible's multi-line report."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    # "Completely failed to parse inventory source" says less than the first plugin's reason.
    for line in lines:
        if "Failed to parse inventory with" in line and "plugin:" in line:
            return line.removeprefix("[WARNING]:").strip()
    for line in lines:
        if line.startswith(("[ERROR]", "ERROR")):
            return line.split(":", 1)[1].strip() if ":" in line else line
    return lines[-1] if lines else "no error message"


def read_ansible_json(source: Path, listing: dict[str, Any], data: SourceData) -> None:
    """Add `ansible-inventory --list` output to data; each var is placed at the source."""
    meta = listing.get("_meta")
    hostvars = meta.get("hostvars", {}) if isinstance(meta, dict) else {}
    if not isinstance(hostvars, dict):
        hostvars = {}

    def visit(name: str, seen: frozenset[str]) -> None:
        entry = listing.get(name)
        group = data.group(name)
        if not isinstance(entry, dict):
            return
        for host in entry.get("hosts") or []:
            host_vars = data.add_host(group, str(host))
            for key, value in (hostvars.get(host) or {}).items():
                host_vars[key] = Val(_plain(value), source, None)
        for child in entry.get("children") or []:
            child = str(child)
            group.children.setdefault(child, Val(None, source, None))
            if child not in seen:
                visit(child, seen | {child})

    visit(ALL, frozenset({ALL}))
    for name in listing:  # groups not reached from "all" (should not happen, but cheap)
        if name != "_meta" and name not in data.groups:
            visit(name, frozenset({name}))


def _plain(value: Any) -> Any:
    """JSON back to inventory values: a vaulted value stays opaque, unsafe ones plain."""
    if isinstance(value, dict):
        if set(value) == {"__ansible_vault"}:
            return EncryptedValue(str(value["__ansible_vault"]))
        if set(value) == {"__ansible_unsafe"}:
            return _plain(value["__ansible_unsafe"])
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value
