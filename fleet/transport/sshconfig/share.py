"""One `ssh -G` answer for every address that OpenSSH cannot tell apart.

`ssh -G` costs ~7 ms of CPU, nearly all of it exec and dynamic linking: 1,000 distinct
addresses cost 7 s. Without Match, OpenSSH's answer depends on the address only through which
`Host` lines match it (and the host/hostname it prints), so addresses that match the same Host
lines of the same files, with otherwise the same argv, get the same answer. Anything else
(Match, canonicalization, a HostName with tokens) runs ssh -G per address.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

from fleet.config.inventory import Host
from fleet.transport.sshconfig.argv import option_values
from fleet.transport.sshconfig.openssh import Answer, AnswerCache, SSHConfigError
from fleet.transport.sshconfig.sources import ConfigReader


@functools.cache
def _glob(pattern: str) -> re.Pattern[str]:
    """OpenSSH's match_pattern: `*` and `?` only; the pattern is lowercased, the host not."""
    parts = ("." if c == "?" else ".*" if c == "*" else re.escape(c) for c in pattern.lower())
    return re.compile("".join(parts), re.DOTALL)


def host_line_matches(host: str, patterns: Sequence[str]) -> bool:
    """A `Host` line's rule: a matching negated pattern vetoes, else any positive one."""
    positive = False
    for p in patterns:
        if p.startswith("!"):
            if _glob(p[1:]).fullmatch(host):
                return False
        elif _glob(p).fullmatch(host):
            positive = True
    return positive


class _Matcher:
    """Which `Host` lines of some files match an address: literal patterns by lookup (a
    config with a block per host stays linear), wildcards and negations one by one."""

    def __init__(self, lines: list[list[str]]) -> None:
        self.literal: dict[str, list[int]] = {}
        self.other: list[tuple[int, list[str]]] = []
        for i, patterns in enumerate(lines):
            if any(p.startswith("!") or "*" in p or "?" in p for p in patterns):
                self.other.append((i, patterns))
            else:
                for p in patterns:
                    self.literal.setdefault(p.lower(), []).append(i)

    def signature(self, host: str) -> frozenset[int]:
        found = set(self.literal.get(host, ()))
        found.update(i for i, patterns in self.other if host_line_matches(host, patterns))
        return frozenset(found)


def _matcher(reader: ConfigReader, files: tuple[str, ...]) -> _Matcher:
    key = ("matcher", files)
    if key not in reader.derived:
        reader.derived[key] = _Matcher(reader.host_patterns(files))
    return reader.derived[key]


@dataclass(frozen=True)
class _Class:
    """An answer that other addresses may share, and how to recognise them."""

    files: tuple[str, ...]
    signature: frozenset[int]
    answer: Answer
    keeps_hostname: bool  # HostName set (without tokens): printed as is for every member


def _share(
    answer: Answer, address: str, argv: Sequence[str], reader: ConfigReader
) -> _Class | None:
    if answer.has_match or (answer.one("canonicalizehostname") or "false") not in ("false", "no"):
        return None
    set_by_config = [v for _, _, kw, v in reader.applied(answer) if kw == "hostname"]
    first = (option_values(argv, "hostname", None) or set_by_config or [None])[0]
    if first is not None and "%" in first:
        return None
    keeps = first is not None or answer.one("hostname") != address.lower()
    files = tuple(dict.fromkeys(answer.reads))
    return _Class(files, _matcher(reader, files).signature(address), answer, keeps)


def _as_member(c: _Class, address: str) -> Answer:
    """The class's answer for another address. Only what fleet reads is made exact (host,
    hostname; IdentityFile and ProxyCommand are printed raw and expanded per address later);
    a setting ssh -G prints expanded with %h (UserKnownHostsFile, say) keeps the first one's."""
    settings = dict(c.answer.settings)
    settings["host"] = (address,)
    if not c.keeps_hostname:
        settings["hostname"] = (address.lower(),)
    return Answer(
        MappingProxyType(settings), c.answer.reads, c.answer.applied, c.answer.includes, False
    )


_Classes = dict[tuple[str, ...], dict[frozenset[int], _Class]]  # files -> signature -> class


def _member(address: str, classes: _Classes, reader: ConfigReader) -> Answer | None:
    for files, table in classes.items():
        found = table.get(_matcher(reader, files).signature(address))
        if found is not None:
            return _as_member(found, address)
    return None


def shared_answers(
    hosts: Sequence[Host],
    argvs: Mapping[str, tuple[str, ...]],
    cache: AnswerCache,
    reader: ConfigReader,
) -> dict[str, Answer | SSHConfigError]:
    """Each host's `ssh -G` answer: run for one address of each class, shared by the rest."""
    pending: dict[tuple[str, ...], list[Host]] = {}
    for h in hosts:
        pending.setdefault(argvs[h.name][:-1], []).append(h)  # same argv but the address
    classes: dict[tuple[str, ...], _Classes] = {}
    shareable: dict[tuple[str, ...], bool] = {}
    out: dict[str, Answer | SSHConfigError] = {}
    while any(pending.values()):
        run: list[tuple[str, ...]] = []
        for prefix, group in pending.items():
            known = classes.get(prefix, {})
            left = []
            for h in group:
                shared = _member(h.address, known, reader) if known else None
                if shared is not None:
                    out[h.name] = shared
                else:
                    left.append(h)
            pending[prefix] = left
            if not left:
                continue
            if prefix not in shareable:
                reps = left[:1]  # first round: one address shows whether sharing applies
            elif not shareable[prefix]:
                reps = left  # nothing to share: every address on its own
            else:
                matcher = _matcher(reader, tuple(dict.fromkeys(f for fs in known for f in fs)))
                by_sig: dict[frozenset[int], Host] = {}
                for h in left:
                    by_sig.setdefault(matcher.signature(h.address), h)
                reps = list(by_sig.values())
            run += [argvs[h.name] for h in reps]
        cache.fill(run)
        for prefix, group in pending.items():
            left = []
            for h in group:
                answer = cache.answers.get(argvs[h.name])
                if answer is None:
                    left.append(h)
                    continue
                out[h.name] = answer
                c = (
                    _share(answer, h.address, prefix, reader)
                    if isinstance(answer, Answer)
                    else None
                )
                shareable[prefix] = shareable.get(prefix, True) and c is not None
                if c is not None:
                    classes.setdefault(prefix, {}).setdefault(c.files, {})[c.signature] = c
            pending[prefix] = left
    return out
