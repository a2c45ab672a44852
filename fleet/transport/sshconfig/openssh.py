"""Asking OpenSSH: `ssh -G -vvv ARGV`, run in parallel, each distinct argv once, and
its answer (the settings, and the files and blocks its debug log says it applied) as data."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from types import MappingProxyType

from fleet.errors import UsageError

DEFAULT_WORKERS = 16


TIMEOUT_S = 20.0  # `Match exec` runs user commands


class SSHConfigError(UsageError):
    """ssh_config (or ssh args in the inventory) that OpenSSH itself refuses for a host."""


@dataclass(frozen=True)
class Answer:
    """One `ssh -G -vvv` run: the settings it printed and what its debug log says it read."""

    settings: Mapping[str, tuple[str, ...]]
    reads: tuple[str, ...] = ()  # config files in the order ssh opened them
    applied: frozenset[tuple[str, int]] = frozenset()  # Host/Match lines that matched
    includes: Mapping[tuple[str, int], tuple[str, ...]] = field(
        default_factory=lambda: MappingProxyType({})
    )
    has_match: bool = False  # a `Match` line was evaluated

    def one(self, key: str, default: str | None = None) -> str | None:
        values = self.settings.get(key)
        return values[0] if values else default


_READ = re.compile(r"debug1: Reading configuration data (.+)$")
_APPLY = re.compile(r"debug1: (.+) line (\d+): Applying options for ")
# "(parse only)": an Include in a block that did not match is read for syntax, not applied.
_INCLUDE = re.compile(
    r"debug3: (.+) line (\d+): Including file (.+) depth \d+(?: \(parse only\))?$"
)
_MATCH_LINE = re.compile(r"debug3: (.+) line (\d+): (?:not )?matched ")


def parse_ssh_G(stdout: str, stderr: str = "") -> Answer:
    """`ssh -G` output (`key value` lines) and its `-vvv` log, as data."""
    settings: dict[str, list[str]] = {}
    for line in stdout.splitlines():
        key, _, value = line.partition(" ")
        if key:
            settings.setdefault(key, []).append(value)
    reads: list[str] = []
    applied: set[tuple[str, int]] = set()
    includes: dict[tuple[str, int], list[str]] = {}
    match_at: tuple[str, int] | None = None
    has_match = False
    for line in stderr.splitlines():
        if m := _READ.match(line):
            reads.append(m[1])
        elif m := _APPLY.match(line):
            applied.add((m[1], int(m[2])))
        elif m := _INCLUDE.match(line):
            includes.setdefault((m[1], int(m[2])), []).append(m[3])
        elif line.startswith("debug2: checking match for"):
            match_at, has_match = None, True
        elif m := _MATCH_LINE.match(line):
            match_at = (m[1], int(m[2]))
        elif line.startswith("debug2: match found") and match_at:
            applied.add(match_at)
    return Answer(
        settings=MappingProxyType({k: tuple(v) for k, v in settings.items()}),
        reads=tuple(reads),
        applied=frozenset(applied),
        includes=MappingProxyType({k: tuple(v) for k, v in includes.items()}),
        has_match=has_match,
    )


def run_ssh_G(ssh: str, argv: Sequence[str]) -> Answer:
    """One `ssh -G -vvv ARGV`; a refusal becomes SSHConfigError with ssh's own words."""
    try:
        proc = subprocess.run(
            [ssh, "-G", "-vvv", *argv],
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise SSHConfigError(f"ssh -G did not finish in {TIMEOUT_S:g} s (a Match exec?)") from None
    if proc.returncode != 0:
        noise = ("debug", "OpenSSH_", "Pseudo-terminal")
        lines = [ln for ln in proc.stderr.splitlines() if ln and not ln.startswith(noise)]
        raise SSHConfigError("; ".join(lines[-3:]) or f"ssh -G exited {proc.returncode}")
    return parse_ssh_G(proc.stdout, proc.stderr)


class AnswerCache:
    """`ssh -G` answers by argv: each distinct argv runs once per fleet run."""

    def __init__(self, ssh: str, workers: int) -> None:
        self.ssh = ssh
        self.workers = workers
        self.answers: dict[tuple[str, ...], Answer | SSHConfigError] = {}
        self.runs = 0

    def fill(self, argvs: Iterable[tuple[str, ...]]) -> None:
        todo = list(dict.fromkeys(a for a in argvs if a not in self.answers))
        if not todo:
            return
        self.runs += len(todo)

        def one(argv: tuple[str, ...]) -> Answer | SSHConfigError:
            try:
                return run_ssh_G(self.ssh, argv)
            except SSHConfigError as exc:
                return exc

        with ThreadPoolExecutor(max_workers=max(1, min(self.workers, len(todo)))) as pool:
            for argv, answer in zip(todo, pool.map(one, todo), strict=True):
                self.answers[argv] = answer

    def get(self, argv: tuple[str, ...]) -> Answer:
        if argv not in self.answers:
            self.fill([argv])
        answer = self.answers[argv]
        if isinstance(answer, SSHConfigError):
            raise answer
        return answer
