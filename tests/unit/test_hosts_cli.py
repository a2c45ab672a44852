"""`fleet hosts`: the table, -v sources, --json, and bad ssh_config as exit 2."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import yaml

from fleet.cli import main

pytestmark = pytest.mark.skipif(shutil.which("ssh") is None, reason="no OpenSSH client")


def _inventory(tmp_path: Path, config_text: str) -> Path:
    cfg = tmp_path / "config"
    cfg.write_text(config_text)
    inv = tmp_path / "inv.yml"
    common = {"ansible_ssh_common_args": f"-F {cfg}"}
    inv.write_text(
        yaml.safe_dump(
            {
                "all": {
                    "vars": common,
                    "children": {
                        "db": {"hosts": {"db01": {"ansible_host": "10.9.0.1"}}},
                        "web": {"hosts": {"web01": {"ansible_port": 2200}}},
                    },
                }
            }
        )
    )
    return inv


CONFIG = (
    "Host 10.9.*\n  ProxyJump ops@127.0.0.9:2222\n  User dbadmin\n"
    "Host web01\n  HostName 127.0.0.8\n  Port 9999\n  User www\n"
)


def test_table_lists_address_port_user_groups_and_route(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["hosts", "-i", str(_inventory(tmp_path, CONFIG))]) == 0
    rows = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines()[2:4]}
    assert rows["db01"][:5] == ["db01", "10.9.0.1", "22", "dbadmin", "db"]
    assert rows["db01"][5:] == ["jump:", "ops@127.0.0.9:2222"]
    assert rows["web01"] == ["web01", "127.0.0.8", "2200", "www", "web", "direct"]


def test_verbose_names_the_inventory_var_or_config_line_behind_each_setting(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    inv = _inventory(tmp_path, CONFIG)
    assert main(["hosts", "-i", str(inv), "-v", "--limit", "web01"]) == 0
    out = capsys.readouterr().out
    cfg = re.escape(str(tmp_path / "config"))
    assert re.search(rf"address +127\.0\.0\.8 +<- ssh_config {cfg}:5\n", out)
    assert re.search(r"port +2200 +<- inventory var ansible_port \(.*inv\.yml:\d+\)\n", out)
    assert re.search(rf"user +www +<- ssh_config {cfg}:7\n", out)


def test_json_is_one_document_with_every_host(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["hosts", "-i", str(_inventory(tmp_path, CONFIG)), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert (doc["schema"], doc["command"]) == (1, "hosts")
    db = doc["hosts"][0]
    assert db["jump"][0] == {
        "name": "ops@[127.0.0.9]:2222",  # as ssh -G prints the ProxyJump
        "address": "127.0.0.9",
        "port": 2222,
        "user": "ops",
        "key_files": [],
    }
    assert db["sources"]["user"] == f"ssh_config {tmp_path / 'config'}:3"


def test_a_config_ssh_refuses_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    inv = _inventory(tmp_path, "Host *\n  NoSuchOption yes\n")
    assert main(["hosts", "-i", str(inv)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "host 'db01'" in err and f"{tmp_path / 'config'}: line 2" in err


def test_without_an_ssh_client_paramiko_reads_the_config_with_one_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # no `ssh` anywhere
    from fleet.transport.hosts import list_hosts

    listed = list_hosts(_inventory(tmp_path, CONFIG), None, tmp_path / "config")
    assert listed.ssh_runs == 0 and len(listed.warnings) == 1
    web = next(v.endpoint for v in listed.hosts if v.name == "web01")
    assert (web.address, web.port, web.user) == ("127.0.0.8", 2200, "www")
    assert main(["hosts", "-i", str(_inventory(tmp_path, CONFIG))]) == 0
    err = capsys.readouterr().err
    assert err.count("fleet: warning: no ssh client found") == 1 and err.count("\n") == 1
