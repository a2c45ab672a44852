"""Jump hosts: ONE authenticated connection per bastion for the whole run.

Every target behind a bastion gets its own paramiko Transport, carried in a `direct-tcpip`
channel of the bastion's transport: no `ssh -W` process and no key exchange with the bastion
per target. The bastion connection is a fabric `Connection` (chains `a,b` go through fabric's
`gateway=`), with fabric's defaults overridden: its AutoAddPolicy gives way to fleet's strict
known_hosts check, it reads no ssh_config or fabric.yml (fleet has resolved the hop already),
and it authenticates with fleet's own keys.

fabric (and invoke) are imported only when a jump host is actually opened.
"""

from __future__ import annotations

import contextlib
import errno as errno_mod
import functools
import os
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import paramiko

from fleet.transport.endpoint import Hop
from fleet.transport.hostkeys import HostKeyProblem, KnownHosts, host_key_name

if TYPE_CHECKING:
    from fleet.transport.ssh import KeyCache

# Benchmark knob: FLEET_JUMP_VIA=ssh reaches jump hosts the old way, one `ssh -W` ProxyCommand
# per target (bench/bastion.py compares both). Anything else: the pooled fabric connection.
JUMP_VIA_ENV = "FLEET_JUMP_VIA"

# The first open of a bastion, plus one reopen (it failed, or it died mid-run); after that its
# targets fail at once with the last reason instead of hammering a dead bastion.
MAX_OPENS = 2


class JumpError(Exception):
    """The bastion, or the channel through it, failed; the message names the bastion."""


def via_ssh_command() -> bool:
    return os.environ.get(JUMP_VIA_ENV, "").strip().lower() == "ssh"


def describe(hops: tuple[Hop, ...]) -> str:
    """`user@addr:port` of the hop a target is reached through (the chain when several)."""
    return " -> ".join(str(h) for h in hops)


class Bastion(Protocol):
    """What the pool needs of an open bastion connection (a fabric Connection)."""

    transport: paramiko.Transport | None

    def close(self) -> None: ...


class Opener(Protocol):
    def __call__(
        self,
        hops: tuple[Hop, ...],
        gateway: Bastion | None,
        known: KnownHosts,
        accept_new: bool,
        keys: KeyCache,
        timeout: float,
    ) -> Bastion: ...


@dataclass
class _Entry:
    lock: threading.Lock = field(default_factory=threading.Lock)
    conn: Bastion | None = None
    error: JumpError | None = None
    opens: int = 0


def _alive(conn: Bastion | None) -> bool:
    return conn is not None and conn.transport is not None and conn.transport.is_active()


class JumpPool:
    """Per run: one bastion connection per distinct hop chain, opened on first use.

    Thread-safe: when 200 threads ask for the same bastion at once, exactly one opens it and
    the rest wait (each no longer than its own deadline), then share it."""

    def __init__(self, opener: Opener | None = None) -> None:
        self._opener: Opener = opener or open_fabric_bastion
        self._lock = threading.Lock()
        self._entries: dict[tuple[Any, ...], _Entry] = {}
        self.opens = 0  # bastion connections opened over the pool's life (tests, bench)

    def __reduce__(self) -> tuple[Any, ...]:
        # Live connections do not travel: another process (a Dask worker) opens its own.
        return (JumpPool, ())

    def bastion(
        self,
        hops: tuple[Hop, ...],
        known: KnownHosts,
        accept_new: bool,
        keys: KeyCache,
        connect_timeout: float,
        deadline: float,
    ) -> Bastion:
        """The open connection to the last hop of `hops`, opening (or reopening) it if needed.

        Raises JumpError naming the bastion."""
        if not hops:
            raise ValueError("no jump hosts")
        gateway = None
        if len(hops) > 1:
            gateway = self.bastion(hops[:-1], known, accept_new, keys, connect_timeout, deadline)
        # The hop's key is checked against the target's known_hosts files: one connection per
        # chain and set of files, so a host with its own fleet_known_hosts never rides on a
        # bastion that was verified against other files.
        key = (hops, tuple(known.files), accept_new)
        with self._lock:
            entry = self._entries.setdefault(key, _Entry())
        name = describe(hops)
        if not entry.lock.acquire(timeout=max(0.0, deadline - time.monotonic())):
            raise JumpError(f"via bastion {name}: timed out waiting for its connection")
        try:
            if _alive(entry.conn):
                assert entry.conn is not None
                return entry.conn
            if entry.conn is not None:
                _close_quietly(entry.conn)
                entry.conn = None
                entry.error = JumpError(f"via bastion {name}: connection lost")
            if entry.opens >= MAX_OPENS:
                raise entry.error or JumpError(f"via bastion {name}: not reachable")
            entry.opens += 1
            timeout = max(0.1, min(connect_timeout, deadline - time.monotonic()))
            try:
                entry.conn = self._opener(hops, gateway, known, accept_new, keys, timeout)
            except JumpError as exc:
                entry.error = exc
                raise
            except Exception as exc:  # the opener's own failure, whatever paramiko raised
                entry.error = JumpError(f"via bastion {name}: {reason(exc)}")
                raise entry.error from None
            with self._lock:
                self.opens += 1
            entry.error = None
            return entry.conn
        finally:
            entry.lock.release()

    def channel(
        self,
        hops: tuple[Hop, ...],
        dest: tuple[str, int],
        known: KnownHosts,
        accept_new: bool,
        keys: KeyCache,
        connect_timeout: float,
        deadline: float,
    ) -> ChannelSocket:
        """A `direct-tcpip` channel to `dest` through the bastion: the target's SSH runs in it."""
        name = describe(hops)
        target = f"{dest[0]}:{dest[1]}"
        for attempt in (1, 2):
            conn = self.bastion(hops, known, accept_new, keys, connect_timeout, deadline)
            assert conn.transport is not None
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise JumpError(f"via bastion {name}: no time left to open a channel to {target}")
            try:
                chan = conn.transport.open_channel(
                    "direct-tcpip", dest, ("", 0), timeout=min(remaining, connect_timeout)
                )
            except paramiko.ChannelException as exc:
                raise JumpError(f"via bastion {name}: {target}: {_open_failure(exc)}") from None
            except (paramiko.SSHException, EOFError, OSError) as exc:
                if conn.transport.is_active():
                    raise JumpError(
                        f"via bastion {name}: cannot open a channel to {target}: {reason(exc)}"
                    ) from None
                if attempt == 2:
                    raise JumpError(f"via bastion {name}: connection lost") from None
                continue  # it died under us: bastion() reopens it if the budget allows
            return ChannelSocket(chan)
        raise AssertionError("unreachable")

    def close(self) -> None:
        """Close every bastion connection, last hops first; the pool may be used again."""
        with self._lock:
            entries = sorted(self._entries.items(), key=lambda kv: -len(kv[0][0]))
            self._entries = {}
        for _, entry in entries:
            if entry.conn is not None:
                _close_quietly(entry.conn)


