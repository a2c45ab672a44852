"""Pure parts of the SSH layer: retry classification, endpoint resolution, known_hosts rules."""

from __future__ import annotations

import errno
from pathlib import Path

import paramiko
import pytest

from fleet.config.inventory import load_inventory
from fleet.transport.hostkeys import HostKeyProblem, KnownHosts, host_key_name
from fleet.transport.ssh import is_timeout, is_transient, resolve_endpoint


@pytest.mark.parametrize(
    ("exc", "transient"),
    [
        (ConnectionRefusedError(errno.ECONNREFUSED, "refused"), True),
        (ConnectionResetError(errno.ECONNRESET, "reset"), True),
        (EOFError(), True),
        (TimeoutError("timed out"), False),
        (TimeoutError("timed out"), False),
        (paramiko.AuthenticationException("denied"), False),
        (HostKeyProblem("changed"), False),
        (paramiko.SSHException("Error reading SSH protocol banner"), True),
        (paramiko.SSHException("Incompatible ssh peer"), False),
        (OSError(errno.EHOSTUNREACH, "no route"), False),
    ],
)
def test_only_transient_connect_errors_are_retried(exc: BaseException, transient: bool) -> None:
    assert is_transient(exc) is transient


def test_banner_timeout_wrapped_by_paramiko_is_a_timeout_not_transient() -> None:
    try:
        try:
            raise TimeoutError()
        except TimeoutError:
            raise paramiko.SSHException("Error reading SSH protocol banner") from None
    except paramiko.SSHException as wrapped:
        exc = wrapped
    exc.__context__ = TimeoutError()
    assert is_timeout(exc) and not is_transient(exc)


@pytest.fixture
def keys() -> tuple[paramiko.PKey, paramiko.PKey]:
    return paramiko.ECDSAKey.generate(), paramiko.ECDSAKey.generate()


def test_host_key_name_uses_brackets_only_off_port_22() -> None:
    assert host_key_name("10.0.0.1", 22) == "10.0.0.1"
    assert host_key_name("127.0.0.1", 2222) == "[127.0.0.1]:2222"


def test_known_key_matches_and_other_key_of_same_type_is_a_change(tmp_path: Path, keys) -> None:
    good, other = keys
    kh = tmp_path / "kh"
    kh.write_text(f"[127.0.0.1]:2222 {good.get_name()} {good.get_base64()}\n")
    known = KnownHosts.load([kh])
    assert known.verify("[127.0.0.1]:2222", good, accept_new=False) == "known"
    with pytest.raises(HostKeyProblem, match="HOST KEY CHANGED"):
        known.verify("[127.0.0.1]:2222", other, accept_new=True)
    with pytest.raises(HostKeyProblem, match="unknown host key"):
        known.verify("[127.0.0.1]:2223", good, accept_new=False)


def test_wildcards_and_negation_follow_openssh(tmp_path: Path, keys) -> None:
    good, _ = keys
    kh = tmp_path / "kh"
    kh.write_text(f"*.proxy.example,!bad.proxy.example {good.get_name()} {good.get_base64()}\n")
    known = KnownHosts.load([kh])
    assert known.verify("ams1.proxy.example", good, accept_new=False) == "known"
    with pytest.raises(HostKeyProblem, match="unknown"):
        known.verify("bad.proxy.example", good, accept_new=False)


def test_revoked_key_is_refused_whatever_else_matches(tmp_path: Path, keys) -> None:
    good, _ = keys
    kh = tmp_path / "kh"
    line = f"{good.get_name()} {good.get_base64()}"
    kh.write_text(f"host1 {line}\n@revoked * {line}\n")
    with pytest.raises(HostKeyProblem, match="REVOKED"):
        KnownHosts.load([kh]).verify("host1", good, accept_new=True)


def test_accept_new_appends_to_the_first_file(tmp_path: Path, keys) -> None:
    good, _ = keys
    first, second = tmp_path / "a" / "kh", tmp_path / "kh2"
    known = KnownHosts.load([first, second])
    assert known.verify("[::1]:22", good, accept_new=True) == "accepted-new"
    assert first.read_text() == f"[::1]:22 {good.get_name()} {good.get_base64()}\n"
    assert oct(first.stat().st_mode & 0o777) == "0o600"
    assert known.verify("[::1]:22", good, accept_new=False) == "known"


def test_inventory_vars_win_over_ssh_config_which_fills_the_rest(tmp_path: Path) -> None:
    cfg = tmp_path / "config"
    cfg.write_text(
        "Host web1 web2\n  HostName 192.0.2.7\n  Port 2200\n  User ops\n"
        "  IdentityFile ~/.ssh/ops_key\n"
    )
    inv = tmp_path / "inv.yml"
    inv.write_text(
        "all:\n  hosts:\n    web1: {}\n    web2: {ansible_host: 192.0.2.9, "
        "ansible_port: 22, ansible_user: root}\n"
    )
    hosts = load_inventory(inv).hosts
    config = paramiko.SSHConfig.from_path(str(cfg))
    e1 = resolve_endpoint(hosts["web1"], config)
    assert (e1.address, e1.port, e1.user) == ("192.0.2.7", 2200, "ops")
    assert e1.key_files == (str(Path("~/.ssh/ops_key").expanduser()),)
    e2 = resolve_endpoint(hosts["web2"], config)
    assert (e2.address, e2.port, e2.user) == ("192.0.2.9", 22, "root")


def test_fallback_matches_the_address_and_resolves_each_hop_with_its_own_config(
    tmp_path: Path,
) -> None:
    """paramiko fallback (no ssh client): like ssh, it looks the config up by ansible_host."""
    cfg = tmp_path / "config"
    inv = tmp_path / "inv.yml"
    inv.write_text("all:\n  hosts:\n    edge-1: {ansible_host: 'fd00::7'}\n")
    host = load_inventory(inv).hosts["edge-1"]
    cfg.write_text(
        "Host edge-*\n  Port 2999\n"
        "Host fd00::*\n  ProxyJump bastion1,admin@bastion2:2222\n"
        "Host bastion1\n  HostName 198.51.100.1\n  User ops\n  Port 2200\n"
    )
    e = resolve_endpoint(host, paramiko.SSHConfig.from_path(str(cfg)))
    assert e.proxy_command is None
    assert e.port == 22  # the inventory name's block does not apply
    assert [(h.address, h.port, h.user) for h in e.jump] == [
        ("198.51.100.1", 2200, "ops"),
        ("bastion2", 2222, "admin"),
    ]


def test_aead_ciphers_are_offered_first_and_nothing_is_dropped() -> None:
    import socket

    from fleet.transport.ssh import _prefer_aead_ciphers

    a, b = socket.socketpair()
    try:
        t = paramiko.Transport(a)
        before = list(t.get_security_options().ciphers)
        _prefer_aead_ciphers(t)
        after = list(t.get_security_options().ciphers)
    finally:
        a.close()
        b.close()
    assert after[:2] == ["aes128-gcm@openssh.com", "aes256-gcm@openssh.com"]
    assert sorted(after) == sorted(before)
