"""`fleet hosts`: where and as whom fleet would connect to each host, before anything
connects (Ansible's `--list-hosts`, with OpenSSH's reading of ssh_config applied)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from fleet.config.inventory import default_inventory_path, load_inventory
from fleet.transport.endpoint import Endpoint
from fleet.transport.sshconfig import resolve_endpoints


@dataclass(frozen=True)
class HostView:
    name: str
    groups: tuple[str, ...]  # without the implicit `all`
    endpoint: Endpoint

    @property
    def via(self) -> str:
        """How the TCP stream reaches the host: a jump chain, a proxy command, or direct."""
        e = self.endpoint
        if e.proxy_command:
            return f"proxy: {e.proxy_command}"
        if e.jump:
            return "jump: " + " -> ".join(str(h) for h in e.jump)
        return "direct"


@dataclass(frozen=True)
class HostList:
    hosts: list[HostView]
    warnings: list[str]
    ssh_runs: int  # distinct `ssh -G` runs it took


def list_hosts(
    inventory: Path | None, limit: Sequence[str] | None, ssh_config: Path | None = None
) -> HostList:
    """Raises UsageError (exit 2) for a bad inventory, pattern or ssh_config."""
    hosts = load_inventory(inventory or default_inventory_path()).select(limit)
    res = resolve_endpoints(hosts, ssh_config)
    views = [
        HostView(h.name, tuple(g for g in h.groups if g != "all"), res.endpoints[h.name])
        for h in hosts
    ]
    return HostList(views, res.warnings, res.ssh_runs)
