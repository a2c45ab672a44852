"""One SSH connection to one host: connect (tenacity), verify the host key, auth, run.

Built on paramiko's Transport rather than fabric's Connection: fabric hard-wires
AutoAddPolicy (unknown host keys silently trusted, which the host-key contract forbids) and
starts I/O threads for every command, which a fleet-wide fan-out pays for per host.
"""

from __future__ import annotations

import errno as errno_mod
import getpass
import os
import shlex
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import paramiko
from paramiko import Channel
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from fleet.config.inventory import Host
from fleet.transport.become import (
    SEND_PASSWORD,
    WRONG,
    WRONG_PASSWORD,
    Become,
    BecomeError,
    SudoWatcher,
    Wrapped,
    refusal,
    wrap,
)
from fleet.transport.endpoint import Endpoint, Hop
from fleet.transport.hostkeys import HostKeyProblem, KnownHosts, host_key_name
from fleet.transport.jump import ChannelSocket, JumpError, JumpPool, describe, via_ssh_command


class TransportError(Exception):
    """Whatever went wrong between fleet and a host, connecting or running a command: the
    one type callers catch. Its message is the host's one-line reason."""


class SSHError(TransportError):
    """No session could be opened (the host counts as unreachable)."""


class ConnectionLost(TransportError):
    """The session broke while a command was started or read (a reset, a dead bastion)."""


class CommandTimeout(TransportError):
    """The remote command did not finish before the host's deadline."""


@dataclass(frozen=True)
class SSHOptions:
    connect_timeout: float = 10.0
    command_timeout: float = 60.0
    known_hosts: Path | None = None  # --known-hosts
    accept_new_host_keys: bool = False
    # An explicit ssh_config (`ssh -F`); None: ssh's own ~/.ssh/config and /etc/ssh/ssh_config.
    ssh_config: Path | None = field(default=None)
    retries: int = 3
    # The run's bastion connections (one per jump chain), shared by every host of the run.
    jumps: JumpPool = field(default_factory=JumpPool, compare=False, repr=False)


@dataclass(frozen=True)
class RunResult:
    rc: int
    stdout: str
    stderr: str


_TRANSIENT_ERRNOS = {
    errno_mod.ECONNREFUSED,
    errno_mod.ECONNRESET,
    errno_mod.EPIPE,
    errno_mod.ECONNABORTED,
    errno_mod.EAGAIN,
}


def is_timeout(exc: BaseException) -> bool:
    """A timeout, also when paramiko wraps it ("Error reading SSH protocol banner")."""
    if isinstance(exc, TimeoutError):  # socket.timeout is TimeoutError
        return True
    inner = exc.__cause__ or exc.__context__
    return isinstance(exc, paramiko.SSHException) and isinstance(inner, TimeoutError)


def is_transient(exc: BaseException) -> bool:
    """Retry a refused/reset connection or a kex cut short (sshd MaxStartups); never a timeout,
    an auth failure or a host-key problem."""
    if is_timeout(exc) or isinstance(exc, (HostKeyProblem, paramiko.AuthenticationException)):
        return False
    if isinstance(exc, OSError) and exc.errno in _TRANSIENT_ERRNOS:
        return True
    if isinstance(exc, EOFError):
        return True
    if isinstance(exc, paramiko.SSHException):
        return "Error reading SSH protocol banner" in str(exc)
    return False


