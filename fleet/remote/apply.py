"""The command line of fleet/remote/apply.sh (remote writes, locks) and the parser of its output."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cache

from fleet.remote.probe import ERRNO_BY_MESSAGE
from fleet.remote.shell import remote_script, script_stdin


@dataclass(frozen=True)
class Op:
    """One remote operation of fleet/remote/apply.sh: MODE PATH CHECK DATA (see its header)."""

    mode: str
    path: str
    expect: str  # what the file must hold for the op to run (apply.sh's CHECK)
    data: str

    def args(self) -> list[str]:
        return [self.mode, self.path, self.expect, self.data]


@cache
def apply_script() -> str:
    return remote_script("apply.sh")


def apply_stdin(nonce: str, root: str, tag: str, ops: list[Op]) -> bytes:
    """What the remote `sh -s` reads: NONCE ROOT TAG OP... as its arguments, then the script
    (fleet/remote/shell.py). File contents travel here, never on the command line: a 68 KB
    netdata.conf there is "Argument list too long", and argv is public on the host."""
    args = [nonce, root, tag] + [a for op in ops for a in op.args()]
    return script_stdin(apply_script(), args)


READ_SCRIPT = 'exec cat -- "$1"\n'


def read_stdin(root: str, path: str) -> bytes:
    """Exact bytes of one file (the probe's grep loses whether the last line ends)."""
    return script_stdin(READ_SCRIPT, [root.rstrip("/") + path])


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
    problem: str | None = None  # framing broken: the output cannot be trusted

    @property
    def ok(self) -> bool:
        return self.complete and all(r.status in ("ok", "gone") for r in self.results)

    def first_problem(self) -> OpResult | None:
        return next((r for r in self.results if r.status not in ("ok", "gone")), None)


# "sh: 59: " (dash), "sh: line 59: " (bash, busybox): where in our script the shell was,
# which tells the user nothing.
_SHELL_PREFIX = re.compile(r"(^|: )(sh|fleet-apply): (line )?\d+: ")


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
        if out.complete and line:
            # Nothing of ours follows `done`.
            out.complete, out.problem = False, "output after the done frame"
            break
        if line.startswith(marker):
            tag, _, rest = line[len(marker) :].partition(" ")
            close()
            if tag == "begin" and started:
                out.problem = "a second begin frame"
                break
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
