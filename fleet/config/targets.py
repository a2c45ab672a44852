"""What a command asks of its targets (the CLI's target options), as one request."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class AuditRequest:
    """What a command asks of its targets: which hosts, which checks, how to reach them
    (fleet.cli's target options; every field comes from there, none is dropped)."""

    inventory: Path | None = None
    limit: list[str] | None = None
    playbook: Path | None = None
    forks: int = 20
    max_open: int = 256
    procs: int | None = None  # --procs; None: fleet.audit.procs.default_procs
    scheduler: str | None = None  # --scheduler: a Dask scheduler's address
    shard_by: str = "fleet_site"
    cpu_window: int = 5
    connect_timeout: float = 10.0
    timeout: float | None = None
    known_hosts: Path | None = None
    accept_new_host_keys: bool = False
    become_password: str | None = field(default=None, repr=False)  # -K

    @classmethod
    def from_namespace(cls, args: Any) -> AuditRequest:
        return cls(**{f.name: getattr(args, f.name) for f in fields(cls)})