class KeyCache:
    """Private keys loaded once per file and shared by every connection."""

    def __init__(self) -> None:
        self._keys: dict[str, paramiko.PKey | Exception] = {}
        self._lock = threading.Lock()
        self._agent_keys: list[paramiko.PKey] | None = None

    def get(self, path: str) -> paramiko.PKey:
        with self._lock:
            if path not in self._keys:
                try:
                    self._keys[path] = paramiko.PKey.from_path(path)
                except paramiko.PasswordRequiredException:
                    self._keys[path] = SSHError(
                        f"private key {path} is encrypted: load it into ssh-agent"
                    )
                except (OSError, paramiko.SSHException, ValueError) as exc:
                    self._keys[path] = SSHError(f"cannot load private key {path}: {exc}")
            value = self._keys[path]
        if isinstance(value, Exception):
            raise value
        return value

    def agent_keys(self) -> list[paramiko.PKey]:
        with self._lock:
            if self._agent_keys is None:
                try:
                    self._agent_keys = (
                        list(paramiko.Agent().get_keys()) if os.environ.get("SSH_AUTH_SOCK") else []
                    )
                except paramiko.SSHException:
                    self._agent_keys = []
            return self._agent_keys


_DEFAULT_KEYS = ("~/.ssh/id_ed25519", "~/.ssh/id_ecdsa", "~/.ssh/id_rsa")


def resolve_endpoint(host: Host, ssh_config: paramiko.SSHConfig | None) -> Endpoint:
    """The fallback where no `ssh` client exists (fleet.transport.sshconfig asks `ssh -G`
    otherwise): paramiko's reading of ssh_config, looked up by the address Ansible passes to ssh.
    Inventory vars win; config fills what is unset. No Include, Match exec or ssh args."""
    cfg = ssh_config.lookup(host.address) if ssh_config else {}
    v = host.vars
    address = cfg.get("hostname", host.address)  # HostName rewrites ansible_host, as in ssh
    port = host.port if v.get("ansible_port") is not None else int(cfg.get("port", host.port))
    user = host.user or cfg.get("user") or getpass.getuser()
    if host.key_file:
        keys: tuple[str, ...] = (host.key_file,)
    elif cfg.get("identityfile"):
        keys = tuple(os.path.expanduser(k) for k in cfg["identityfile"])
    else:
        keys = _default_keys()
    proxy = cfg.get("proxycommand")
    jump: tuple[Hop, ...] = ()
    if not proxy and cfg.get("proxyjump") and cfg["proxyjump"].lower() != "none":
        jump = tuple(_hop(spec, ssh_config) for spec in cfg["proxyjump"].split(",") if spec)
    return Endpoint(address, port, user, keys, proxy, jump)


def _default_keys() -> tuple[str, ...]:
    return tuple(
        os.path.expanduser(k) for k in _DEFAULT_KEYS if os.path.exists(os.path.expanduser(k))
    )


def _hop(spec: str, ssh_config: paramiko.SSHConfig | None) -> Hop:
    """`[user@]host[:port]` of ProxyJump; the hop's own config block fills the rest."""
    spec = spec.strip()
    user, _, rest = spec.rpartition("@")
    name, port_text = rest, ""
    if rest.startswith("["):
        name, _, tail = rest[1:].partition("]")
        port_text = tail.removeprefix(":")
    elif rest.count(":") == 1:
        name, port_text = rest.split(":")
    cfg = ssh_config.lookup(name) if ssh_config else {}
    keys = tuple(os.path.expanduser(k) for k in cfg.get("identityfile", ())) or _default_keys()
    return Hop(
        name=spec,
        address=cfg.get("hostname", name),
        port=int(port_text or cfg.get("port", 22)),
        user=user or cfg.get("user") or getpass.getuser(),
        key_files=keys,
    )


