"""A lab bastion: one real OpenSSH sshd on 127.0.0.1 that only forwards to the lab's targets.

`AllowTcpForwarding yes` with `PermitOpen` limited to the targets' address:port, no shell use
intended; `LogLevel DEBUG1` so its log shows each accepted session and each `direct-tcpip`
open (tests and the benchmark count them). Started and stopped by pid, like the lab's sshd.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from fleet.lab import lab

_FILES = ("sshd_config", "ssh_host_ed25519_key", "ssh_host_ed25519_key.pub", "sshd.pid")

# What sshd logs at DEBUG1 (OpenSSH 9.x), one line per event counted.
_ACCEPTED = re.compile(r"Accepted publickey for \S+ from ")
_DIRECT_TCPIP = re.compile(r"server_request_direct_tcpip: originator .* target (\S+) port (\d+)")
_KEX_DONE = re.compile(r"(SSH2_MSG_NEWKEYS received|kex: algorithm: )")


@dataclass(frozen=True)
class Bastion:
    state_dir: Path
    address: str
    port: int
    user: str
    pid: int
    log: Path
    known_hosts_line: str  # `[127.0.0.1]:PORT ssh-ed25519 ...`, for a known_hosts file

    @property
    def spec(self) -> str:
        """As ProxyJump / fleet_jump spell it."""
        return f"{self.user}@{self.address}:{self.port}"


def free_port(avoid: int = 0) -> int:
    """A loopback port for a bastion that is to start (and restart) on the same port."""
    return lab._free_port(avoid)


def prepare(state_dir: Path, authorized_keys: Path, permit_open: list[tuple[str, int]]) -> Path:
    """Host key and sshd_config in `state_dir` (kept across stop/start); returns the config."""
    state = Path(os.path.abspath(state_dir))
    state.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = state / "ssh_host_ed25519_key"
    if not key.exists():
        lab._keygen(key, "fleet lab bastion host key")
    user = pwd.getpwuid(os.getuid()).pw_name
    lines = [
        "# fleet lab bastion: loopback only, key auth only, forwards to the lab targets only.",
        *lab.sshd_config_lines(key, state / "sshd.pid", authorized_keys, (user,), forwarding="yes"),
        "PermitOpen " + " ".join(f"{a}:{p}" for a, p in permit_open),
        # DEBUG1 logs every direct-tcpip open and each key exchange: tests count them.
        "LogLevel DEBUG1",
    ]
    config = state / "sshd_config"
    lab._write(config, "\n".join(lines) + "\n")
    return config


def start(
    state_dir: Path,
    authorized_keys: Path,
    permit_open: list[tuple[str, int]],
    port: int | None = None,
) -> Bastion:
    """Start the bastion sshd on 127.0.0.1 (`port`, else a free one); returns once it answers.

    Its log (`sshd.log` in `state_dir`) is appended to across restarts."""
    state = Path(os.path.abspath(state_dir))
    config = prepare(state, authorized_keys, permit_open)
    port = port or lab._free_port()
    log_path = state / "sshd.log"
    if os.getuid() == 0:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    listen = f"ListenAddress {lab.ADDRESS}:{port}"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [str(lab.SSHD), "-D", "-e", "-f", str(config), "-o", listen],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
    lab._CHILDREN[proc.pid] = proc
    if not lab._wait_banner(port, proc):
        stop_pid(proc.pid)
        where = f"{lab.ADDRESS}:{port}"
        raise lab.LabError(f"bastion sshd did not start on {where}: {lab._tail(log_path)}")
    pub = (state / "ssh_host_ed25519_key.pub").read_text().split()
    user = pwd.getpwuid(os.getuid()).pw_name
    line = f"[{lab.ADDRESS}]:{port} {pub[0]} {pub[1]}"
    return Bastion(state, lab.ADDRESS, port, user, proc.pid, log_path, line)


def session_pids(pid: int) -> list[int]:
    """The per-connection sshd processes forked by the listener `pid` (and theirs)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def start_agent(sock: Path) -> subprocess.Popen[bytes]:
    """A real ssh-agent on `sock` (where jump hosts' keys are found), once it listens; the
    caller stops it by pid."""
    agent = subprocess.Popen(
        ["ssh-agent", "-D", "-a", str(sock)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 5
    while not sock.exists():
        if agent.poll() is not None or time.monotonic() > deadline:
            agent.kill()
            agent.wait()
            raise lab.LabError(f"ssh-agent did not start on {sock}")
        time.sleep(0.01)
    return agent


def stop_pid(pid: int) -> None:
    """Stop the listener and the sessions it forked (an established session outlives its
    listener otherwise), by pid."""
    sessions = session_pids(pid)
    lab._stop(pid)
    for child in sessions:
        lab._stop(child)


def stop(b: Bastion) -> None:
    stop_pid(b.pid)


def kill(b: Bastion) -> None:
    """SIGKILL the listener and its sessions at once: the bastion dies mid-run, no goodbye."""
    for pid in [b.pid, *session_pids(b.pid)]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    stop_pid(b.pid)  # reaps


def remove(state_dir: Path) -> None:
    state = Path(os.path.abspath(state_dir))
    for name in (*_FILES, "sshd.log"):
        with contextlib.suppress(FileNotFoundError):
            (state / name).unlink()
    with contextlib.suppress(OSError):
        state.rmdir()


@dataclass(frozen=True)
class LogCounts:
    accepted: int  # sessions authenticated (one per client connection)
    direct_tcpip: int  # forwarded channels opened
    kex: int  # key exchanges completed
    targets: frozenset[tuple[str, int]]


def log_counts(log: Path, offset: int = 0) -> LogCounts:
    """Count what the bastion logged from byte `offset` on (to count one run of several)."""
    with open(log, "rb") as f:
        f.seek(offset)
        text = f.read().decode("utf-8", "replace")
    accepted = direct = kex = 0
    targets = set()
    for line in text.splitlines():
        if _ACCEPTED.search(line):
            accepted += 1
        m = _DIRECT_TCPIP.search(line)
        if m:
            direct += 1
            targets.add((m.group(1), int(m.group(2))))
        if _KEX_DONE.search(line) and "SSH2_MSG_NEWKEYS received" in line:
            kex += 1
    return LogCounts(accepted, direct, kex, frozenset(targets))
