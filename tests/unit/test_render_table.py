"""The terminal views never pass a host's control characters through to the terminal."""

from __future__ import annotations

from fleet.model import Finding, HostResult
from fleet.render.table import render_table, render_verbose

# An OSC sequence that retitles the terminal, a CSI that clears it, a bidi override, a C1.
HOSTILE = "evil\x1b]0;owned\x07 \x1b[2J\u202e \x9b31m\r"


def hostile_host() -> HostResult:
    check = Finding(
        "tracing.set_event",
        "fail",
        "high",
        f"1 tracepoint event(s) enabled: {HOSTILE}",
        {"enabled": {".": [HOSTILE]}, "entries": [{"symbol": HOSTILE}]},
        "echo > /sys/kernel/tracing/set_event",
    )
    h = HostResult("web1", "192.0.2.1", 22, "non-compliant", f"note: {HOSTILE}", 1.0)
    h.checks = [check]
    h.kernel = f"6.1.0{HOSTILE}"
    return h


def test_control_characters_from_hosts_are_shown_escaped_never_raw() -> None:
    for text in (render_verbose([hostile_host()]), render_table([hostile_host()])):
        assert not any(c in text for c in "\x1b\x07\x9b\u202e\r"), repr(text)
        assert "\\x1b]0;owned\\x07" in text or "\\\\x1b" in text
