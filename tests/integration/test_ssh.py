"""SSH behaviour through the real lab sshd: host keys, timeouts, one exec per host."""

from __future__ import annotations

import re
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from fleet import lab
from tests.integration.conftest import audit_json, by_name, inventory_variant, run_fleet


def log_text(info: lab.LabInfo) -> str:
    return (info.state_dir / "sshd.log").read_text(errors="replace")


def key_line(info: lab.LabInfo) -> str:
    return info.known_hosts.read_text().strip()


def one_host(info: lab.LabInfo, tmp_path: Path, known_hosts: Path) -> Path:
    return inventory_variant(info, tmp_path / "inv.yml", fleet_known_hosts=str(known_hosts))


def test_unknown_host_key_is_refused_before_any_authentication(
    lab6: lab.LabInfo, tmp_path: Path
) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    inv = one_host(lab6, tmp_path, empty)
    before = log_text(lab6).count("publickey")
    rc, doc = audit_json("-i", inv, "--limit", "clean-*", "--cpu-window", "0")
    assert rc == 4
    host = doc["hosts"][0]
    assert host["status"] == "unreachable" and host["checks"] == []
    assert "unknown host key" in host["error"] and "SHA256:" in host["error"]
    assert log_text(lab6).count("publickey") == before  # sshd saw no auth attempt
    # Control: with the key known, the same run does authenticate, and sshd logs it.
    rc, _ = audit_json("-i", lab6.inventory, "--limit", "clean-*", "--cpu-window", "0")
    assert rc == 0 and log_text(lab6).count("Accepted publickey") > 0


def other_key(tmp_path: Path) -> str:
    key = tmp_path / "other_host_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    return " ".join(Path(f"{key}.pub").read_text().split()[:2])


def test_changed_host_key_is_refused_even_with_accept_new(
    lab6: lab.LabInfo, tmp_path: Path
) -> None:
    kh = tmp_path / "known_hosts"
    old = f"[127.0.0.1]:{lab6.port} {other_key(tmp_path)}\n"
    kh.write_text(old)
    inv = one_host(lab6, tmp_path, kh)
    for extra in ([], ["--accept-new-host-keys"]):
        rc, doc = audit_json("-i", inv, "--limit", "clean-*", "--cpu-window", "0", *extra)
        assert rc == 4
        assert "HOST KEY CHANGED" in doc["hosts"][0]["error"]
    assert kh.read_text() == old  # not overwritten


def test_a_known_key_of_another_type_makes_a_new_type_a_changed_key_not_a_new_host(
    lab6: lab.LabInfo, tmp_path: Path
) -> None:
    # The lab host offers ed25519; known_hosts holds only an RSA key for it. OpenSSH's
    # accept-new refuses this: a man in the middle only has to offer another key type.
    rsa = tmp_path / "rsa_host_key"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "rsa", "-b", "2048", "-N", "", "-f", str(rsa)], check=True
    )
    kh = tmp_path / "known_hosts"
    old = f"[127.0.0.1]:{lab6.port} {' '.join(Path(f'{rsa}.pub').read_text().split()[:2])}\n"
    kh.write_text(old)
    inv = one_host(lab6, tmp_path, kh)
    rc, doc = audit_json(
        "-i", inv, "--limit", "clean-*", "--cpu-window", "0", "--accept-new-host-keys"
    )
    assert rc == 4
    assert "HOST KEY CHANGED" in doc["hosts"][0]["error"]
    assert "ssh-rsa key for it" in doc["hosts"][0]["error"]
    assert kh.read_text() == old  # nothing appended: a later strict run must not trust it


def test_accept_new_records_the_key_then_strict_mode_trusts_it(
    lab6: lab.LabInfo, tmp_path: Path
) -> None:
    kh = tmp_path / "new_known_hosts"
    inv = inventory_variant(lab6, tmp_path / "inv.yml", fleet_known_hosts=str(kh))
    rc, _ = audit_json(
        "-i",
        inv,
        "--limit",
        "clean-*",
        "--cpu-window",
        "0",
        "--known-hosts",
        kh,
        "--accept-new-host-keys",
    )
    assert rc == 0
    recorded = kh.read_text().split()
    assert recorded[0] == f"[127.0.0.1]:{lab6.port}"
    assert recorded[1:3] == key_line(lab6).split()[1:3]
    rc, _ = audit_json("-i", inv, "--limit", "clean-*", "--cpu-window", "0")
    assert rc == 0