class Connection:
    """An authenticated SSH transport to one host; `run` may be called several times."""

    def __init__(self, transport: paramiko.Transport, endpoint: Endpoint):
        self.transport = transport
        self.endpoint = endpoint

    def start(
        self,
        command: str,
        stdin: bytes = b"",
        deadline: float | None = None,
        become: Become | None = None,
    ) -> Exec:
        """Open a session, exec `command` (under sudo when `become`) and send `stdin`;
        `collect` waits for the result.

        Split in two so a caller can stop counting the host against --forks while the remote
        side only sleeps (the CPU sample window). With a become password, sudo's prompt is
        answered here and `stdin` goes out only once the command itself runs. Raises
        BecomeError when sudo does not start the command, TransportError when the session
        breaks."""
        deadline = deadline or (time.monotonic() + 3600)
        wrapped = wrap(command, become)
        try:
            chan = self.transport.open_session(timeout=max(0.1, deadline - time.monotonic()))
            try:
                chan.exec_command(wrapped.command)
                held = b""
                if wrapped.watched and become is not None and become.password is not None:
                    held = _answer_sudo(chan, wrapped, become.password, deadline)
                if stdin:
                    chan.sendall(stdin)
                chan.shutdown_write()
            except BaseException:
                chan.close()
                raise
        except _BROKEN as exc:  # closing a channel of a dead transport raises too
            raise self._lost(exc) from None
        return Exec(chan, held)

    def collect(self, ex: Exec, deadline: float | None = None) -> RunResult:
        """Read a started command's output and exit status. Raises TransportError."""
        deadline = deadline or (time.monotonic() + 3600)
        chan = ex.chan
        try:
            try:
                out, err = _drain(chan, deadline)
                err = ex.stderr + err
                if not chan.status_event.wait(max(0.0, deadline - time.monotonic())):
                    raise CommandTimeout("remote command did not exit before the deadline")
                rc = chan.recv_exit_status()
            finally:
                chan.close()
        except _BROKEN as exc:  # closing a channel of a dead transport raises too
            raise self._lost(exc) from None
        except CommandTimeout as exc:
            raise self._bastion_lost() or exc from None
        if rc == -1:  # no exit status: the session ended without one
            lost = self._bastion_lost()
            if lost is not None:
                raise lost
        return RunResult(rc, out.decode("utf-8", "replace"), err.decode("utf-8", "replace"))

    def run(
        self,
        command: str,
        stdin: bytes = b"",
        deadline: float | None = None,
        become: Become | None = None,
    ) -> RunResult:
        """Run one command to its end; its stdin is `stdin`."""
        return self.collect(self.start(command, stdin, deadline, become), deadline)

    def close(self) -> None:
        self.transport.close()

    def _lost(self, exc: BaseException) -> TransportError:
        return self._bastion_lost() or ConnectionLost(
            f"connection lost: {exc or type(exc).__name__}"
        )

    def _bastion_lost(self) -> TransportError | None:
        """The error naming the bastion when the target rode one that is gone, else None."""
        sock = self.transport.sock
        if not isinstance(sock, ChannelSocket):
            return None
        # Ask the bastion, not this transport: when the bastion dies mid-command this one may
        # not have noticed yet while its reads already failed.
        bastion = sock.bastion_transport()
        # The bastion's transport closes its channels before it marks itself inactive.
        bastion.join(timeout=1.0)
        if bastion.is_active():
            return None
        return ConnectionLost(
            f"connection lost: via bastion {describe(self.endpoint.jump)}: it went away"
        )


# What a broken session raises from paramiko and the socket below it.
_BROKEN = (paramiko.SSHException, OSError, EOFError)


@dataclass(frozen=True)
class Exec:
    """A started command: its channel and the stderr already read while sudo was answered."""

    chan: Channel
    stderr: bytes = b""


# Longest wait for sudo to start the command: PAM delays a wrong password by ~2 s; a prompt
# that is not ours (a PAM module's own, passprompt_override) must not hold the host till its
# deadline.
SUDO_START_S = 20.0


def _answer_sudo(chan: Channel, wrapped: Wrapped, password: str, deadline: float) -> bytes:
    """Read sudo's stderr until the command's start marker; answer its one prompt."""
    watcher = SudoWatcher(wrapped)
    until = min(deadline, time.monotonic() + SUDO_START_S)
    kept = b""
    while True:
        remaining = until - time.monotonic()
        if remaining <= 0:
            said = watcher.pending().decode("utf-8", "replace").strip().splitlines()[-1:]
            raise BecomeError(
                f"sudo did not start the command within {SUDO_START_S:g} s"
                + (f" (last said: {said[0][:120]})" if said else "")
            )
        chan.settimeout(remaining)
        try:
            data = chan.recv_stderr(4096)
        except TimeoutError:
            continue
        if not data:  # sudo exited without running the command
            raise BecomeError(refusal(watcher.pending().decode("utf-8", "replace")))
        out, actions = watcher.feed(data)
        kept += out
        for action in actions:
            if action == WRONG:
                raise BecomeError(WRONG_PASSWORD)  # start() closes the channel at once
            if action == SEND_PASSWORD:
                chan.sendall(password.encode() + b"\n")
        if watcher.running:
            return kept


