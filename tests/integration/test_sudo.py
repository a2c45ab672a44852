"""ansible_become with a password, against a REAL sudo: a real non-root account logs in to the
lab's sshd with a key and becomes root through sudo, which asks for its real password (PAM,
/etc/shadow). Needs root to create the accounts and the sudoers drop-in: skipped otherwise,
failed under CI=true."""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import re
import secrets
import select
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paramiko
import pytest
import yaml

from fleet import lab
from fleet.transport.become import Become, BecomeError
from fleet.transport.endpoint import Endpoint
from fleet.transport.ssh import Connection
from tests.helpers import process_cmdlines
from tests.integration.conftest import by_name, fleet_argv, fleet_env, statuses

pytestmark = pytest.mark.integration

ASKS = "fleet-sudo"  # sudo asks this account for its password
NOPASS = "fleet-nopass"  # sudo never asks this one (NOPASSWD)
NARROW = "fleet-audit"  # may run fleet's remote command line as root, nothing else
# The least-privilege example that docs/security.md gives, as shipped, for NARROW.
EXAMPLE = (Path(__file__).parents[2] / "docs/sudoers.fleet").read_text()
SUDOERS = Path("/etc/sudoers.d/fleet-lab")
# lecture=always: sudo's lecture comes before its prompt on every run, as on a first sudo.
SUDOERS_TEXT = f"""\
# fleet lab (tests/integration/test_sudo.py): sudo asking for a password, and one that does not.
Defaults:{ASKS} lecture=always
{ASKS} ALL=(root, nobody) ALL
{NOPASS} ALL=(ALL) NOPASSWD: ALL
""" + EXAMPLE.replace("Defaults:fleet ", f"Defaults:{NARROW} ").replace(
    "\nfleet ALL=", f"\n{NARROW} ALL="
)
ENV_VAR = "FLEET_TEST_BECOME_PASS"
LOOKUP = "{{ lookup('env', '" + ENV_VAR + "') }}"


def _skip_or_fail(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: this test must run)", pytrace=False)
    pytest.skip(reason)


def _ensure_account(name: str, password: str) -> None:
    """A system user with a login shell and `password` (sshd refuses a locked account even
    for key auth, so it always gets one)."""
    try:
        pwd.getpwnam(name)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--create-home", "--home-dir", f"/var/lib/{name}",
             "--shell", "/bin/sh", name],
            check=True, capture_output=True,
        )  # fmt: skip
    # chpasswd reads stdin: the password is on no command line.
    subprocess.run(
        ["chpasswd"], input=f"{name}:{password}\n", text=True, check=True, capture_output=True
    )


