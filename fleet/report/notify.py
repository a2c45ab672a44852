"""`--notify-webhook`: POST a JSON summary of the drift, with a timeout and a few retries.

The body carries `text` (one line; Slack and Mattermost incoming webhooks show it as is) and
the machine-readable `summary` and `drift`. Retried: connection errors, timeouts, HTTP 429
and 5xx; never other 4xx (the URL or the payload is wrong, and retrying will not fix it).
"""

from __future__ import annotations

import http.client
import json
import threading
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from queue import Empty, SimpleQueue
from typing import Any

from tenacity import (
    RetryError,
    retry,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
)

from fleet import __version__
from fleet.report.data import ReportData

ATTEMPTS = 3


class _Transient(Exception):
    pass


class NotifyError(Exception):
    """The webhook could not be delivered (after the retries)."""


@dataclass(frozen=True)
class Delivery:
    status: int
    attempts: int


def drift_text_line(data: ReportData) -> str:
    d = data.drift
    parts = []
    for n, what in (
        (len(d.new_failures), "new failure(s)"),
        (len(d.fixed), "fixed"),
        (len(d.became_unreachable), "host(s) became unreachable"),
        (len(d.flapping), "flapping check(s)"),
    ):
        if n:
            parts.append(f"{n} {what}")
    changes = ", ".join(parts) or "no change"
    return f"fleet report: {changes} since the previous run; {data.summary_line()}"


def payload(data: ReportData) -> dict[str, Any]:
    return {
        "text": drift_text_line(data),
        "schema": 1,
        "command": "report",
        "run_id": data.run_id,
        "started_at": data.run.started_at,
        "finished_at": data.run.finished_at,
        "summary": data.host_counts(),
        "exit_code": data.exit_code(),
        "drift": data.drift.to_json(),
    }


def redacted(url: str) -> str:
    """Scheme and host only: webhook paths and queries often hold the secret."""
    try:
        parts = urllib.parse.urlsplit(url)
        port = f":{parts.port}" if parts.port else ""
    except ValueError:  # a port out of range or not a number
        return "webhook URL"
    if not parts.scheme or not parts.hostname:
        return "webhook URL"
    return f"{parts.scheme}://{parts.hostname}{port}/..."


def post_json(
    url: str,
    body: dict[str, Any],
    timeout: float = 10.0,
    attempts: int = ATTEMPTS,
    wait_s: float = 0.5,
) -> Delivery:
    """POST `body`; NotifyError with the last reason when every attempt failed.

    Each attempt has `timeout` seconds in all, not per read (urllib's own timeout is per
    socket read, so a server trickling its headers could hold it for minutes): the request
    runs in a daemon thread that is abandoned when its time is up.
    """
    where = redacted(url)
    if not url.startswith(("http://", "https://")):
        raise NotifyError(f"{where}: only http:// and https:// webhooks are supported")
    try:
        _ = urllib.parse.urlsplit(url).port  # checks it: out of range or not a number
    except ValueError as exc:
        raise NotifyError(f"{where}: bad URL: {exc}") from None
    data = json.dumps(body).encode()
    tries = 0

    @retry(
        stop=stop_after_attempt(attempts),
        wait=wait_exponential(multiplier=wait_s, max=wait_s * 8),
        retry=retry_if_exception_type(_Transient),
        reraise=False,
    )
    def once() -> int:
        nonlocal tries
        tries += 1
        req = urllib.request.Request(
            url,
            data=data,
            method="POST",
            headers={
                "Content-Type": "application/json",
                "User-Agent": f"fleet/{__version__}",
            },
        )
        answer: SimpleQueue[int | BaseException] = SimpleQueue()

        def send() -> None:
            try:
                # Per read, longer than the attempt: the attempt's deadline below decides (a
                # loaded machine must not turn a trickle into a read timeout by chance); this
                # one only ends the abandoned thread.
                with urllib.request.urlopen(req, timeout=timeout * 2) as resp:
                    answer.put(int(resp.status))
            except BaseException as exc:  # handed to the caller's thread
                answer.put(exc)

        threading.Thread(target=send, daemon=True, name="fleet-webhook").start()
        try:
            got = answer.get(timeout=timeout)
        except Empty:
            raise _Transient(f"no complete answer within {timeout:g} s") from None
        if isinstance(got, int):
            return got
        if isinstance(got, urllib.error.HTTPError):
            if got.code == 429 or got.code >= 500:
                raise _Transient(f"HTTP {got.code} {got.reason}")
            raise NotifyError(f"{where}: HTTP {got.code} {got.reason}")
        if isinstance(got, urllib.error.URLError | OSError):
            reason = getattr(got, "reason", got)
            raise _Transient(str(reason) or type(got).__name__)
        if isinstance(got, http.client.HTTPException):
            raise _Transient(f"not an HTTP answer ({type(got).__name__}: {got})")
        # A URL urllib cannot use (a port out of range, say): retrying will not help.
        raise NotifyError(f"{where}: {type(got).__name__}: {got}")

    try:
        status = once()
    except RetryError as exc:
        last = exc.last_attempt.exception()
        raise NotifyError(f"{where}: {last} (after {tries} attempts)") from None
    return Delivery(status, tries)