# What one command may print, stdout and stderr together. A real probe prints well under
# 1 MiB (the QEMU incident: ~100 KiB); a host whose files are huge or endless must not cost
# the controller its memory (20 forks x 100 MB files once took 2.7 GB).
OUTPUT_LIMIT = 16 * 1024 * 1024


class OutputTooLarge(TransportError):
    """The remote command printed more than OUTPUT_LIMIT bytes; its channel was closed."""


def _drain(chan: paramiko.Channel, deadline: float) -> tuple[bytes, bytes]:
    """stdout and stderr read together until both end, so a command writing much to one
    never stalls on the other's full window; at most OUTPUT_LIMIT bytes in all."""
    ready = threading.Event()  # set by paramiko whenever either buffer gets data or closes
    chan.in_buffer.set_event(ready)
    chan.in_stderr_buffer.set_event(ready)
    out: list[bytes] = []
    err: list[bytes] = []
    size = 0
    while True:
        got = False
        for readable, recv, parts in (
            (chan.recv_ready, chan.recv, out),
            (chan.recv_stderr_ready, chan.recv_stderr, err),
        ):
            while readable():
                data = recv(65536)
                if not data:
                    break
                got = True
                size += len(data)
                if size > OUTPUT_LIMIT:
                    chan.close()
                    raise OutputTooLarge(f"output over {OUTPUT_LIMIT // 2**20} MiB: stopped")
                parts.append(data)
        if not got and (chan.eof_received or chan.closed):
            return b"".join(out), b"".join(err)
        if got:
            continue
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not ready.wait(remaining):
            raise CommandTimeout("remote command did not finish before the deadline")
        ready.clear()


def proxy_jump_command(
    hops: tuple[Hop, ...],
    address: str,
    port: int,
    known_hosts: tuple[Path, ...] = (),
    accept_new: bool = False,
) -> str:
    """ProxyJump as the ProxyCommand OpenSSH itself would run: `ssh -W host:port` via the
    last hop (`-l`/`-p` from its spec, as ssh does), earlier hops through -J.

    Only used with FLEET_JUMP_VIA=ssh (the benchmark's baseline). With `known_hosts`, the
    last hop's key is checked against the same files as fleet checks the target's."""
    target = f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
    argv = ["ssh", "-o", "BatchMode=yes"]
    if known_hosts:
        argv += ["-o", "UserKnownHostsFile=" + " ".join(str(f) for f in known_hosts)]
        argv += ["-o", f"StrictHostKeyChecking={'accept-new' if accept_new else 'yes'}"]
    if len(hops) > 1:
        argv += ["-J", ",".join(h.name for h in hops[:-1])]
    user, name, hop_port = _jump_spec(hops[-1].name)
    if user:
        argv += ["-l", user]
    if hop_port:
        argv += ["-p", hop_port]
    argv += ["-W", target, name]
    return " ".join(shlex.quote(a) for a in argv)


def _jump_spec(spec: str) -> tuple[str, str, str]:
    """`[user@]host[:port]` (or `ssh://...`) of ProxyJump -> (user, host, port); `ssh` takes
    no port in a plain destination, so it goes to -p."""
    spec = spec.strip().removeprefix("ssh://")
    user, _, rest = spec.rpartition("@")
    if rest.startswith("["):
        name, _, tail = rest[1:].partition("]")
        return user, name, tail.removeprefix(":")
    if rest.count(":") == 1:
        name, port = rest.split(":")
        return user, name, port
    return user, rest, ""


