"""The become wrapper (fleet/transport/become.py): the command lines it builds and the watcher that
decides when sudo's password may be sent. The SSH side runs for real in
tests/integration/test_sudo.py."""

from __future__ import annotations

import shlex
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from fleet.config.inventory import load_inventory
from fleet.transport.become import (
    SEND_PASSWORD,
    STARTED,
    WRONG,
    Become,
    SudoWatcher,
    refusal,
    with_password,
    wrap,
)

SECRET = "s3cret-pa55"


def watched(user: str | None = None) -> tuple[str, bytes, bytes]:
    w = wrap("sh -s -- 'a b' c", Become(user, SECRET))
    return w.command, w.prompt, w.started


def test_no_become_leaves_the_command_alone() -> None:
    w = wrap("cat -- /etc/x", None)
    assert w.command == "cat -- /etc/x" and not w.watched


def test_without_a_password_sudo_never_prompts() -> None:
    assert wrap("cat -- /x", Become()).command == "sudo -n -- cat -- /x"
    w = wrap("cat -- /x", Become("web admin"))
    assert w.command == "sudo -n -u 'web admin' -- cat -- /x" and not w.watched


def test_with_a_password_it_is_never_on_the_command_line() -> None:
    command, prompt, _ = watched("postgres")
    argv = shlex.split(command)
    assert SECRET not in command
    assert argv[:4] == ["sudo", "-S", "-p", prompt.decode()]
    assert argv[4:7] == ["-u", "postgres", "--"]
    assert argv[7:9] == ["sh", "-c"] and len(argv) == 10
    # sudo expands %-escapes in -p: a marker with one would never be seen as sent.
    assert "%" not in prompt.decode()


def test_markers_are_fresh_for_every_exec() -> None:
    a, b = watched(), watched()
    assert a[1] != b[1] and a[2] != b[2]
    assert a[1] not in a[2] and a[2].strip() not in a[1]


def test_the_wrapped_script_prints_the_start_marker_before_running_the_command(
    tmp_path: Path,
) -> None:
    w = wrap(
        f"printf out; printf err >&2; cat -- {shlex.quote(str(tmp_path / 'x'))}",
        Become(None, SECRET),
    )
    (tmp_path / "x").write_text("file\n")
    script = shlex.split(w.command)[-1]
    proc = subprocess.run(["sh", "-c", script], capture_output=True, timeout=10)
    assert proc.returncode == 0
    assert proc.stdout == b"outfile\n"
    assert proc.stderr == w.started + b"err"


def feed_all(w: SudoWatcher, chunks: list[bytes]) -> tuple[bytes, list[str]]:
    out, actions = b"", []
    for chunk in chunks:
        o, a = w.feed(chunk)
        out += o
        actions += a
    return out, actions


def test_the_password_is_sent_once_on_sudos_prompt_and_the_markers_are_stripped() -> None:
    wr = wrap("true", Become(None, SECRET))
    w = SudoWatcher(wr)
    out, actions = feed_all(w, [wr.prompt, wr.started + b"probe noise\n", b"more\n"])
    assert actions == [SEND_PASSWORD, STARTED]
    assert out == b"probe noise\nmore\n"
    assert w.running


def test_markers_split_across_reads_are_still_found() -> None:
    wr = wrap("true", Become(None, SECRET))
    stream = b"We trust you have received the usual lecture\n" + wr.prompt + wr.started + b"x"
    w = SudoWatcher(wr)
    out, actions = feed_all(w, [bytes([c]) for c in stream])
    assert actions == [SEND_PASSWORD, STARTED]
    assert out == b"We trust you have received the usual lecture\nx"


def test_when_sudo_does_not_ask_no_password_is_sent() -> None:
    wr = wrap("true", Become(None, SECRET))
    out, actions = feed_all(SudoWatcher(wr), [wr.started + b"rest"])
    assert actions == [STARTED] and out == b"rest"


@pytest.mark.parametrize(
    "after_password",
    [b"Sorry, try again.\n", b"Sorry, try again.\n{prompt}", b"{prompt}"],
    ids=["sorry", "sorry-and-prompt", "second-prompt"],
)
def test_a_second_prompt_or_sorry_is_a_wrong_password(after_password: bytes) -> None:
    wr = wrap("true", Become(None, SECRET))
    w = SudoWatcher(wr)
    assert w.feed(wr.prompt) == (b"", [SEND_PASSWORD])
    _, actions = w.feed(after_password.replace(b"{prompt}", wr.prompt))
    assert actions == [WRONG]


def test_once_the_command_runs_a_forged_prompt_is_not_answered() -> None:
    wr = wrap("true", Become(None, SECRET))
    w = SudoWatcher(wr)
    feed_all(w, [wr.prompt, wr.started])
    out, actions = w.feed(wr.prompt + b"Sorry, try again.\n" + wr.started)
    assert actions == []
    assert out == wr.prompt + b"Sorry, try again.\n" + wr.started


def test_without_markers_the_watcher_passes_everything() -> None:
    w = SudoWatcher(wrap("true", Become()))
    assert w.running and w.feed(b"anything") == (b"anything", [])


def test_what_sudo_said_before_exiting_is_kept_for_the_error() -> None:
    wr = wrap("true", Become(None, SECRET))
    w = SudoWatcher(wr)
    feed_all(w, [wr.prompt, b"fleet-x is not in the sudoers file.\n"])
    assert refusal(w.pending().decode()) == "sudo refused: fleet-x is not in the sudoers file."


def test_a_refusal_names_the_user_and_target_not_the_wrapped_script() -> None:
    text = (
        "Sorry, user fleet-sudo is not allowed to execute '/usr/bin/sh -c printf %s\\n "
        "fleet-sudo-started-ab >&2; sh -s -- x' as nobody on vm.\n"
    )
    assert refusal(text) == (
        "sudo refused: Sorry, user fleet-sudo is not allowed to run commands as nobody on vm."
    )
    assert refusal("") == "sudo exited before starting the command (no message)"
    assert refusal("sudo: sorry, you must have a tty to run sudo\n") == (
        "sudo refused: sorry, you must have a tty to run sudo"
    )


def test_the_secret_stays_out_of_reprs() -> None:
    assert SECRET not in repr(Become("root", SECRET))


def test_the_asked_password_fills_only_become_hosts_without_their_own(tmp_path: Path) -> None:
    inv = tmp_path / "hosts.yml"
    inv.write_text(
        "all:\n"
        "  hosts:\n"
        "    plain: {}\n"
        "    becomes: {ansible_become: true}\n"
        "    own: {ansible_become: true, ansible_become_password: from-inventory}\n"
    )
    hosts = load_inventory(inv).select(None)
    out = {h.name: h for h in with_password(hosts, "typed")}
    assert out["plain"].become_password is None
    assert out["becomes"].become_password == "typed"
    assert out["own"].become_password == "from-inventory"  # the host var wins, as in Ansible
    assert with_password(hosts, None) == hosts
    assert replace(out["becomes"], become_password=None) == hosts[1]
