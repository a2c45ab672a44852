"""The command line of fleet/apply.sh (remote writes, locks) and the parser of its output."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from functools import cache
from importlib import resources

from fleet.fixes import Op
from fleet.probe import ERRNO_BY_MESSAGE


@cache
def apply_script() -> str:
    return resources.files("fleet").joinpath("apply.sh").read_text()


def apply_command(nonce: str, root: str, tag: str, ops: list[Op]) -> str:
    """`sh -c SCRIPT fleet-apply NONCE ROOT TAG OP...`: every value one quoted argument
    (sudo, when the host wants it, is put around it by the connection: fleet/become.py)."""
    args = [nonce, root, tag] + [a for op in ops for a in op.args()]
    quoted = " ".join(shlex.quote(a) for a in args)
    return f"sh -c {shlex.quote(apply_script())} fleet-apply {quoted}"


def read_command(root: str, path: str) -> str:
    """Exact bytes of one file (the probe's grep loses whether the last line ends)."""
    full = root.rstrip("/") + path
    return f"cat -- {shlex.quote(full)}"


@dataclass
class OpResult:
    index: int
    status: str  # ok, fail, changed, held, gone
    detail: str = ""
    after: str | None = None

    @property
    def errno(self) -> str | None:
        """The errno a failure message names (shells word them differently)."""
        for message, name in ERRNO_BY_MESSAGE.items():
            if message in self.detail:
                return name
        return None


@dataclass
class ApplyOutput:
    results: list[OpResult] = field(default_factory=list)
    complete: bool = False

    @property
    def ok(self) -> bool:
        return self.complete and all(r.status in ("ok", "gone") for r in self.results)

    def first_problem(self) -> OpResult | None:
        return next((r for r in self.results if r.status not in ("ok", "gone")), None)


# "fleet-apply: 59: " (dash), "fleet-apply: line 59: " (bash, busybox): where in our script
# the shell was, which tells the user nothing.
_SHELL_PREFIX = re.compile(r"(^|: )fleet-apply: (line )?\d+: ")


def parse_apply_output(stdout: str, nonce: str) -> ApplyOutput:
    out = ApplyOutput()
    marker = nonce + " "
    current: OpResult | None = None
    body: list[str] | None = None

    def close() -> None:
        nonlocal body
        if current is not None and body is not None:
            current.after = "".join(f"{line}\n" for line in body)
        body = None

    started = False
    for line in stdout.split("\n"):
        if line.startswith(marker):
            tag, _, rest = line[len(marker) :].partition(" ")
            close()
            if tag == "begin":
                started = True
            elif tag == "op":
                index, _, rest = rest.partition(" ")
                status, _, detail = rest.partition(" ")
                current = OpResult(int(index), status, _SHELL_PREFIX.sub(r"\1", detail).strip())
                out.results.append(current)
            elif tag == "after":
                body = []
            elif tag == "done":
                out.complete = started
            continue
        if body is not None:
            body.append(line)
    close()
    return out
