"""A lab host without sshd: the `Remote` of fleet.remediate.session as `sh -s` on a local
tree, run the way a lab host's exec.sh runs it (the lab's bpftool and netdata first on PATH,
the host's own `timeout -k` bound), after which the lab kernel model reacts to the writes.

The remediation state machine runs on it unchanged; hooks let a test break one call."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from types import MappingProxyType

from fleet.config.inventory import Host
from fleet.lab import kernelmodel
from fleet.lab.lab import write_tool_dispatchers
from fleet.remote.shell import shell_command
from fleet.transport.endpoint import Endpoint
from fleet.transport.ssh import RunResult


def tree_host(tree: Path, name: str | None = None) -> Host:
    """The inventory entry of a lab tree (its netdata restart is the tree's own script)."""
    return Host(
        name=name or tree.name,
        address="127.0.0.1",
        port=22,
        user=None,
        key_file=None,
        become=False,
        groups=(),
        vars=MappingProxyType({}),
        fleet_root=str(tree),
        known_hosts=None,
        netdata_restart=str(tree / "usr/sbin/netdata-restart"),
        cpus=None,
        cpus_text=None,
    )


class LocalRemote:
    """`host`'s scripts in a local `sh`; `before_run(n, stdin)` runs before the n-th call
    (from 1) and may change the tree or raise, as a broken host or link would."""

    def __init__(self, host: Host, before_run: Callable[[int, bytes], None] | None = None) -> None:
        self.host = host
        self.endpoint = Endpoint(host.address, host.port, "root", ())
        self.tree = Path(host.fleet_root)
        # Beside the hosts' directory, not in it: the kernel model walks that one.
        self.tools = write_tool_dispatchers(self.tree.parent.with_name("lab-bin"))
        self.before_run = before_run
        self.calls = 0

    def run(self, stdin: bytes, deadline: float) -> RunResult:
        self.calls += 1
        if self.before_run is not None:
            self.before_run(self.calls, stdin)
        command = shell_command(deadline)
        env = dict(os.environ, PATH=f"{self.tools}:{os.environ.get('PATH', '')}")
        proc = subprocess.run(
            ["sh", "-c", command],
            input=stdin,
            capture_output=True,
            env=env,
            # A guard only: the host's own `timeout -k` ends the script at the deadline.
            timeout=max(1.0, deadline - time.monotonic()) + 30,
        )
        said = command + "\n" + stdin.decode("utf-8", "replace")
        kernelmodel.reconcile_all(self.tree.parent, said)
        out, err = proc.stdout.decode("utf-8", "replace"), proc.stderr.decode("utf-8", "replace")
        return RunResult(proc.returncode, out, err)

    def close(self) -> None:
        pass  # nothing held open
