"""The drift webhook against a real HTTP server on 127.0.0.1: body, retries, timeouts."""

from __future__ import annotations

from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from fleet.notify import NotifyError, payload, post_json, redacted
from tests.reportkit import host, report_data
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
