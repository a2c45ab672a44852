"""`fleet profile --folded DIR`: each host's folded stacks as a file of its own."""

from __future__ import annotations

import re
from pathlib import Path

from fleet.config.outfile import write_atomic
from fleet.errors import UsageError
from fleet.profile.result import HostProfile
from fleet.profile.stacks import render_folded


def folded_name(host: str) -> str:
    """A file name for a host name: nothing that walks out of DIR or hides the file."""
    safe = re.sub(r"[^A-Za-z0-9._@-]", "_", host).lstrip(".")
    return f"{safe or '_'}.folded"


def write_folded(profiles: list[HostProfile], directory: Path) -> list[Path]:
    """DIR/HOST.folded for every host with samples; the paths written."""
    if directory.exists() and not directory.is_dir():
        raise UsageError(f"{directory}: --folded needs a directory")
    written = []
    for p in profiles:
        if p.folded:
            path = directory / folded_name(p.host)
            write_atomic(path, render_folded(p.folded))
            written.append(path)
    return written
