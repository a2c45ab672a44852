"""Faults that must end as one host's honest status, never as a crash or a traceback.

Each fault is real: a loopback server that speaks something other than SSH, a command that
raises inside fleet. docs/reliability.md lists the matrix these tests hold.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import resource
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from fleet import cli, lab
from fleet.lab import bastion
from fleet.lab import lab as lab_sshd
from fleet.transport.ssh import OUTPUT_LIMIT
from tests.integration.conftest import audit_json, run_fleet, statuses
from tests.tcpserver import faulty_link, tcp_server

pytestmark = [pytest.mark.integration, pytest.mark.faults]


@pytest.fixture
def not_ssh() -> Iterator[int]:
    """A loopback server that answers every connection like a web server, then hangs up."""
    with tcp_server(lambda conn, _stop: conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")) as port:
        yield port


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


def _garble(tree: Path) -> int:
    """Overwrite every file of a lab host's tree with damaged text of many kinds."""
    rng = random.Random(1234)
    kinds = [
        lambda: bytes(rng.randrange(256) for _ in range(4096)),  # random bytes
        lambda: b"\x00" * 100 + b"sched:sched_switch\x00\n",  # NUL around a real-looking line
        lambda: b"x" * (1 << 20) + b"\n",  # a 1 MB line
        lambda: b'[{"id": 7, "type": "kprobe", "pids": 3',  # truncated JSON
        lambda: "\u2028\r\x0c\x0b\x85".encode() * 50,  # what Python takes for line breaks
        lambda: b"",
    ]
    count = 0
    for path in sorted(p for p in tree.rglob("*") if p.is_file() and not p.is_symlink()):
        rel = path.relative_to(tree).as_posix()
        if rel.startswith(("usr/", "proc/stat", "var/lib/fleet-lab")):
            continue  # the lab's own programs and its CPU model's file
        path.write_bytes(kinds[count % len(kinds)]())
        count += 1
    # bpftool answering JSON of the wrong types: pids a number, null in the list.
    bpftool = tree / "usr/sbin/bpftool"
    bpftool.write_text('#!/bin/sh\necho \'[{"id": 1, "type": "kprobe", "pids": 7}, null]\'\n')
    bpftool.chmod(0o755)
    return count


def _verdicts(doc: dict[str, Any]) -> dict[str, tuple[str, dict[str, str]]]:
    return {h["name"]: (h["status"], statuses(h)) for h in doc["hosts"]}


def test_a_host_of_garbage_is_its_own_error_and_the_others_keep_their_results(
    tmp_path: Path,
) -> None:
    info = lab.up(tmp_path / "lab", hosts=3, scenario="mixed")
    try:
        args = ("-i", info.inventory, "--cpu-window", "1")
        _, before = audit_json(*args)
        assert _garble(info.state_dir / "hosts" / "clean-02") > 20
        rc, after = audit_json(*args)
    finally:
        lab.down(info.state_dir)
    was, now = _verdicts(before), _verdicts(after)
    assert was["clean-02"][0] == "compliant"
    status, checks = now.pop("clean-02")
    # Never compliant. Unreadable kernel files are errors; netdata reads a garbage
    # netdata.conf as "nothing set", so its plugin runs by default: that check fails, and a
    # failing check makes the host non-compliant (the contract's precedence).
    assert status == "non-compliant", checks
    assert checks["tracing.set_event"] == checks["kprobes.registered"] == "error", checks
    assert checks["bpf.tracing_programs"] == "error", checks
    assert checks["netdata.ebpf"] == "fail", checks
    assert now == {name: was[name] for name in now}  # the good hosts: exactly as before
    assert rc == 1  # both non-compliant; no host unreachable or in error


