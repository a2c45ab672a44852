"""The drift webhook against a real HTTP server on 127.0.0.1: body, retries, timeouts."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from fleet.report.notify import NotifyError, payload, post_json, redacted
from tests.reportkit import host, report_data
from tests.tcpserver import tcp_server
from tests.webhook import Hook


def test_the_summary_is_posted_as_json(hook: Hook) -> None:
    data = report_data([host("a", failing=("netdata.ebpf",)), host("b")])
    delivery = post_json(hook.url, payload(data))
    assert (delivery.status, delivery.attempts) == (200, 1)
    (body,) = hook.bodies
    assert body["text"].startswith("fleet report: 1 new failure(s) since the previous run;")
    assert body["summary"]["non-compliant"] == 1 and body["exit_code"] == 1
    assert body["drift"]["new_failures"][0]["check"] == "netdata.ebpf"
    assert hook.headers[0]["Content-Type"] == "application/json"


def test_server_errors_are_retried(hook: Hook) -> None:
    hook.replies = [503, 502]
    delivery = post_json(hook.url, {"x": 1}, wait_s=0.01)
    assert (delivery.status, delivery.attempts) == (200, 3)
    assert len(hook.bodies) == 3


def test_client_errors_are_not_retried_and_the_secret_is_not_printed(hook: Hook) -> None:
    hook.replies = [404]
    with pytest.raises(NotifyError) as exc:
        post_json(hook.url, {"x": 1}, wait_s=0.01)
    assert "HTTP 404" in str(exc.value) and "SECRET" not in str(exc.value)
    assert len(hook.bodies) == 1


def test_a_hung_server_times_out_each_attempt_and_gives_up(hook: Hook) -> None:
    hook.replies = [0, 0]
    with pytest.raises(NotifyError, match=r"after 2 attempts"):
        post_json(hook.url, {"x": 1}, timeout=0.3, attempts=2, wait_s=0.01)
    assert len(hook.bodies) == 2


def test_nothing_listening_is_a_failure_after_the_retries() -> None:
    probe = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    port = probe.server_port
    probe.server_close()  # the port is now closed
    with pytest.raises(NotifyError, match="after 3 attempts"):
        post_json(f"http://127.0.0.1:{port}/x", {"x": 1}, wait_s=0.01)


def test_redacted_keeps_scheme_and_host_only() -> None:
    assert redacted("https://hooks.example.com/services/T0/B0/XyZ?token=1") == (
        "https://hooks.example.com/..."
    )
    assert redacted("http://127.0.0.1:8080/a") == "http://127.0.0.1:8080/..."


@pytest.fixture
def raw_server() -> Iterator[tuple[int, list[bytes]]]:
    """A loopback TCP server answering every request with `replies[0]`, byte by byte
    with a pause when the answer starts with b"SLOW"."""
    replies: list[bytes] = []

    def answer(conn: socket.socket, stop: threading.Event) -> None:
        conn.recv(65536)
        reply = replies[0]
        if not reply.startswith(b"SLOW"):
            conn.sendall(reply)
            return
        for b in reply[4:]:  # headers trickling in, 1 byte per 0.5 s
            if stop.wait(0.5):
                break
            with contextlib.suppress(OSError):
                conn.sendall(bytes([b]))

    with tcp_server(answer) as port:
        yield port, replies


def test_a_server_trickling_its_headers_is_cut_off_at_the_attempts_deadline(
    raw_server: tuple[int, list[bytes]],
) -> None:
    port, replies = raw_server
    replies.append(b"SLOW" + b"HTTP/1.1 200 OK\r\nX-Slow: " + b"y" * 200 + b"\r\n\r\n")
    started = time.monotonic()
    with pytest.raises(NotifyError, match=r"no complete answer within 1 s \(after 2 attempts\)"):
        post_json(f"http://127.0.0.1:{port}/x", {"x": 1}, timeout=1.0, attempts=2, wait_s=0.01)
    # Each read arrives well within urllib's per-read timeout; only a total deadline ends it.
    assert time.monotonic() - started < 10


@pytest.mark.parametrize(
    ("url", "reply", "why"),
    [
        ("http://127.0.0.1:{port}/x", b"GARBAGE\r\n\r\n", "not an HTTP answer"),
        ("http://127.0.0.1:99999/x", b"", "bad URL: Port out of range"),
    ],
)
def test_a_bad_answer_or_a_bad_url_is_a_notify_error_not_a_traceback(
    raw_server: tuple[int, list[bytes]], url: str, reply: bytes, why: str
) -> None:
    port, replies = raw_server
    replies.append(reply)
    with pytest.raises(NotifyError, match=why):
        post_json(url.format(port=port), {"x": 1}, timeout=2.0, attempts=2, wait_s=0.01)
