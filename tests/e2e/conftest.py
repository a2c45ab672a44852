"""One real-kernel guest for the e2e tier: booted once, reset to the incident before each test.

A guest that cannot boot is an error, never a skip: this tier is the kernel's verdict.
"""

from __future__ import annotations

import base64
import json
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.e2e import vm as vmlib
from tests.integration.conftest import run_fleet

T = "/sys/kernel/tracing"
K = "/sys/kernel/debug/kprobes"
CONF = "/etc/netdata/netdata.conf"
# Everything a remediation or a rollback may change, as the kernel shows it.
STATE_GLOBS = [
    f"{T}/set_event",
    f"{T}/instances/*/set_event",
    f"{T}/kprobe_events",
    f"{T}/events/*/*/enable",
    f"{T}/instances/*/events/kprobes/*/enable",
    f"{T}/events/netdata/*/trigger",
    f"{K}/enabled",
    CONF,
]


_REPORTED: list[str] = []


def report(line: str) -> None:
    """A figure worth reading (boot time, CPU before/after): printed after the test summary."""
    _REPORTED.append(line)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    for line in _REPORTED:
        terminalreporter.write_line(f"e2e: {line}")


@dataclass
class Guest:
    vm: vmlib.Vm
    tmp: Path

    def sh(self, script: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """A command in the guest over the OpenSSH client: independent of fleet."""
        proc = subprocess.run(
            self.vm.ssh_argv(script), capture_output=True, text=True, timeout=300
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"guest: {script!r} -> {proc.returncode}: {proc.stderr}")
        return proc

    def read(self, *globs: str) -> dict[str, str | None]:
        """Files by path, byte-exact (base64 over the wire); None when unreadable."""
        script = (
            'for f in "$@"; do [ -e "$f" ] || continue; printf "@@ %s\\n" "$f"; '
            'base64 "$f" 2>/dev/null || echo "!"; done'
        )
        quoted = " ".join(globs)  # globs expand in the guest's shell
        out = self.sh(f"set -- {quoted}; {script}").stdout
        files: dict[str, str | None] = {}
        for chunk in out.split("@@ ")[1:]:
            path, _, body = chunk.partition("\n")
            body = body.strip()
            files[path] = None if body == "!" else base64.b64decode(body).decode()
        return files

    def text(self, path: str) -> str:
        value = self.read(path).get(path)
        assert value is not None, f"guest: cannot read {path}"
        return value

    def kernel_state(self) -> dict[str, str | None]:
        """What rollback must restore; kprobes/list sorted (hash-table order, not ours)."""
        state = self.read(*STATE_GLOBS)
        state[f"{K}/list"] = "".join(sorted(self.text(f"{K}/list").splitlines(True)))
        state["ebpf.plugin running"] = str(self.ebpf_plugin_running())
        return state

    def ebpf_plugin_running(self) -> bool:
        out = self.sh("grep -lx ebpf.plugin /proc/[0-9]*/comm || true").stdout
        return bool(out.strip())

    def inventory(self) -> Path:
        return self.vm.inventory(self.tmp / "inventory.yml")

    def fleet(self, *args: str, timeout: float = 600) -> tuple[int, dict[str, Any]]:
        out = self.tmp / f"fleet-{time.monotonic_ns()}.json"
        proc = run_fleet(
            *args, "-i", str(self.inventory()), "--connect-timeout", "60", "--json",
            "-o", str(out), timeout=timeout,
        )
        assert out.exists(), proc.stderr
        return proc.returncode, json.loads(out.read_text())


@pytest.fixture(scope="session")
def booted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[vmlib.Vm]:
    state = tmp_path_factory.mktemp("vm")
    t0 = time.monotonic()
    vm = vmlib.up(state)  # VmError propagates: the tier fails loudly
    total = time.monotonic() - t0
    report(f"guest booted in {vm.boot_s:.1f} s ({vm.accel}); build + boot {total:.1f} s")
    try:
        yield vm
    finally:
        crashed = "Kernel panic" in vm.console.read_text(errors="replace")
        vmlib.down(state)
        panic = "; the console shows a kernel panic" if crashed else ""
        report(f"guest stopped (pid {vm.pid}){panic}")


@pytest.fixture
def guest(
    booted: vmlib.Vm, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Guest]:
    """The incident as booted: every tracing object planted again, the load running."""
    monkeypatch.setenv("FLEET_STATE_DIR", str(tmp_path / "state"))
    g = Guest(booted, tmp_path)
    reset = g.sh("fleet-e2e reset && fleet-e2e load start")
    if reset.stderr.strip():  # a stuck ebpf.plugin stop (fleet-e2e): worth the summary
        report(f"reset: {reset.stderr.strip()}")
    yield g
    # A kernel oops fails the test that caused it, in the kernel's own words.
    oops = [line for line in booted.console.read_text(errors="replace").splitlines()
            if "BUG:" in line or "Oops:" in line]
    assert not oops, f"guest kernel: {oops[0]} (console {booted.console})"
