"""ssh_config through the real lab sshd: what OpenSSH reads (Include, Port, IdentityFile,
ProxyCommand tokens) decides whether and how fleet reaches a host."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from fleet import lab
from tests.integration.conftest import audit_json, by_name, run_fleet

pytestmark = pytest.mark.integration


def _inventory(info: lab.LabInfo, path: Path, hosts: dict[str, dict[str, Any]]) -> Path:
    """The lab's clean host under other names, WITHOUT the lab's port and key: only an
    ssh_config can say where sshd listens and which key it takes."""
    doc = yaml.safe_load(info.inventory.read_text())
    clean = next(
        h
        for group in doc["all"]["children"].values()
        for name, h in group["hosts"].items()
        if name.startswith("clean-")
    )
    base = {k: v for k, v in doc["all"]["vars"].items()}
    for key in ("ansible_port", "ansible_ssh_private_key_file", "ansible_host"):
        base.pop(key)
    inv = {"all": {"vars": base, "hosts": {n: {**clean, **v} for n, v in hosts.items()}}}
    path.write_text(yaml.safe_dump(inv))
    return path


def test_an_included_config_makes_an_unreachable_host_reachable(
    lab6: lab.LabInfo, tmp_path: Path
) -> None:
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "conf.d" / "lab.conf").write_text(
        f"Host 127.0.0.1\n  Port {lab6.port}\n  IdentityFile {lab6.client_key}\n"
    )
    main = tmp_path / "main.conf"
    main.write_text(f"Include {tmp_path}/conf.d/*.conf\n")
    without = _inventory(lab6, tmp_path / "without.yml", {"h": {"ansible_host": "127.0.0.1"}})
    rc, doc = audit_json("-i", without, "--cpu-window", "0", "--connect-timeout", "3")
    assert rc == 4 and by_name(doc)["h"]["status"] == "unreachable"

    args = {"ansible_host": "127.0.0.1", "ansible_ssh_common_args": f"-F {main}"}
    inv = _inventory(lab6, tmp_path / "with.yml", {"h": args})
    rc, doc = audit_json("-i", inv, "--cpu-window", "0")
    host = by_name(doc)["h"]
    assert (rc, host["status"], host["port"]) == (0, "compliant", lab6.port), host["error"]

    shown = run_fleet("hosts", "-i", inv, "-v")
    assert shown.returncode == 0, shown.stderr
    assert f"ssh_config {tmp_path}/conf.d/lab.conf:2" in shown.stdout  # Port's line
    assert f"{lab6.client_key} (ssh_config {tmp_path}/conf.d/lab.conf:3)" in shown.stdout


def test_proxy_command_gets_the_address_and_port_ssh_connects_to(
    lab6: lab.LabInfo, tmp_path: Path
) -> None:
    """%h is the HostName (not the inventory's address), %p the config's port unless the
    inventory sets one; the proxy is a real forwarder (busybox nc) that logs its args."""
    log = tmp_path / "proxy.log"
    proxy = tmp_path / "proxy.sh"
    proxy.write_text(f'#!/bin/sh\necho "$1 $2" >> {log}\nexec busybox nc "$1" "$2"\n')
    proxy.chmod(0o755)
    cfg = tmp_path / "config"
    cfg.write_text(
        "Host lab-by-config\n"
        f"  HostName 127.0.0.1\n  Port {lab6.port}\n"
        "Host lab-by-inventory\n"
        "  HostName 127.0.0.1\n  Port 1\n"
        "Host *\n"
        f"  IdentityFile {lab6.client_key}\n"
        f"  ProxyCommand {proxy} %h %p\n"
    )
    common = f"-F {cfg}"
    inv = _inventory(
        lab6,
        tmp_path / "inv.yml",
        {
            "a": {"ansible_host": "lab-by-config", "ansible_ssh_common_args": common},
            "b": {
                "ansible_host": "lab-by-inventory",
                "ansible_port": lab6.port,
                "ansible_ssh_common_args": common,
            },
        },
    )
    rc, doc = audit_json("-i", inv, "--cpu-window", "0")
    hosts = by_name(doc)
    assert rc == 0, {n: h["error"] for n, h in hosts.items()}
    assert {h["status"] for h in hosts.values()} == {"compliant"}
    assert log.read_text().splitlines() == [f"127.0.0.1 {lab6.port}"] * 2

    listed = json.loads(run_fleet("hosts", "-i", inv, "--json").stdout)
    via = {h["name"]: h["proxy_command"] for h in listed["hosts"]}
    assert via == {n: f"{proxy} 127.0.0.1 {lab6.port}" for n in ("a", "b")}