def test_hashed_known_hosts_entry_is_honoured(lab6: lab.LabInfo, tmp_path: Path) -> None:
    kh = tmp_path / "hashed"
    kh.write_text(key_line(lab6) + "\n")
    subprocess.run(["ssh-keygen", "-H", "-f", str(kh)], check=True, capture_output=True)
    assert kh.read_text().startswith("|1|")
    rc, _ = audit_json(
        "-i", one_host(lab6, tmp_path, kh), "--limit", "clean-*", "--cpu-window", "0"
    )
    assert rc == 0


def test_revoked_host_key_is_refused(lab6: lab.LabInfo, tmp_path: Path) -> None:
    kh = tmp_path / "revoked"
    kh.write_text(f"{key_line(lab6)}\n@revoked * {' '.join(key_line(lab6).split()[1:3])}\n")
    rc, doc = audit_json(
        "-i", one_host(lab6, tmp_path, kh), "--limit", "clean-*", "--cpu-window", "0"
    )
    assert rc == 4 and "REVOKED" in doc["hosts"][0]["error"]


@pytest.fixture
def silent_server() -> Iterator[int]:
    """Accepts TCP and never speaks SSH (a wedged sshd, a tarpit)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    conns: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                conns.append(srv.accept()[0])
            except OSError:
                continue

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    yield srv.getsockname()[1]
    stop.set()
    t.join()
    for c in conns:
        c.close()
    srv.close()


def test_silent_host_times_out_within_its_deadline_others_unaffected(
    lab6: lab.LabInfo, tmp_path: Path, silent_server: int
) -> None:
    doc = yaml.safe_load(lab6.inventory.read_text())
    doc["all"]["children"]["tarpit"] = {"hosts": {"tarpit-1": {"ansible_port": silent_server}}}
    inv = tmp_path / "inv.yml"
    inv.write_text(yaml.safe_dump(doc))
    rc, out = audit_json(
        "-i",
        inv,
        "--cpu-window",
        "0",
        "--connect-timeout",
        "2",
        "--timeout",
        "6",
        "--limit",
        "tarpit-1,clean-*,incident-*",
    )
    hosts = by_name(out)
    tarpit = hosts["tarpit-1"]
    assert tarpit["status"] == "unreachable"
    assert "timed out" in tarpit["error"]
    assert tarpit["duration_s"] < 6 + 2  # the per-host deadline held (slack for scheduling)
    assert hosts[lab6.hosts[1]]["status"] == "compliant"
    assert hosts[lab6.hosts[0]]["status"] == "non-compliant"
    assert rc == 5


def test_exactly_one_exec_per_host(lab6: lab.LabInfo) -> None:
    sessions = re.compile(r"Starting session: (?:forced-)?command")
    before = len(sessions.findall(log_text(lab6)))
    _, doc = audit_json("-i", lab6.inventory, "--cpu-window", "0")
    reached = [h for h in doc["hosts"] if h["status"] != "unreachable"]
    assert len(reached) == 5
    after = len(sessions.findall(log_text(lab6)))
    assert after - before == len(reached)


def test_become_runs_the_probe_under_sudo_n(lab6: lab.LabInfo, tmp_path: Path) -> None:
    inv = inventory_variant(lab6, tmp_path / "inv.yml", ansible_become=True)
    _, doc = audit_json("-i", inv, "--limit", "clean-*", "--cpu-window", "0")
    host = doc["hosts"][0]
    if subprocess.run(["sh", "-c", "command -v sudo"], capture_output=True).returncode:
        # No sudo on the host: a clear error, never a hang or a traceback.
        assert host["status"] == "error" and "sudo" in host["error"]
    else:
        assert host["status"] == "compliant", host


def test_wrong_client_key_is_an_auth_failure_not_retried(lab6: lab.LabInfo, tmp_path: Path) -> None:
    key = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    inv = inventory_variant(lab6, tmp_path / "inv.yml", ansible_ssh_private_key_file=str(key))
    proc = run_fleet("audit", "--json", "-i", inv, "--limit", "clean-*", "--cpu-window", "0")
    assert proc.returncode == 4
    assert "authentication failed" in proc.stdout
