"""ansible_become: the one wrapper that puts a remote command under sudo, and the watcher that
answers sudo's password prompt over the channel (pure: stderr bytes in, actions out).

Without a password the command runs under `sudo -n` (a prompt is an error, never a hang).
With one, sudo reads it from stdin (`-S`) behind a prompt of our own, and the command prints a
start marker before anything else runs. The password goes out only while sudo alone holds the
channel (after its prompt, before the start marker); once the command runs nothing on stderr
is acted on, so a remote command cannot ask for the password by printing a prompt.
"""

from __future__ import annotations

import re
import secrets
import shlex
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

from fleet.config.inventory import Host

# What sudo -n prints when it would have to ask (sudo 1.8/1.9, with and without requiretty).
SUDO_PASSWORD_HINTS = (
    "a password is required",
    "a terminal is required",
    "no tty present",
    "must have a tty",
)
NEEDS_PASSWORD = (
    "sudo -n needs a password (ansible_become is set): set ansible_become_password, "
    "pass --ask-become-pass, or allow NOPASSWD"
)
WRONG_PASSWORD = "sudo: wrong password"


def asked_for_password(become: Become | None, rc: int, stderr: str) -> bool:
    """sudo -n refused because it would have had to ask (the command never ran)."""
    return become is not None and rc != 0 and any(h in stderr for h in SUDO_PASSWORD_HINTS)


class BecomeError(Exception):
    """sudo did not start the command: wrong password, user not allowed, no prompt seen."""


@dataclass(frozen=True)
class Become:
    """How one host's commands run: as `user` (None: sudo's default, root), with `password`
    answered to sudo's prompt (None: `sudo -n`)."""

    user: str | None = None
    password: str | None = field(default=None, repr=False)

    @classmethod
    def of(cls, host: Host) -> Become | None:
        return cls(host.become_user, host.become_password) if host.become else None


@dataclass(frozen=True)
class Wrapped:
    """A command line as sent, and the markers its stderr carries (empty: nothing to watch)."""

    command: str
    prompt: bytes = b""
    started: bytes = b""

    @property
    def watched(self) -> bool:
        return bool(self.started)


def _token() -> str:
    return secrets.token_hex(12)


def wrap(command: str, become: Become | None, token: Callable[[], str] = _token) -> Wrapped:
    """`command` (a shell command line) as the host's become settings want it run."""
    if become is None:
        return Wrapped(command)
    user = f"-u {shlex.quote(become.user)} " if become.user else ""
    if become.password is None:
        return Wrapped(f"sudo -n {user}-- {command}")
    # Fresh markers per exec: hex only, so sudo's %-escapes in -p leave the prompt alone.
    prompt = f"fleet-sudo-prompt-{token()}:"
    started = f"fleet-sudo-started-{token()}"
    script = f"printf '%s\\n' {started} >&2; {command}"
    line = f"sudo -S -p {prompt} {user}-- sh -c {shlex.quote(script)}"
    return Wrapped(line, prompt.encode(), (started + "\n").encode())


# Sudo's own words for a refusal carry our whole wrapped command; the user needs the rest.
_NOT_ALLOWED = re.compile(r"is not allowed to execute '.*' as (\S+) on ")


def refusal(stderr: str) -> str:
    """One line for a sudo that exited without starting the command."""
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    if not lines:
        return "sudo exited before starting the command (no message)"
    last = _NOT_ALLOWED.sub(r"is not allowed to run commands as \1 on ", lines[-1])
    return f"sudo refused: {last.removeprefix('sudo: ')}"


SEND_PASSWORD = "send-password"
STARTED = "started"
WRONG = "wrong-password"


class SudoWatcher:
    """Reads a watched command's stderr until its start marker.

    `feed` returns the stderr to keep (markers stripped) and what the caller must do now.
    Everything before the start marker is held back (it is sudo's, and short); everything
    after it is the command's and passes through untouched."""

    def __init__(self, wrapped: Wrapped) -> None:
        self._prompt = wrapped.prompt
        self._started = wrapped.started
        self._held = b""
        self.prompts = 0
        self.running = not wrapped.watched

    def feed(self, data: bytes) -> tuple[bytes, list[str]]:
        if self.running:
            return data, []
        self._held += data
        actions: list[str] = []
        kept = b""
        while not self.running:
            p = self._held.find(self._prompt)
            s = self._held.find(self._started)
            if s >= 0 and (p < 0 or s < p):
                kept += self._held[:s]
                rest = self._held[s + len(self._started) :]
                self._held = b""
                self.running = True
                actions.append(STARTED)
                return kept + rest, actions
            if p >= 0:
                kept += self._held[:p]
                self._held = self._held[p + len(self._prompt) :]
                self.prompts += 1
                if self.prompts > 1:
                    return kept, [*actions, WRONG]
                actions.append(SEND_PASSWORD)
                continue
            break
        if b"Sorry, try again." in kept + self._held and self.prompts:
            return kept, [*actions, WRONG]
        # Held until the start marker: it may still arrive split across reads.
        self._held = kept + self._held
        return b"", actions

    def pending(self) -> bytes:
        """What sudo printed so far (the command never started): for the error message."""
        return self._held


def with_password(hosts: Iterable[Host], password: str | None) -> list[Host]:
    """--ask-become-pass: the typed password for every become host without one of its own
    (as with Ansible, a password set in the inventory wins)."""
    return [
        replace(h, become_password=password)
        if password is not None and h.become and h.become_password is None
        else h
        for h in hosts
    ]
