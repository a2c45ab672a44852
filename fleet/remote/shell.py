"""How fleet's remote scripts reach a host (pure): the command line is a fixed `sh -s`; the
arguments (nonce, root, file contents) and the script itself travel on stdin.

argv is public on a Linux host (`/proc/PID/cmdline` is world-readable), so nothing secret or
large goes there: a process on the host that read the nonce could forge the probe's frames,
and a 68 KB netdata.conf on the command line is "Argument list too long". The host bounds the
run itself with the deadline the client keeps: GNU `timeout` signals its whole process group
(a `cat` blocked on a FIFO, a bpftool ignoring TERM: `-k` sends KILL after), so nothing of the
run outlives it even when the client has long closed the channel.
"""

from __future__ import annotations

import math
import shlex
import time
from collections.abc import Sequence
from functools import cache
from importlib import resources

# Seconds between the host's TERM and its KILL (timeout -k).
KILL_AFTER = 5
# The host's own limit trips this long after the client's: the client reports its deadline
# first (with its own words), the host then cleans up whatever still runs.
SLACK = 2


@cache
def remote_script(name: str) -> str:
    """A script of the package as the host runs it: the shared helpers (`inside`, and for
    the read-only scripts host_tools.sh), then it."""
    files = resources.files("fleet.remote")
    helpers = ["inside_root.sh"] + (["host_tools.sh"] if name != "apply.sh" else [])
    return "".join(files.joinpath(f).read_text() for f in [*helpers, name])


def script_stdin(script: str, args: Sequence[str]) -> bytes:
    """What `sh -s` reads: `set -- ARGS` (each single-quoted, so newlines and quotes stay
    literal), then the script, which finds its arguments in "$@"."""
    head = "set --" + "".join(" " + shlex.quote(a) for a in args) + "\n"
    return (head + script).encode("utf-8", "surrogateescape")


def shell_command(deadline: float | None) -> str:
    """The whole remote command line: `sh -s` under `timeout` when the host has one."""
    if deadline is None:
        return "sh -s"
    seconds = max(1, math.ceil(deadline - time.monotonic())) + SLACK
    inner = (
        "if command -v timeout >/dev/null 2>&1; then "
        f"exec timeout -k {KILL_AFTER} {seconds} sh -s; fi; exec sh -s"
    )
    return f"sh -c {shlex.quote(inner)}"