@pytest.fixture
def auth_staller(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """A real sshd whose every public key check hangs (AuthorizedKeysCommand sleeps)."""
    if os.geteuid() != 0:
        if os.environ.get("CI"):
            pytest.fail("sshd runs AuthorizedKeysCommand as another user only as root")
        pytest.skip("sshd runs AuthorizedKeysCommand as another user only as root")
    key = tmp_path / "host_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key], check=True)
    (tmp_path / "authorized_keys").write_text("")
    port = lab_sshd._free_port()
    lines = [
        f"ListenAddress {lab_sshd.ADDRESS}:{port}",
        *lab_sshd.sshd_config_lines(
            key, tmp_path / "sshd.pid", tmp_path / "authorized_keys", ("root",), forwarding="no"
        ),
        "AuthorizedKeysCommand /usr/bin/sleep 30",
        "AuthorizedKeysCommandUser nobody",
    ]
    (tmp_path / "sshd_config").write_text("\n".join(lines) + "\n")
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    with open(tmp_path / "sshd.log", "ab") as log:
        proc = subprocess.Popen(
            [str(lab_sshd.SSHD), "-D", "-e", "-f", tmp_path / "sshd_config"],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
        )
    try:
        assert lab_sshd._wait_banner(port, proc), (tmp_path / "sshd.log").read_text()
        pub = Path(f"{key}.pub").read_text().split()
        known = tmp_path / "known_hosts"
        known.write_text(f"[{lab_sshd.ADDRESS}]:{port} {pub[0]} {pub[1]}\n")
        yield port, known
    finally:
        bastion.stop_pid(proc.pid)


def test_the_connect_timeout_bounds_auth_however_many_keys_there_are(
    tmp_path: Path, auth_staller: tuple[int, Path]
) -> None:
    port, known = auth_staller
    keys = []
    for n in range(3):
        k = tmp_path / f"id_{n}"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", k], check=True)
        keys.append(k)
    inv = tmp_path / "inv.yml"
    inv.write_text(
        "all:\n  hosts:\n    stall:\n"
        f"      ansible_host: 127.0.0.1\n      ansible_port: {port}\n"
        f"      ansible_user: root\n      fleet_known_hosts: {known}\n"
        f"      ansible_ssh_private_key_file: {keys[0]}\n"
        f"      ansible_ssh_common_args: -o IdentityFile={keys[1]} -o IdentityFile={keys[2]}\n"
    )
    started = time.monotonic()
    proc = run_fleet("audit", "-i", inv, "--cpu-window", "0", "--connect-timeout", "3", "--json")
    took = time.monotonic() - started
    (host,) = json.loads(proc.stdout)["hosts"]
    assert proc.returncode == 4 and host["status"] == "unreachable", host
    assert "authentication stalled" in host["error"], host
    # One connect timeout for the whole attempt, not one per key (3 keys would be 9 s+).
    assert took < 3 * 3, took


def test_huge_output_is_cut_at_the_limit_and_much_stderr_does_not_stall_stdout(
    tmp_path: Path,
) -> None:
    info = lab.up(tmp_path / "lab", hosts=21, scenario="clean")
    big, noisy_host = info.hosts[:20], info.hosts[20]
    try:
        hosts = info.state_dir / "hosts"
        # Twenty hosts, all at once (--forks 20), each with a set_event far over the limit
        # (one 48 MB file, hard-linked into every tree): each stops at the limit, and the
        # client's memory stays bounded by forks x limit, not by what the hosts hold.
        line = b"sched:sched_switch\n"
        blob = tmp_path / "set_event.big"
        blob.write_bytes(line * (48 * 2**20 // len(line)))
        for name in big:
            target = (hosts / name / "sys/kernel/tracing/set_event").resolve()
            target.unlink()
            try:
                os.link(blob, target)
            except OSError:  # trees on another filesystem (tmpfs): a copy each
                target.write_bytes(blob.read_bytes())
        # One whose bpftool warns 8 MB on stderr before its JSON: read together, no stall.
        noisy = hosts / noisy_host / "usr/sbin/bpftool"
        noisy.write_text(
            "#!/bin/sh\nhead -c 8388608 /dev/zero | tr '\\\\0' w >&2\necho '[]'\n"
        )
        noisy.chmod(0o755)
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        rc, doc = audit_json(
            "-i", info.inventory, "--cpu-window", "0", "--timeout", "120", "--forks", "21"
        )
        peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    finally:
        lab.down(info.state_dir)
    by = {h["name"]: h for h in doc["hosts"]}
    for name in big:
        assert by[name]["status"] == "error", by[name]
        assert by[name]["error"] == f"output over {OUTPUT_LIMIT // 2**20} MiB: stopped"
    quiet = by[noisy_host]
    assert quiet["status"] == "compliant", quiet
    assert statuses(quiet)["bpf.tracing_programs"] == "pass"
    assert rc == 4
    # 20 x 48 MB never sit in the client's memory: at most 20 x 16 MiB in flight.
    assert max(peak_kib, before) < 500 * 1024, peak_kib


# fault -> (status, words of the one-line reason). The link is a loopback proxy in front of the
# lab's real sshd that damages what the server sends (tests/tcpserver.py, faulty_link).
LINK_FAULTS = {
    "banner-stall": ("unreachable", "SSH key exchange stalled after the server's banner"),
    "kex-stall": ("unreachable", "SSH key exchange stalled after the server's banner"),
    "trickle": ("unreachable", "SSH handshake timed out (no banner)"),
    "stall-after": ("error", "remote command did not finish before the deadline"),
    "reset-after": ("error", "connection lost mid-output: probe output incomplete"),
}


def test_each_broken_link_is_its_own_honest_reason_and_the_others_finish(tmp_path: Path) -> None:
    info = lab.up(tmp_path / "lab", hosts=2, scenario="clean")
    try:
        doc = yaml.safe_load(info.inventory.read_text())
        group = next(iter(doc["all"]["children"].values()))
        base = dict(next(iter(group["hosts"].values())))
        key = info.known_hosts.read_text().splitlines()[0].split(" ", 1)[1]
        with contextlib.ExitStack() as links:
            for fault in LINK_FAULTS:
                # "-after" faults: a working session (auth done, the probe sampling its CPU
                # window) whose link then stalls or is reset.
                port = links.enter_context(faulty_link(info.port, fault, after_s=1.0))
                group["hosts"][fault] = {**base, "ansible_port": port}
                with open(info.known_hosts, "a") as f:
                    f.write(f"[127.0.0.1]:{port} {key}\n")
            inv = tmp_path / "inv.yml"
            inv.write_text(yaml.safe_dump(doc))
            rc, out = audit_json(
                "-i", inv, "--cpu-window", "3", "--connect-timeout", "3", "--timeout", "8"
            )
    finally:
        lab.down(info.state_dir)
    hosts = {h["name"]: h for h in out["hosts"]}
    for fault, (status, words) in LINK_FAULTS.items():
        assert hosts[fault]["status"] == status, hosts[fault]
        assert words in hosts[fault]["error"], hosts[fault]
        assert "\n" not in hosts[fault]["error"]
    assert [hosts[h]["status"] for h in info.hosts] == ["compliant", "compliant"]
    assert rc == 4


def test_two_hundred_hosts_with_one_in_ten_faulty_all_healthy_ones_complete(
    tmp_path: Path,
) -> None:
    """180 healthy lab hosts and 20 broken in five ways, in one run: every healthy host gets
    its real result, every broken one its own reason. (How long the faults cost: `make bench`
    is where time is measured, docs/reliability.md.)"""
    info = lab.up(tmp_path / "lab", hosts=200, scenario="clean")
    wrong_key = tmp_path / "wrong_key"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(wrong_key)], check=True
    )
    try:
        doc = yaml.safe_load(info.inventory.read_text())
        group = next(iter(doc["all"]["children"].values()))
        names = list(group["hosts"])
        key = info.known_hosts.read_text().splitlines()[0].split(" ", 1)[1]
        expected: dict[str, tuple[str, str]] = {}
        with contextlib.ExitStack() as stack:
            silent = stack.enter_context(tcp_server(lambda _c, stop: stop.wait(30)))
            stall = stack.enter_context(faulty_link(info.port, "banner-stall"))
            with open(info.known_hosts, "a") as f:
                f.write(f"[127.0.0.1]:{stall} {key}\n")
            for i, name in enumerate(names[::10]):
                vars_ = group["hosts"][name]
                kind = ("refused", "silent", "stall", "auth", "garbage")[i % 5]
                if kind == "refused":
                    vars_["ansible_port"] = lab_sshd._free_port()
                    expected[name] = ("unreachable", "refused")
                elif kind == "silent":
                    vars_["ansible_port"] = silent
                    expected[name] = ("unreachable", "timed out")
                elif kind == "stall":
                    vars_["ansible_port"] = stall
                    expected[name] = ("unreachable", "stalled after the server's banner")
                elif kind == "auth":
                    vars_["ansible_ssh_private_key_file"] = str(wrong_key)
                    expected[name] = ("unreachable", "authentication")
                else:
                    _garble((info.state_dir / "hosts" / name).resolve())
                    # A garbage netdata.conf reads (as netdata reads it) as the defaults: the
                    # plugin on, a real fail; the unparseable files are errors. Never a pass.
                    expected[name] = ("non-compliant|error", "")
            inv = tmp_path / "inv.yml"
            inv.write_text(yaml.safe_dump(doc))
            rc, out = audit_json(
                "-i", inv, "--cpu-window", "0", "--connect-timeout", "3", "--timeout", "10",
                "--forks", "50",
            )  # fmt: skip
    finally:
        lab.down(info.state_dir)
    hosts = {h["name"]: h for h in out["hosts"]}
    assert len(hosts) == 200 and len(expected) == 20
    for name, (status, words) in expected.items():
        got = hosts[name]
        assert got["status"] in status.split("|"), [(c["id"], c["status"]) for c in got["checks"]]
        if not words:  # an unreadable check, or (on a loaded machine) the host's deadline
            assert got["error"] or any(c["status"] == "error" for c in got["checks"]), got
        assert words in (got["error"] or ""), got
    healthy = [h for n, h in hosts.items() if n not in expected]
    assert len(healthy) == 180 and all(h["status"] == "compliant" for h in healthy)
    assert rc == 5  # non-compliant (the garbage hosts' netdata) | error/unreachable