def _socket(
    endpoint: Endpoint,
    timeout: float,
    opts: SSHOptions,
    known: KnownHosts,
    keys: KeyCache,
    deadline: float,
) -> socket.socket | paramiko.ProxyCommand | ChannelSocket:
    """What the target's Transport runs over: a TCP socket, a ProxyCommand's pipes, or a
    direct-tcpip channel of the run's one connection to the bastion."""
    if endpoint.proxy_command:
        return paramiko.ProxyCommand(endpoint.proxy_command)
    if endpoint.jump and via_ssh_command():
        cmd = proxy_jump_command(
            endpoint.jump,
            endpoint.address,
            endpoint.port,
            tuple(known.files),
            opts.accept_new_host_keys,
        )
        return paramiko.ProxyCommand(cmd)
    if endpoint.jump:
        try:
            return opts.jumps.channel(
                endpoint.jump,
                (endpoint.address, endpoint.port),
                known,
                opts.accept_new_host_keys,
                keys,
                opts.connect_timeout,
                deadline,
            )
        except JumpError as exc:
            raise SSHError(str(exc)) from None
    sock = socket.create_connection((endpoint.address, endpoint.port), timeout=timeout)
    # Nagle + delayed ACK cost two 40 ms stalls per handshake on loopback and LAN.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


# AEAD ciphers first: with AES-GCM paramiko has no separate MAC to compute and check per
# packet (its check is a pure-Python byte loop); OpenSSH has offered both since 6.2.
_PREFERRED_CIPHERS = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com")


def _prefer_aead_ciphers(t: paramiko.Transport) -> None:
    opts = t.get_security_options()
    current = list(opts.ciphers)
    first = [c for c in _PREFERRED_CIPHERS if c in current]
    if first:
        opts.ciphers = first + [c for c in current if c not in first]


def _prefer_known_key_types(t: paramiko.Transport, known: list[str]) -> None:
    """Ask the server for a key type we know, as OpenSSH does, so a host with several keys is
    not reported unknown just because it offered another type first."""
    if not known:
        return
    expanded: list[str] = []
    for k in known:
        expanded += ["rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"] if k == "ssh-rsa" else [k]
    opts = t.get_security_options()
    current = list(opts.key_types)
    opts.key_types = [k for k in expanded if k in current] + [
        k for k in current if k not in expanded
    ]


def _connect_once(
    host: Host,
    endpoint: Endpoint,
    opts: SSHOptions,
    known: KnownHosts,
    keys: KeyCache,
    deadline: float,
) -> Connection:
    timeout = max(0.1, min(opts.connect_timeout, deadline - time.monotonic()))
    # --connect-timeout bounds the whole attempt: TCP, handshake and every key's auth.
    until = time.monotonic() + timeout
    sock = _socket(endpoint, timeout, opts, known, keys, deadline)
    t = paramiko.Transport(sock)
    try:
        t.banner_timeout = timeout
        t.handshake_timeout = timeout
        t.auth_timeout = timeout
        name = host_key_name(endpoint.address, endpoint.port)
        _prefer_known_key_types(t, known.known_key_types(name))
        _prefer_aead_ciphers(t)
        t.start_client(timeout=timeout)
        if not t.is_active() or t.host_key is None:
            # start_client returns silently when its own timeout fires first.
            if getattr(t, "remote_version", ""):
                raise TimeoutError(
                    f"SSH key exchange stalled after the server's banner ({t.remote_version})"
                )
            raise TimeoutError("SSH handshake timed out (no banner)")
        # The contract: no authentication attempt before the host key is accepted.
        known.verify(name, t.get_remote_server_key(), opts.accept_new_host_keys)
        _authenticate(t, endpoint, keys, until)
        return Connection(t, endpoint)
    except (paramiko.SSHException, EOFError, OSError) as exc:
        t.close()
        if isinstance(sock, ChannelSocket) and not isinstance(exc, HostKeyProblem):
            # The bastion died under the handshake: say so, not "No existing session".
            bastion = sock.bastion_transport()
            bastion.join(timeout=1.0)
            if not bastion.is_active():
                raise SSHError(f"via bastion {describe(endpoint.jump)}: it went away") from None
        raise
    except BaseException:
        t.close()
        raise


