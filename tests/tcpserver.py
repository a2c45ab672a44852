"""A loopback TCP server for fault tests: one handler call per connection, stopped on exit."""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager


def _closing(
    handle: Callable[[socket.socket, threading.Event], None],
    conn: socket.socket,
    stop: threading.Event,
) -> None:
    with conn:
        handle(conn, stop)


@contextmanager
def tcp_server(
    handle: Callable[[socket.socket, threading.Event], None], concurrent: bool = False
) -> Iterator[int]:
    """Serve on 127.0.0.1 (a free port, yielded); `handle(conn, stop)` answers a connection
    and should return soon once `stop` is set. Connections are closed after the handler;
    `concurrent`: each in a thread of its own."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.1)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            if concurrent:
                threading.Thread(target=_closing, args=(handle, conn, stop), daemon=True).start()
            else:
                _closing(handle, conn, stop)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        thread.join(timeout=5)
        server.close()


def _pump(src: socket.socket, dst: socket.socket, stop: threading.Event, gate: Gate) -> None:
    src.settimeout(0.1)
    while not stop.is_set():
        try:
            data = src.recv(65536)
        except TimeoutError:
            continue
        except OSError:
            break
        if not data:
            break
        if not gate.send(dst, data, stop):
            break
    with contextlib.suppress(OSError):
        dst.shutdown(socket.SHUT_WR)


class Gate:
    """What a faulty link lets through, server to client: `fault` is one of
    "banner-stall" (the SSH banner line, then nothing), "kex-stall" (the banner and the server's
    first binary packet, KEXINIT), "stall-after" (everything for `after_s` seconds, then
    nothing), "reset-after" (everything for `after_s` seconds, then a TCP reset), "trickle"
    (one byte a second)."""

    def __init__(self, fault: str, after_s: float = 1.0) -> None:
        self.fault = fault
        self.after_s = after_s
        self.started = time.monotonic()
        self.sent = b""
        self.reset = False

    def _allowance(self) -> int | None:
        """Bytes of the stream that may pass in total; None: no limit."""
        if self.fault == "banner-stall":
            end = self.sent.find(b"\n")
            return end + 1 if end >= 0 else None
        if self.fault == "kex-stall":
            end = self.sent.find(b"\n")
            if end < 0 or len(self.sent) < end + 5:
                return None
            return end + 1 + 4 + struct.unpack(">I", self.sent[end + 1 : end + 5])[0]
        return None

    def send(self, dst: socket.socket, data: bytes, stop: threading.Event) -> bool:
        if self.fault == "none":
            dst.sendall(data)
            return True
        if self.fault in ("stall-after", "reset-after"):
            if time.monotonic() - self.started > self.after_s:
                if self.fault == "reset-after":
                    # SO_LINGER 0: close() sends RST, as a dying middlebox does.
                    dst.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    self.reset = True
                    return False
                return True  # swallowed: the peer waits forever
            dst.sendall(data)
            return True
        if self.fault == "trickle":
            for i in range(len(data)):
                if stop.wait(1.0):
                    return False
                try:
                    dst.sendall(data[i : i + 1])
                except OSError:  # the client gave up
                    return False
            return True
        before = len(self.sent)
        self.sent += data
        limit = self._allowance()
        allowed = data if limit is None else data[: max(0, limit - before)]
        if allowed:
            dst.sendall(allowed)
        return True


@contextmanager
def faulty_link(target_port: int, fault: str, after_s: float = 1.0) -> Iterator[int]:
    """A loopback TCP proxy to 127.0.0.1:target_port (a real sshd) that damages the server's
    side of every connection as `Gate` says; client to server passes untouched."""

    def handle(conn: socket.socket, stop: threading.Event) -> None:
        gate = Gate(fault, after_s)
        with socket.create_connection(("127.0.0.1", target_port)) as up:
            back = threading.Thread(target=_pump, args=(conn, up, stop, Gate("none")))
            back.start()
            _pump(up, conn, stop, gate)
            if not gate.reset:
                # Hold the connection as a stalled peer does, until the test ends.
                while not stop.wait(0.1) and fault in ("banner-stall", "kex-stall", "stall-after"):
                    pass
            back.join(timeout=5)

    with tcp_server(handle, concurrent=True) as port:
        yield port
