"""Where and as whom to connect to one host: the target, and the jump hosts in front of it.

Produced by the SSH settings resolver (inventory vars over ssh_config), consumed by the SSH
layer. Pure data: no paramiko here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType


@dataclass(frozen=True)
class Hop:
    """One ProxyJump entry, resolved with its own ssh_config like OpenSSH resolves it."""

    name: str  # as written in ProxyJump (`bastion`, `ops@bastion:2222`), for messages
    address: str
    port: int
    user: str
    key_files: tuple[str, ...] = ()

    def __str__(self) -> str:
        return f"{self.user}@{self.address}:{self.port}"


@dataclass(frozen=True)
class Endpoint:
    """After ~/.ssh/config and inventory vars are combined."""

    address: str
    port: int
    user: str
    key_files: tuple[str, ...]
    proxy_command: str | None = None  # tokens already expanded; run by paramiko's ProxyCommand
    jump: tuple[Hop, ...] = ()  # first hop first; empty means a direct TCP connection
    # setting -> where its value came from ("inventory var ansible_port", "~/.ssh/config:12",
    # "default"), for `fleet hosts -v`.
    sources: Mapping[str, str] = field(
        default_factory=lambda: MappingProxyType({}), compare=False, hash=False
    )
