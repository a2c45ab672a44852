"""known_hosts: strict verification like OpenSSH (hashed entries, [host]:port, @revoked)."""

from __future__ import annotations

import base64
import fcntl
import hashlib
import os
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path

from paramiko import HostKeys, PKey
from paramiko.hostkeys import HostKeyEntry, InvalidHostKey
from paramiko.ssh_exception import SSHException


class HostKeyProblem(Exception):
    """The server's key is unknown, changed or revoked: nothing is sent to that host."""


def host_key_name(address: str, port: int) -> str:
    """How OpenSSH names a host in known_hosts: `host` on port 22, else `[host]:port`."""
    return address if port == 22 else f"[{address}]:{port}"


def _glob(pattern: str, name: str) -> bool:
    """OpenSSH known_hosts wildcards: only `*` and `?`; `[` is literal (`[host]:port`)."""
    if "*" not in pattern and "?" not in pattern:
        return pattern == name
    rx = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(rx, name) is not None


def _matches(pattern_list: list[str], name: str) -> bool:
    hit = False
    for pat in pattern_list:
        if pat.startswith("|1|"):
            if HostKeys.hash_host(name, pat) == pat:
                hit = True
        elif pat.startswith("!"):
            if _glob(pat[1:], name):
                return False  # a negated pattern vetoes the whole line
        elif _glob(pat, name):
            hit = True
    return hit


@dataclass
class _Line:
    patterns: list[str]
    key: PKey
    revoked: bool
    source: str


@dataclass
class KnownHosts:
    """Every key from the given files, loaded once and shared by all connections."""

    files: list[Path]
    write_to: Path | None = None
    _lines: list[_Line] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def load(cls, files: list[Path], write_to: Path | None = None) -> KnownHosts:
        kh = cls(files=list(files), write_to=write_to)
        for f in files:
            kh._load_file(f)
        return kh

    def _load_file(self, path: Path) -> None:
        try:
            text = path.read_text()
        except (FileNotFoundError, NotADirectoryError):
            return
        for lineno, raw in enumerate(text.splitlines(), 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            revoked = False
            if line.startswith("@"):
                marker, _, line = line.partition(" ")
                if marker == "@revoked":
                    revoked = True
                else:
                    continue  # @cert-authority: host certificates are not supported
            try:
                entry = HostKeyEntry.from_line(line.strip(), lineno)
            except (InvalidHostKey, SSHException, ValueError):
                continue
            if entry is None:
                continue
            self._lines.append(_Line(entry.hostnames, entry.key, revoked, f"{path}:{lineno}"))

    def known_key_types(self, name: str) -> list[str]:
        return [
            ln.key.get_name()
            for ln in self._lines
            if not ln.revoked and _matches(ln.patterns, name)
        ]

    def verify(self, name: str, key: PKey, accept_new: bool) -> str:
        """Return how the key was accepted; raise HostKeyProblem otherwise."""
        blob = key.asbytes()
        fp = fingerprint(key)
        with self._lock:
            lines = list(self._lines)
        for ln in lines:
            if ln.revoked and ln.key.asbytes() == blob:
                raise HostKeyProblem(f"host key {fp} for {name} is REVOKED ({ln.source})")
        known = [ln for ln in lines if not ln.revoked and _matches(ln.patterns, name)]
        if any(ln.key.asbytes() == blob for ln in known):
            return "known"
        if known:
            # Any known key, of any type, makes a different key a changed one (OpenSSH's
            # accept-new rule): a man in the middle must not pass by offering another type.
            same = [ln for ln in known if ln.key.get_name() == key.get_name()] or known
            raise HostKeyProblem(
                f"HOST KEY CHANGED for {name}: server offers {key.get_name()} {fp}, "
                f"known_hosts has a {same[0].key.get_name()} key for it ({same[0].source}); "
                "refusing"
            )
        if not accept_new:
            where = ", ".join(str(f) for f in self.files) or "no known_hosts file"
            raise HostKeyProblem(
                f"unknown host key for {name} ({key.get_name()} {fp}) in {where}; "
                "add it, or run with --accept-new-host-keys"
            )
        self._record(name, key)
        return "accepted-new"

    def _record(self, name: str, key: PKey) -> None:
        target = self.write_to or (self.files[0] if self.files else None)
        if target is None:
            raise HostKeyProblem(f"no known_hosts file to record the new key for {name}")
        line = f"{name} {key.get_name()} {key.get_base64()}\n"
        with self._lock:
            target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(target, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                os.write(fd, line.encode())
            finally:
                os.close(fd)
            self._lines.append(_Line([name], key, False, f"{target} (new)"))


def fingerprint(key: PKey) -> str:
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")
