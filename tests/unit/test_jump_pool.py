"""The per-run bastion pool (fleet/transport/jump.py): one open per chain, shared, bounded reopen.

The opener is the pool's seam: here it counts and fakes transports, so the pool's own rules
(locking, caching, reopen budget, deadlines) are tested without sshd. The real fabric opener
runs against a real sshd in tests/integration/test_bastion.py."""

from __future__ import annotations

import errno
import shlex
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import paramiko
import pytest

from fleet.transport.endpoint import Hop
from fleet.transport.hostkeys import KnownHosts
from fleet.transport.jump import MAX_OPENS, ChannelSocket, JumpError, JumpPool, reason
from fleet.transport.ssh import KeyCache, proxy_jump_command

A = Hop("ops@10.0.0.1:2222", "10.0.0.1", 2222, "ops")
B = Hop("b2", "10.0.0.2", 22, "root")


class FakeTransport:
    def __init__(self) -> None:
        self.active = True

    def is_active(self) -> bool:
        return self.active


class FakeBastion:
    def __init__(self, hops: tuple[Hop, ...], gateway: FakeBastion | None) -> None:
        self.hops = hops
        self.gateway = gateway
        self.transport = FakeTransport()
        self.closed = False

    def close(self) -> None:
        self.closed = True
        self.transport.active = False


class Opener:
    """Counts opens; `fail` raises instead, `delay` holds the opener (contention)."""

    def __init__(self, delay: float = 0.0, fail: BaseException | None = None) -> None:
        self.delay = delay
        self.fail = fail
        self.calls: list[tuple[Hop, ...]] = []
        self.lock = threading.Lock()

    def __call__(self, hops, gateway, known, accept_new, keys, timeout):  # type: ignore[no-untyped-def]
        with self.lock:
            self.calls.append(hops)
        time.sleep(self.delay)
        if self.fail is not None:
            raise self.fail
        return FakeBastion(hops, gateway)


def _known(tmp_path: Path, name: str = "kh") -> KnownHosts:
    return KnownHosts.load([tmp_path / name])


def _ask_at_once(pool: JumpPool, known: KnownHosts, n: int, deadline_s: float = 10.0) -> list:
    results: list = [None] * n
    barrier = threading.Barrier(n)

    def one(i: int) -> None:
        barrier.wait()
        try:
            deadline = time.monotonic() + deadline_s
            results[i] = pool.bastion((A,), known, False, KeyCache(), 5.0, deadline)
        except JumpError as exc:
            results[i] = exc

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_200_threads_asking_at_once_open_the_bastion_exactly_once(tmp_path: Path) -> None:
    opener = Opener(delay=0.2)
    pool = JumpPool(opener)
    results = _ask_at_once(pool, _known(tmp_path), 200)
    assert len(opener.calls) == 1
    assert all(r is results[0] for r in results)
    assert isinstance(results[0], FakeBastion)
    assert pool.opens == 1


