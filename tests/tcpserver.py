"""A loopback TCP server for fault tests: one handler call per connection, stopped on exit."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager


@contextmanager
def tcp_server(handle: Callable[[socket.socket, threading.Event], None]) -> Iterator[int]:
    """Serve on 127.0.0.1 (a free port, yielded); `handle(conn, stop)` answers a connection
    and should return soon once `stop` is set. Connections are closed after the handler."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.1)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            with conn:
                handle(conn, stop)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        thread.join(timeout=5)
        server.close()