@pytest.fixture(scope="module")
def password(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The accounts and the sudoers drop-in (idempotent); yields ASKS's distinctive password.
    The drop-in is removed afterwards: nothing keeps sudo rights past the tests."""
    if os.geteuid() != 0:
        _skip_or_fail("creating the sudo accounts needs root")
    for tool in ("sudo", "visudo", "useradd", "chpasswd"):
        if shutil.which(tool) is None:
            _skip_or_fail(f"{tool} not installed (apt-get install -y sudo)")
    secret = f"Fl33t-{secrets.token_hex(10)}-pw"
    _ensure_account(ASKS, secret)
    _ensure_account(NOPASS, f"unused-{secrets.token_hex(10)}")
    _ensure_account(NARROW, f"unused-{secrets.token_hex(10)}")
    candidate = tmp_path_factory.mktemp("sudoers") / "fleet-lab"
    candidate.write_text(SUDOERS_TEXT)
    check = subprocess.run(["visudo", "-cf", str(candidate)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    if not SUDOERS.exists() or SUDOERS.read_text() != SUDOERS_TEXT:
        candidate.chmod(0o440)
        os.replace(shutil.copy(candidate, SUDOERS.with_name(".fleet-lab.tmp")), SUDOERS)
    try:
        yield secret
    finally:
        with contextlib.suppress(FileNotFoundError):
            SUDOERS.unlink()


@pytest.fixture(scope="module")
def sudo_lab(password: str) -> Iterator[lab.LabInfo]:
    """incident-01, clean-02, half-fixed-03; the two accounts may log in with the lab key."""
    # sshd reads authorized_keys as the account logging in, so every directory above the
    # lab's state must let it through (pytest's own tmp dir is private to root).
    base = Path(tempfile.mkdtemp(prefix="fleet-sudo-lab-"))
    base.chmod(0o711)
    try:
        info = lab.up(base / "lab", hosts=3, scenario="mixed", extra_users=(ASKS, NOPASS, NARROW))
        try:
            yield info
        finally:
            lab.down(info.state_dir)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def inventory(info: lab.LabInfo, path: Path, **all_vars: Any) -> Path:
    doc = yaml.safe_load(info.inventory.read_text())
    doc["all"]["vars"].update({"ansible_user": ASKS, "ansible_become": True, **all_vars})
    path.write_text(yaml.safe_dump(doc))
    return path


def fleet(
    *args: str | Path, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        fleet_argv(*args),
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**fleet_env(), **(env or {})},
        start_new_session=True,  # no controlling terminal: -K cannot find one
    )


def audit(*args: str | Path, env: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    proc = fleet("audit", "--json", "--cpu-window", "0", *args, env=env)
    assert proc.stdout, proc.stderr
    return proc.returncode, json.loads(proc.stdout)


def tree(info: lab.LabInfo, kind: str) -> Path:
    name = next(h for h in info.hosts if h.startswith(kind))
    return (info.state_dir / "hosts" / name).resolve()


def snapshot(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.is_symlink() and not str(p.relative_to(root)).startswith("proc/")
        and not p.name.endswith(".bak")
    }  # fmt: skip


def assert_expected_verdicts(doc: dict[str, Any]) -> None:
    hosts = by_name(doc)
    assert hosts["clean-02"]["status"] == "compliant", hosts["clean-02"]
    assert hosts["incident-01"]["status"] == "non-compliant"
    assert statuses(hosts["incident-01"])["kprobes.registered"] == "fail"
    assert hosts["half-fixed-03"]["status"] == "non-compliant"
    assert statuses(hosts["half-fixed-03"])["netdata.ebpf"] == "fail"


# --- the audit through sudo ---------------------------------------------------------------


@pytest.mark.parametrize("source", ["plain", "env-lookup"])
def test_the_right_password_from_the_inventory_audits_as_root(
    sudo_lab: lab.LabInfo, password: str, tmp_path: Path, source: str
) -> None:
    if source == "plain":
        inv, env = inventory(sudo_lab, tmp_path / "inv.yml", ansible_become_password=password), {}
    else:
        inv = inventory(sudo_lab, tmp_path / "inv.yml", ansible_become_password=LOOKUP)
        env = {ENV_VAR: password}
    rc, doc = audit("-i", inv, env=env)
    assert rc == 1, [(h["name"], h["status"], h["error"]) for h in doc["hosts"]]
    assert_expected_verdicts(doc)


def test_without_become_the_account_cannot_read_the_trees(
    sudo_lab: lab.LabInfo, tmp_path: Path
) -> None:
    """What the test above proves rests on this: only root reads the lab's host trees."""
    rc, doc = audit("-i", inventory(sudo_lab, tmp_path / "inv.yml", ansible_become=False))
    assert rc == 4
    assert all(h["status"] == "error" for h in doc["hosts"])
    assert "EACCES" in json.dumps(by_name(doc)["clean-02"]["checks"])


def test_a_wrong_password_fails_at_once_with_one_attempt(
    sudo_lab: lab.LabInfo, tmp_path: Path
) -> None:
    inv = inventory(sudo_lab, tmp_path / "inv.yml", ansible_become_password="not-the-password")
    start = time.monotonic()
    rc, doc = audit("-i", inv, "--limit", "clean*", "--timeout", "60")
    elapsed = time.monotonic() - start
    assert rc == 4
    assert doc["hosts"][0]["status"] == "error"
    assert doc["hosts"][0]["error"] == "sudo: wrong password"
    assert elapsed < 15, elapsed  # PAM's ~2 s failure delay, never the 60 s deadline


def test_without_a_password_sudo_n_says_how_to_give_one(
    sudo_lab: lab.LabInfo, tmp_path: Path
) -> None:
    rc, doc = audit("-i", inventory(sudo_lab, tmp_path / "inv.yml"), "--limit", "clean*")
    assert rc == 4
    assert doc["hosts"][0]["error"].startswith("sudo -n needs a password")
    assert "--ask-become-pass" in doc["hosts"][0]["error"]


def test_become_user_runs_the_probe_as_that_user(
    sudo_lab: lab.LabInfo, password: str, tmp_path: Path
) -> None:
    inv = inventory(
        sudo_lab, tmp_path / "inv.yml", ansible_become_password=password,
        ansible_become_user="nobody",
    )  # fmt: skip
    rc, doc = audit("-i", inv, "--limit", "clean*")
    host = doc["hosts"][0]
    assert rc == 4 and host["status"] == "error"
    assert "running as uid 65534" in json.dumps(host["checks"])


# --- -K -----------------------------------------------------------------------------------


def _run_on_a_terminal(argv: list[str], answer: str, env: dict[str, str]) -> tuple[int, str, str]:
    """Run with a pty as the controlling terminal (stdout piped apart); type `answer` at the
    password prompt. Returns (rc, stdout, everything the terminal showed)."""
    import fcntl
    import termios

    primary, secondary = os.openpty()

    def take_terminal() -> None:  # runs in the child after setsid
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    proc = subprocess.Popen(
        argv, stdin=secondary, stdout=subprocess.PIPE, stderr=secondary, env=env,
        start_new_session=True, preexec_fn=take_terminal,
    )  # fmt: skip
    os.close(secondary)
    shown = b""
    typed = False
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([primary], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(primary, 4096)
                except OSError:  # EIO: the child closed its side
                    break
                if not chunk:
                    break
                shown += chunk
                if not typed and b"BECOME password:" in shown:
                    os.write(primary, answer.encode() + b"\n")
                    typed = True
            elif proc.poll() is not None:
                break
        out = proc.stdout.read().decode() if proc.stdout else ""
        rc = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(primary)
    return rc, out, shown.decode(errors="replace")


def test_ask_become_pass_prompts_once_on_the_terminal_without_echo(
    sudo_lab: lab.LabInfo, password: str, tmp_path: Path
) -> None:
    inv = inventory(sudo_lab, tmp_path / "inv.yml")  # become, no password in the inventory
    argv = fleet_argv("audit", "-i", inv, "-K", "--json", "--cpu-window", "0")
    rc, out, shown = _run_on_a_terminal(argv, password, fleet_env())
    assert shown.count("BECOME password:") == 1
    assert password not in shown  # no echo
    assert rc == 1, shown
    assert_expected_verdicts(json.loads(out))


def test_ask_become_pass_without_a_terminal_is_a_usage_error(
    sudo_lab: lab.LabInfo, tmp_path: Path
) -> None:
    proc = fleet("audit", "-i", inventory(sudo_lab, tmp_path / "inv.yml"), "-K")
    assert proc.returncode == 2
    assert proc.stderr.startswith("fleet: error: --ask-become-pass needs a terminal")
    assert len(proc.stderr.splitlines()) == 1 and proc.stdout == ""


# --- the connection itself ---------------------------------------------------------------


@pytest.fixture
def connect_as(sudo_lab: lab.LabInfo) -> Iterator[Any]:
    """fleet's Connection over a plain paramiko transport (the lab's host key checked), so
    these tests drive the become exchange with commands of their own."""
    opened: list[Connection] = []

    def open_as(user: str) -> Connection:
        sock = socket.create_connection((sudo_lab.address, sudo_lab.port), timeout=10)
        t = paramiko.Transport(sock)
        t.start_client(timeout=10)
        host_pub = (sudo_lab.state_dir / "ssh_host_ed25519_key.pub").read_text().split()[1]
        assert t.get_remote_server_key().get_base64() == host_pub
        t.auth_publickey(user, paramiko.PKey.from_path(str(sudo_lab.client_key)))
        endpoint = Endpoint(
            address=sudo_lab.address, port=sudo_lab.port, user=user,
            key_files=(str(sudo_lab.client_key),),
        )  # fmt: skip
        opened.append(Connection(t, endpoint))
        return opened[-1]

    yield open_as
    for conn in opened:
        conn.close()


def test_stdin_reaches_the_command_after_sudo_took_the_password(
    connect_as: Any, password: str
) -> None:
    conn = connect_as(ASKS)
    res = conn.run(
        "id -un; cat", b"line 1\nline 2\n", time.monotonic() + 30, Become(None, password)
    )
    assert res.rc == 0
    assert res.stdout == "root\nline 1\nline 2\n"  # the password was sudo's alone
    assert "usual lecture" in res.stderr  # sudo's words before its prompt are kept
    assert "fleet-sudo-" not in res.stderr  # our markers are not


def test_when_sudo_does_not_ask_the_password_is_never_sent(connect_as: Any, password: str) -> None:
    conn = connect_as(NOPASS)
    res = conn.run("id -un; cat", b"script\n", time.monotonic() + 30, Become(None, password))
    assert res.rc == 0
    assert res.stdout == "root\nscript\n"  # a password sent anyway would be read by cat
    assert res.stderr == ""


def test_become_user_and_a_refused_target_user(connect_as: Any, password: str) -> None:
    conn = connect_as(ASKS)
    res = conn.run("id -un", b"", time.monotonic() + 30, Become("nobody", password))
    assert res.stdout == "nobody\n"
    with pytest.raises(BecomeError) as refused:
        conn.run("id -un", b"", time.monotonic() + 30, Become("daemon", password))
    assert re.fullmatch(
        r"sudo refused: Sorry, user fleet-sudo is not allowed to run commands as daemon on \S+",
        str(refused.value),
    )
    # The connection survives a refused exec.
    assert conn.run("id -un", b"", time.monotonic() + 30, Become(None, password)).stdout == (
        "root\n"
    )


# --- remediate and roll back through sudo --------------------------------------------------


def test_remediate_apply_and_rollback_through_sudo(
    sudo_lab: lab.LabInfo, password: str, tmp_path: Path
) -> None:
    root = tree(sudo_lab, "half-fixed")
    before = snapshot(root)
    inv = inventory(sudo_lab, tmp_path / "inv.yml", ansible_become_password=password)
    env = {"FLEET_STATE_DIR": str(tmp_path / "state")}
    proc = fleet(
        "remediate", "-i", inv, "--host", "half*", "--apply", "--yes", "--json",
        "--cpu-window", "0", "--settle", "0", env=env,
    )  # fmt: skip
    host = json.loads(proc.stdout)["hosts"][0]
    assert proc.returncode == 0, host
    assert [(s["id"], s["status"]) for s in host["steps"]] == [("netdata.ebpf_off", "applied")]
    assert host["status"] == "compliant"
    conf = root / "etc/netdata/netdata.conf"
    assert conf.read_bytes() != before["etc/netdata/netdata.conf"]
    assert conf.stat().st_uid == 0  # written by root, through sudo

    proc = fleet("rollback", "-i", inv, "--host", "half*", "--json", env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert snapshot(root) == before


# --- the password goes nowhere -------------------------------------------------------------


def test_the_password_appears_in_no_output_log_journal_history_or_command_line(
    sudo_lab: lab.LabInfo, password: str, tmp_path: Path
) -> None:
    wrong = f"Wr0ng-{secrets.token_hex(10)}"
    state = tmp_path / "state"
    env = {"FLEET_STATE_DIR": str(state), ENV_VAR: password}
    by_env = inventory(sudo_lab, tmp_path / "env.yml", ansible_become_password=LOOKUP)
    plain = inventory(sudo_lab, tmp_path / "plain.yml", ansible_become_password=password)
    bad = inventory(sudo_lab, tmp_path / "bad.yml", ansible_become_password=wrong)
    history = tmp_path / "history.sqlite"

    seen: set[bytes] = set()
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            seen.update(process_cmdlines().values())
            time.sleep(0.05)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    outputs: list[str] = []
    try:
        runs: list[tuple[str | Path, ...]] = [
            ("audit", "-i", by_env, "--cpu-window", "1", "-v"),
            ("audit", "-i", plain, "--cpu-window", "0", "--json", "-o", tmp_path / "a.json"),
            ("audit", "-i", bad, "--cpu-window", "0", "--limit", "clean*", "-v"),
            ("remediate", "-i", by_env, "--host", "half*", "--apply", "--yes", "--json",
             "--cpu-window", "0", "--settle", "0"),
            ("rollback", "-i", plain, "--host", "half*"),
            ("report", "-i", by_env, "--cpu-window", "0", "--history", history,
             "--format", "json:" + str(tmp_path / "r.json"), "--format", "table"),
        ]  # fmt: skip
        for args in runs:
            proc = fleet(*args, env=env)
            outputs += [proc.stdout, proc.stderr]
            assert proc.returncode in (0, 1, 4, 5), (args, proc.stderr)
    finally:
        stop.set()
        watcher.join()

    # The watcher saw the remote side too (the lab's sshd is on this machine): sudo -S lives
    # as long as the probe does, a second with --cpu-window 1.
    assert any(c.startswith(b"sudo\0-S\0-p\0") for c in seen), "no sudo -S command line seen"
    files = [tmp_path / "a.json", tmp_path / "r.json", *tmp_path.glob("history.sqlite*")]
    files += [p for p in state.rglob("*") if p.is_file()]
    files += [p for p in sudo_lab.state_dir.glob("*.log")]
    journals = [p for p in state.rglob("*.jsonl")]
    assert journals and history.exists()
    for secret in (password, wrong):
        s = secret.encode()
        assert not any(secret in text for text in outputs), "in stdout/stderr"
        for f in files:
            assert s not in f.read_bytes(), f
        assert not any(s in c for c in seen), "on a command line"


def test_the_least_privilege_sudoers_example_runs_fleet_and_nothing_else(
    sudo_lab: lab.LabInfo, connect_as: Any, tmp_path: Path
) -> None:
    assert f"{NARROW} ALL=(root) NOPASSWD: FLEET_REMOTE" in SUDOERS_TEXT
    inv = inventory(sudo_lab, tmp_path / "narrow.yml", ansible_user=NARROW)
    rc, doc = audit("-i", inv)
    assert rc in (0, 1)  # every host read as root: the trees are private to root
    assert {h["status"] for h in doc["hosts"]} <= {"compliant", "non-compliant"}, doc["hosts"]
    env = {"FLEET_STATE_DIR": str(tmp_path / "state")}
    half = tree(sudo_lab, "half-fixed")
    before = snapshot(half)
    done = fleet("remediate", "-i", inv, "--host", "half*", "--apply", "--yes", "--cpu-window",
                 "0", "--settle", "0", env=env)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    back = fleet("rollback", "-i", inv, "--host", "half*", env=env)
    assert back.returncode == 0, back.stdout + back.stderr
    assert snapshot(half) == before
    # Anything else as root is refused, a shell included.
    conn = connect_as(NARROW)
    for command in ("id -un", "sh -c id", "cat /etc/shadow", "sh -s"):
        res = conn.run(command, b"id -un\n", time.monotonic() + 30, Become(None, None))
        assert res.rc != 0 and res.stdout == "", (command, res)
        assert "a password is required" in res.stderr or "not allowed" in res.stderr