class ChannelSocket:
    """A direct-tcpip channel as the socket of a target's Transport.

    paramiko's Channel sends outside its lock, so a send (or the window adjust after a recv)
    from the target's transport thread can follow the CLOSE that another thread's close() sent.
    OpenSSH answers a packet for a channel it has freed by dropping the WHOLE connection ("data
    packet referred to nonexistent channel"): every target behind the bastion would go with it.
    Here close() waits for the send/recv in flight, and nothing passes after it."""

    def __init__(self, chan: paramiko.Channel) -> None:
        self.chan = chan
        self._cv = threading.Condition()
        self._busy = 0
        self._closed = False

    def _enter(self) -> bool:
        with self._cv:
            if self._closed:
                return False
            self._busy += 1
            return True

    def _leave(self) -> None:
        with self._cv:
            self._busy -= 1
            if self._busy == 0:
                self._cv.notify_all()

    def send(self, data: bytes) -> int:
        if not self._enter():
            raise OSError(errno_mod.EPIPE, "channel closed")
        try:
            return self.chan.send(data)
        finally:
            self._leave()

    def recv(self, nbytes: int) -> bytes:
        if not self._enter():
            return b""  # EOF: the transport ends quietly
        try:
            return self.chan.recv(nbytes)
        finally:
            self._leave()

    def settimeout(self, timeout: float | None) -> None:
        self.chan.settimeout(timeout)

    def close(self) -> None:
        with self._cv:
            if self._closed:
                return
            self._closed = True
            # A recv waits at most the transport's 0.1 s poll; a send at most its window.
            self._cv.wait_for(lambda: self._busy == 0, timeout=5.0)
        # The bastion may be gone already: then there is no one to tell.
        with contextlib.suppress(paramiko.SSHException, EOFError, OSError):
            self.chan.close()

    def bastion_transport(self) -> paramiko.Transport:
        return self.chan.get_transport()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.chan, name)


def _close_quietly(conn: Bastion) -> None:
    # Closing a dead connection may raise; there is nothing left to do then.
    with contextlib.suppress(Exception):
        conn.close()


def _open_failure(exc: paramiko.ChannelException) -> str:
    # RFC 4254 5.1 reason codes; OpenSSH says 1 for PermitOpen/AllowTcpForwarding, 2 when its
    # connect() to the target failed.
    return {
        1: "administratively prohibited (the bastion's PermitOpen/AllowTcpForwarding)",
        2: "connect failed at the bastion (refused or unreachable)",
        3: "channel type refused by the bastion",
        4: "the bastion is short of resources",
    }.get(exc.code, f"channel open failed ({exc.text})")


