"""The host's remediation lock (a directory, fleet/remote/apply.sh's `lock`/`unlock` ops): one
remediation or rollback per host at a time; a lock whose owner is gone or too old is taken
over, and said so."""

from __future__ import annotations

import contextlib
import os
import socket
import time

from fleet.remediate.context import StepFailed
from fleet.remediate.journal import operator
from fleet.remediate.session import HostSession
from fleet.remote.apply import Op
from fleet.transport.ssh import TransportError

LOCK_PATH = "/run/fleet-remediate.lock"


def _owner_line(run_id: str, now: int) -> str:
    return "\t".join([run_id, operator(), socket.gethostname(), str(os.getpid()), str(now)])


def stale(owner: str, remote_now: int, ttl: float) -> str | None:
    """Why a held lock may be taken over, or None when its owner may still be at work."""
    parts = owner.rstrip("\n").split("\t")
    if len(parts) != 5 or not parts[3].isdigit() or not parts[4].isdigit():
        return None
    run_id, _op, controller, pid, since = parts
    if controller == socket.gethostname():
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return f"run {run_id} (pid {pid} on this controller) is gone"
        except PermissionError:
            pass
    if remote_now - int(since) > ttl:
        return f"run {run_id} took it {remote_now - int(since)} s ago (--lock-ttl {ttl:g})"
    return None


def _describe_owner(owner: str) -> str:
    parts = owner.rstrip("\n").split("\t")
    if len(parts) == 5:
        return f"run {parts[0]} by {parts[1]}@{parts[2]} pid {parts[3]}"
    return owner.strip() or "unknown owner"


def acquire_lock(s: HostSession) -> tuple[str, str | None]:
    """Take the host's remediation lock: (owner line, note about a stale lock taken over)."""
    owner = _owner_line(s.ctx.run_id, int(time.time()))
    out = s.run_ops([Op("lock", LOCK_PATH, "-", owner)])
    if out.ok:
        return owner, None
    held = out.first_problem()
    if held is None or held.status != "held":
        raise StepFailed(f"cannot take the lock {LOCK_PATH}: {held.detail if held else '?'}")
    current = held.after or ""
    remote_now = int(held.detail) if held.detail.isdigit() else int(time.time())
    why = stale(current, remote_now, s.ctx.lock_ttl_s)
    if why is None:
        raise StepFailed(
            f"another remediation holds {LOCK_PATH}: {_describe_owner(current)}; "
            "try again when it is done"
        )
    out = s.run_ops([Op("lock", LOCK_PATH, current.rstrip("\n"), owner)])
    if not out.ok:
        raise StepFailed(f"lost the race for the stale lock {LOCK_PATH}")
    return owner, f"took over a stale lock: {why}"


def release_quietly(s: HostSession, owner: str | None) -> None:
    """In a finally: a lock left behind is seen as stale by the next run and taken over."""
    if owner is None:
        return
    with contextlib.suppress(StepFailed, TransportError):
        s.run_ops([Op("unlock", LOCK_PATH, owner, "-")])
