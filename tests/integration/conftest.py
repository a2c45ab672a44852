"""A real lab (one OpenSSH sshd on 127.0.0.1 + host trees) shared by the integration tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from fleet import lab

pytestmark = pytest.mark.integration


@pytest.fixture(scope="session")
def lab6(tmp_path_factory: pytest.TempPathFactory) -> Iterator[lab.LabInfo]:
    """One host per scenario; stopped by pid at the end of the session."""
    state = tmp_path_factory.mktemp("lab6")
    info = lab.up(state / "state", hosts=6, scenario="mixed")
    try:
        yield info
    finally:
        lab.down(info.state_dir)


# The CLI runs with its own empty HOME so the machine's ~/.ssh (config, known_hosts, keys)
# cannot change what the tests see.
_HOME = tempfile.mkdtemp(prefix="fleet-test-home-")


def fleet_env() -> dict[str, str]:
    env = {**os.environ, "HOME": _HOME, "NO_COLOR": "1"}
    env.pop("SSH_AUTH_SOCK", None)
    env.pop("FLEET_INVENTORY", None)
    return env


def fleet_argv(*args: str | Path) -> list[str]:
    """The command line of the real CLI (for tests that start it themselves)."""
    return [sys.executable, "-m", "fleet.cli", *map(str, args)]


def run_fleet(*args: str | Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """The real CLI in a child process, as a person or cron would run it."""
    env = fleet_env()
    return subprocess.run(
        fleet_argv(*args),
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def audit_json(*args: str | Path) -> tuple[int, dict[str, Any]]:
    proc = run_fleet("audit", "--json", *args)
    assert proc.stdout, proc.stderr
    return proc.returncode, json.loads(proc.stdout)


def by_name(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {h["name"]: h for h in doc["hosts"]}


def statuses(host: dict[str, Any]) -> dict[str, str]:
    return {c["id"]: c["status"] for c in host["checks"]}


def inventory_variant(info: lab.LabInfo, path: Path, **all_vars: Any) -> Path:
    """A copy of the lab inventory with `all: vars:` overridden (same sshd, same trees)."""
    doc = yaml.safe_load(info.inventory.read_text())
    doc["all"]["vars"].update(all_vars)
    path.write_text(yaml.safe_dump(doc))
    return path