def reason(exc: BaseException) -> str:
    """One short lower-case reason for a failed bastion connection."""
    if isinstance(exc, paramiko.ssh_exception.NoValidConnectionsError):
        inner = next(iter(exc.errors.values()), None)
        if isinstance(inner, OSError) and inner.strerror:
            return inner.strerror.lower()
    if isinstance(exc, (HostKeyProblem, JumpError)):
        return str(exc)
    if isinstance(exc, TimeoutError):
        return str(exc) if str(exc) not in ("", "timed out") else "connect timed out"
    if isinstance(exc, paramiko.AuthenticationException):
        return f"authentication failed ({exc})"
    if isinstance(exc, OSError):
        if exc.errno in (errno_mod.ECONNREFUSED, errno_mod.ECONNRESET) or exc.strerror:
            return (exc.strerror or str(exc)).lower()
        return str(exc) or type(exc).__name__
    if isinstance(exc, EOFError):
        return "closed the connection during the handshake"
    if isinstance(exc, paramiko.SSHException):
        inner = exc.__cause__ or exc.__context__
        if isinstance(inner, TimeoutError):
            return "SSH banner not received (timed out)"
        return str(exc) or type(exc).__name__
    return str(exc) or type(exc).__name__


# ---------------------------------------------------------------- fabric


class _StrictPolicy(paramiko.MissingHostKeyPolicy):
    """Replaces fabric's AutoAddPolicy. The client has no keys loaded, so every server key
    comes here and is checked by fleet's own known_hosts rules before any authentication."""

    def __init__(self, known: KnownHosts, name: str, accept_new: bool) -> None:
        self.known = known
        self.name = name
        self.accept_new = accept_new

    def missing_host_key(
        self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey
    ) -> None:
        self.known.verify(self.name, key, self.accept_new)


def _candidate_keys(hop: Hop, keys: KeyCache) -> list[paramiko.PKey]:
    candidates = [keys.get(k) for k in hop.key_files] + keys.agent_keys()
    if not candidates:
        raise JumpError(f"via bastion {hop}: no private key (IdentityFile for it, or ssh-agent)")
    return candidates


@functools.cache
def _fabric_classes() -> tuple[type, type]:
    """fabric's Connection with a bounded gateway channel open, and a key-list AuthStrategy;
    built on first use so that importing this module never imports fabric."""
    import fabric
    from paramiko.auth_strategy import AuthStrategy, InMemoryPrivateKey

    class BastionConnection(fabric.Connection):  # type: ignore[misc]
        channel_timeout: float = 10.0

        def open_gateway(self) -> paramiko.Channel:
            # fabric's own waits up to paramiko's default hour for the channel.
            self.gateway.open()
            return self.gateway.transport.open_channel(
                "direct-tcpip", (self.host, int(self.port)), ("", 0), timeout=self.channel_timeout
            )

    class FleetKeys(AuthStrategy):  # type: ignore[misc]
        """The hop's key files, then ssh-agent: the order fleet uses for targets."""

        def __init__(self, user: str, pkeys: list[paramiko.PKey]) -> None:
            super().__init__(ssh_config=paramiko.SSHConfig())
            self.user = user
            self.pkeys = pkeys

        def get_sources(self):  # type: ignore[no-untyped-def]
            for pkey in self.pkeys:
                yield InMemoryPrivateKey(self.user, pkey)

    return BastionConnection, FleetKeys


def open_fabric_bastion(
    hops: tuple[Hop, ...],
    gateway: Bastion | None,
    known: KnownHosts,
    accept_new: bool,
    keys: KeyCache,
    timeout: float,
) -> Bastion:
    """Open, verify and authenticate one fabric Connection to `hops[-1]` (through `gateway`)."""
    import fabric

    from fleet.transport.ssh import _prefer_aead_ciphers, _prefer_known_key_types

    hop = hops[-1]
    name = host_key_name(hop.address, hop.port)
    connection_cls, strategy_cls = _fabric_classes()

    def transport(sock: Any, **kwargs: Any) -> paramiko.Transport:
        if isinstance(sock, socket.socket):
            # Every target's packets ride this one socket: no Nagle stalls on it.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        t = paramiko.Transport(sock, **kwargs)
        _prefer_known_key_types(t, known.known_key_types(name))
        _prefer_aead_ciphers(t)
        return t

    # An explicit empty SSHConfig and lazy=True: fabric reads no ssh_config and no fabric.yml.
    config = fabric.Config(ssh_config=paramiko.SSHConfig(), lazy=True)
    conn = connection_cls(
        hop.address,
        user=hop.user,
        port=hop.port,
        config=config,
        gateway=gateway if gateway is not None else False,
        forward_agent=False,
        connect_kwargs={
            "timeout": timeout,
            "banner_timeout": timeout,
            "auth_timeout": timeout,
            "transport_factory": transport,
            "auth_strategy": strategy_cls(hop.user, _candidate_keys(hop, keys)),
            "allow_agent": False,
            "look_for_keys": False,
        },
    )
    conn.channel_timeout = timeout
    conn.client.set_missing_host_key_policy(_StrictPolicy(known, name, accept_new))
    try:
        conn.open()
        if not _alive(conn):
            raise TimeoutError("SSH handshake timed out")
    except paramiko.SSHException as exc:
        conn.client.close()
        # start_client returns silently at its timeout; paramiko then finds "No existing
        # session". Either way (or the banner's own timeout) the bastion did not answer.
        if str(exc) == "No existing session" or reason(exc).endswith("(timed out)"):
            raise TimeoutError("SSH handshake timed out") from None
        raise
    except BaseException:
        conn.client.close()
        raise
    return conn
