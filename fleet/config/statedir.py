"""Where fleet keeps what must outlive a run: the remediation journal and the report history."""

from __future__ import annotations

import os
from pathlib import Path

from fleet.errors import UsageError


def state_dir() -> Path:
    """`$FLEET_STATE_DIR`, else `~/.local/state/fleet`; created 0700 (journals hold config)."""
    env = os.environ.get("FLEET_STATE_DIR")
    path = Path(env) if env else Path("~/.local/state/fleet").expanduser()
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        if path.stat().st_mode & 0o077:
            path.chmod(0o700)
    except OSError as exc:
        raise UsageError(f"{path}: cannot use as state directory: {exc.strerror}") from None
    return path