def _authenticate(t: paramiko.Transport, endpoint: Endpoint, keys: KeyCache, until: float) -> None:
    """Try each key in turn, all of them within `until` (paramiko's auth_timeout is per
    attempt: a server stalling every attempt would cost one full timeout per key)."""
    candidates: list[paramiko.PKey] = [keys.get(k) for k in endpoint.key_files]
    candidates += keys.agent_keys()
    if not candidates:
        raise SSHError(
            "no private key: set ansible_ssh_private_key_file, IdentityFile or ssh-agent"
        )
    last: Exception | None = None
    for key in candidates:
        remaining = until - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("authentication did not finish within the connect timeout")
        t.auth_timeout = remaining
        try:
            t.auth_publickey(endpoint.user, key)
        except paramiko.AuthenticationException as exc:
            if "timeout" in str(exc).lower():  # the server stalls: no key will do better
                raise TimeoutError("authentication stalled (no answer from the server)") from None
            last = exc
            continue
        if t.is_authenticated():
            return
    raise paramiko.AuthenticationException(
        f"public key authentication failed for {endpoint.user}@{endpoint.address} ({last})"
    )


def connect(
    host: Host,
    endpoint: Endpoint,
    opts: SSHOptions,
    known: KnownHosts,
    keys: KeyCache,
    deadline: float,
) -> Connection:
    """Open an authenticated connection to `endpoint` (resolved once per run, before the
    fan-out: fleet.transport.sshconfig); retry transient connect errors within the deadline.

    Raises SSHError with a one-line reason naming the problem.
    """
    retrying = Retrying(
        stop=stop_after_attempt(max(1, opts.retries)),
        wait=wait_exponential_jitter(initial=0.2, max=2.0, jitter=0.2),
        retry=retry_if_exception(lambda e: is_transient(e) and time.monotonic() + 0.5 < deadline),
        reraise=True,
    )
    try:
        return retrying(_connect_once, host, endpoint, opts, known, keys, deadline)
    except HostKeyProblem as exc:
        raise SSHError(str(exc)) from None
    except paramiko.AuthenticationException as exc:
        raise SSHError(f"authentication failed: {exc}") from None
    except TimeoutError as exc:
        why = str(exc) if str(exc) and str(exc) != "timed out" else "connect timed out"
        raise SSHError(f"{endpoint.address}:{endpoint.port}: {why}") from None
    except paramiko.SSHException as exc:
        if is_timeout(exc):
            raise SSHError(
                f"{endpoint.address}:{endpoint.port}: SSH banner not received (timed out)"
            ) from None
        raise SSHError(f"ssh to {endpoint.address}:{endpoint.port}: {exc}") from None
    except OSError as exc:
        raise SSHError(
            f"connect to {endpoint.address}:{endpoint.port}: {exc.strerror or exc}"
        ) from None
    except EOFError:
        raise SSHError(
            f"{endpoint.address}:{endpoint.port} closed the connection during handshake"
        ) from None


def load_ssh_config(path: Path | None) -> paramiko.SSHConfig | None:
    """paramiko's parse of an ssh_config, for the no-`ssh`-client fallback only."""
    if path is None or not path.exists():
        return None
    return paramiko.SSHConfig.from_path(str(path))


def known_hosts_files(host: Host, cli_file: Path | None) -> list[Path]:
    """Where a host's key may be found: --known-hosts, fleet_known_hosts, ~/.ssh/known_hosts."""
    files = []
    if cli_file:
        files.append(cli_file)
    if host.known_hosts:
        files.append(Path(host.known_hosts))
    files.append(Path("~/.ssh/known_hosts").expanduser())
    return files
