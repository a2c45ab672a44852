"""Faults that must end as one host's honest status, never as a crash or a traceback.

Each fault is real: a loopback server that speaks something other than SSH, a command that
raises inside fleet. docs/reliability.md lists the matrix these tests hold.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleet import cli
from tests.integration.conftest import run_fleet

pytestmark = [pytest.mark.integration, pytest.mark.faults]


@pytest.fixture
def not_ssh() -> Iterator[int]:
    """A loopback server that answers every connection like a web server, then hangs up."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            with conn:
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        thread.join(timeout=5)
        server.close()


def test_a_host_that_does_not_speak_ssh_is_one_line_not_a_library_traceback(
    tmp_path: Path, not_ssh: int
) -> None:
    inv = tmp_path / "inv.yml"
    inv.write_text(f"all:\n  hosts:\n    web: {{ansible_host: 127.0.0.1, ansible_port: {not_ssh}}}")
    proc = run_fleet("audit", "-i", inv, "--cpu-window", "0", "--connect-timeout", "3")
    assert proc.returncode == 4, proc.stderr
    assert "unreachable" in proc.stdout
    assert "Traceback" not in proc.stderr and "paramiko" not in proc.stderr, proc.stderr


def test_a_bug_in_fleet_exits_70_in_one_line_never_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken(_args: object) -> int:
        raise RuntimeError("planted bug")

    monkeypatch.setattr(cli, "cmd_audit", broken)
    assert cli.main(["audit"]) == cli.EXIT_INTERNAL == 70
    err = capsys.readouterr().err
    assert err.strip() == (
        "fleet: internal error: RuntimeError: planted bug (a bug in fleet; --debug shows the "
        "traceback)"
    )
    assert cli.main(["--debug", "audit"]) == 70
    assert "Traceback" in capsys.readouterr().err