def test_a_refused_bastion_is_tried_at_most_twice_and_every_target_gets_its_reason(
    tmp_path: Path,
) -> None:
    refused = paramiko.ssh_exception.NoValidConnectionsError(
        {("10.0.0.1", 2222): ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused")}
    )
    opener = Opener(delay=0.05, fail=refused)
    pool = JumpPool(opener)
    results = _ask_at_once(pool, _known(tmp_path), 200)
    assert len(opener.calls) == MAX_OPENS == 2
    assert {str(r) for r in results} == {"via bastion ops@10.0.0.1:2222: connection refused"}


def test_a_bastion_that_died_is_reopened_once_then_its_targets_fail_fast(tmp_path: Path) -> None:
    opener = Opener()
    pool = JumpPool(opener)
    known = _known(tmp_path)
    first = pool.bastion((A,), known, False, KeyCache(), 5.0, time.monotonic() + 5)
    assert pool.bastion((A,), known, False, KeyCache(), 5.0, time.monotonic() + 5) is first
    first.transport.active = False  # the bastion dropped
    second = pool.bastion((A,), known, False, KeyCache(), 5.0, time.monotonic() + 5)
    assert second is not first and first.closed
    second.transport.active = False
    with pytest.raises(JumpError, match=r"^via bastion ops@10.0.0.1:2222: connection lost$"):
        pool.bastion((A,), known, False, KeyCache(), 5.0, time.monotonic() + 5)
    assert len(opener.calls) == 2


def test_a_waiter_gives_up_at_its_own_deadline_while_another_thread_opens(
    tmp_path: Path,
) -> None:
    opener = Opener(delay=1.0)
    pool = JumpPool(opener)
    known = _known(tmp_path)
    slow = threading.Thread(
        target=pool.bastion, args=((A,), known, False, KeyCache(), 5.0, time.monotonic() + 5)
    )
    slow.start()
    time.sleep(0.1)
    start = time.monotonic()
    with pytest.raises(JumpError, match="timed out waiting for its connection"):
        pool.bastion((A,), known, False, KeyCache(), 5.0, time.monotonic() + 0.3)
    assert time.monotonic() - start < 1.0
    slow.join()
    assert len(opener.calls) == 1


def test_a_chain_opens_each_hop_once_and_the_second_rides_on_the_first(tmp_path: Path) -> None:
    opener = Opener()
    pool = JumpPool(opener)
    known = _known(tmp_path)
    ab = pool.bastion((A, B), known, False, KeyCache(), 5.0, time.monotonic() + 5)
    a = pool.bastion((A,), known, False, KeyCache(), 5.0, time.monotonic() + 5)
    assert ab.gateway is a
    assert opener.calls == [(A,), (A, B)]


def test_hosts_with_other_known_hosts_files_get_their_own_bastion_connection(
    tmp_path: Path,
) -> None:
    opener = Opener()
    pool = JumpPool(opener)
    one = pool.bastion((A,), _known(tmp_path, "a"), False, KeyCache(), 5.0, time.monotonic() + 5)
    two = pool.bastion((A,), _known(tmp_path, "b"), False, KeyCache(), 5.0, time.monotonic() + 5)
    assert one is not two


def test_close_closes_every_bastion_and_the_pool_opens_again_afterwards(tmp_path: Path) -> None:
    opener = Opener()
    pool = JumpPool(opener)
    known = _known(tmp_path)
    ab = pool.bastion((A, B), known, False, KeyCache(), 5.0, time.monotonic() + 5)
    pool.close()
    assert ab.closed and ab.gateway is not None and ab.gateway.closed
    again = pool.bastion((A,), known, False, KeyCache(), 5.0, time.monotonic() + 5)
    assert not again.closed


class SlowChannel:
    """Stands in for the paramiko Channel under ChannelSocket: its send blocks until told."""

    def __init__(self) -> None:
        self.go = threading.Event()
        self.events: list[str] = []

    def send(self, data: bytes) -> int:
        self.go.wait(5)
        self.events.append("send")
        return len(data)

    def recv(self, n: int) -> bytes:
        return b"x"

    def close(self) -> None:
        self.events.append("close")


def test_channel_close_waits_for_the_send_in_flight_and_nothing_passes_after_it() -> None:
    chan = SlowChannel()
    sock = ChannelSocket(chan)  # type: ignore[arg-type]
    sender = threading.Thread(target=sock.send, args=(b"data",))
    sender.start()
    time.sleep(0.05)
    closer = threading.Thread(target=sock.close)
    closer.start()
    time.sleep(0.1)
    assert chan.events == []  # close is waiting for the send
    chan.go.set()
    sender.join()
    closer.join()
    assert chan.events == ["send", "close"]
    with pytest.raises(OSError):
        sock.send(b"late")
    assert sock.recv(10) == b""


def test_reason_says_what_failed_in_a_few_words() -> None:
    refused = paramiko.ssh_exception.NoValidConnectionsError(
        {("127.0.0.1", 1): ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused")}
    )
    assert reason(refused) == "connection refused"
    assert reason(TimeoutError()) == "connect timed out"
    assert reason(EOFError()) == "closed the connection during the handshake"


@pytest.mark.skipif(shutil.which("ssh") is None, reason="OpenSSH client not installed")
@pytest.mark.parametrize(
    ("spec", "user", "port", "hostname"),
    [
        ("ops@bastion.example:2222", "ops", "2222", "bastion.example"),
        ("bastion.example", None, "22", "bastion.example"),
        ("ops@[2001:db8::1]:2200", "ops", "2200", "2001:db8::1"),
    ],
)
def test_the_ssh_w_command_names_the_hop_as_ssh_reads_it(
    tmp_path: Path, spec: str, user: str | None, port: str, hostname: str
) -> None:
    """Oracle: `ssh -G` on the same argv (minus -W) says which host, port and user it uses."""
    hop = Hop(spec, hostname, int(port), user or "x")
    kh = tmp_path / "known_hosts"
    argv = shlex.split(proxy_jump_command((hop,), "10.9.0.1", 22, (kh,), accept_new=False))
    w = argv.index("-W")
    del argv[w : w + 2]
    out = subprocess.run(
        [argv[0], "-G", "-F", "/dev/null", *argv[1:]], capture_output=True, text=True, check=True
    ).stdout
    conf = dict(line.split(" ", 1) for line in out.splitlines() if " " in line)
    assert conf["hostname"] == hostname
    assert conf["port"] == port
    if user:
        assert conf["user"] == user
    assert conf["userknownhostsfile"] == str(kh)
    assert conf["stricthostkeychecking"] == "true"


def test_importing_the_ssh_layer_does_not_import_fabric() -> None:
    code = (
        "import sys, fleet.transport.ssh, fleet.transport.jump; "
        "print(any(m.split('.')[0] == 'fabric' for m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
