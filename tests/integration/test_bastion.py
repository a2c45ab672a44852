"""Jump hosts in the lab: 200 targets reached only through one real OpenSSH bastion.

Shown, not assumed: the bastion's own log counts sessions and direct-tcpip opens, `ss -tnp`
says which process holds each connection to the targets, and the bastion is stopped or
killed to see what the targets report."""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from fleet import lab
from fleet.lab import bastion as lab_bastion
from tests.integration.conftest import fleet_argv, fleet_env

pytestmark = pytest.mark.integration

N = 200
DIRECT = "direct-01"


@dataclass
class Setup:
    info: lab.LabInfo
    state: Path  # the bastion's state dir
    port: int  # the bastion's port, fixed before it first starts
    inventory: Path
    bastion_known_hosts: Path
    env: dict[str, str]
    spec: str  # user@127.0.0.1:PORT, as fleet_jump says it
    current: lab_bastion.Bastion | None = None

    def start(self) -> lab_bastion.Bastion:
        authorized = self.info.state_dir / "authorized_keys"
        target = [(self.info.address, self.info.port)]
        self.current = lab_bastion.start(self.state, authorized, target, port=self.port)
        return self.current

    def variant(self, name: str, jump: str) -> Path:
        """The same inventory with another `fleet_jump` for the hosts behind the bastion."""
        doc = yaml.safe_load(self.inventory.read_text())
        doc["all"]["children"]["behind"]["vars"]["fleet_jump"] = jump
        path = self.inventory.with_name(f"{name}.yml")
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        return path

    def stop(self) -> None:
        if self.current is not None:
            lab_bastion.stop(self.current)
            self.current = None


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    """200 clean lab hosts behind a bastion (not started yet), plus one direct host; keys
    in a real ssh-agent (the hop is resolved by `ssh -G`, the agent is where its key is)."""
    if shutil.which("ssh-agent") is None or shutil.which("ss") is None:
        pytest.skip("needs ssh-agent and ss")
    root = tmp_path_factory.mktemp("bastion")
    info = lab.up(root / "lab", hosts=N, scenario="clean", kernel_model=False)
    agent = None
    try:
        sock = root / "agent.sock"
        agent = lab_bastion.start_agent(sock)
        env = {**fleet_env(), "SSH_AUTH_SOCK": str(sock)}
        env.pop("FLEET_JUMP_VIA", None)
        subprocess.run(["ssh-add", "-q", str(info.client_key)], env=env, check=True)
        port = lab_bastion.free_port(avoid=info.port)
        user = info.inventory.read_text().split("ansible_user: ")[1].split()[0]
        spec = f"{user}@{info.address}:{port}"
        doc = yaml.safe_load(info.inventory.read_text())
        hosts = {}
        for group in doc["all"]["children"].values():
            hosts.update(group["hosts"])
        first = hosts[info.hosts[0]]
        doc["all"]["children"] = {
            "behind": {"vars": {"fleet_jump": spec}, "hosts": hosts},
            "direct": {"hosts": {DIRECT: dict(first)}},
        }
        inventory = root / "inventory.yml"
        inventory.write_text(yaml.safe_dump(doc, sort_keys=False))
        s = Setup(info, root / "bastion", port, inventory, root / "bastion_known_hosts", env, spec)
        # The bastion's host key exists before it first runs, so known_hosts can name it.
        lab_bastion.prepare(s.state, info.state_dir / "authorized_keys", [])
        pub = (s.state / "ssh_host_ed25519_key.pub").read_text().split()
        s.bastion_known_hosts.write_text(f"[{info.address}]:{port} {pub[0]} {pub[1]}\n")
        yield s
        s.stop()
    finally:
        lab.down(info.state_dir)
        if agent is not None:
            agent.terminate()
            agent.wait(5)


class Run:
    """The real CLI in the background; its output goes to files (a 200-host JSON document
    would fill a pipe nobody reads while the test samples `ss`)."""

    def __init__(self, s: Setup, *args: str, inventory: Path | None = None, cmd: str = "audit"):
        # Closed in finish(): they outlive this method by design.
        self.out = tempfile.TemporaryFile("w+")  # noqa: SIM115
        self.err = tempfile.TemporaryFile("w+")  # noqa: SIM115
        self.proc = subprocess.Popen(
            fleet_argv(cmd, "-i", inventory or s.inventory, "--json", *args),
            stdout=self.out,
            stderr=self.err,
            text=True,
            env=s.env,
        )

    def finish(self, timeout: float = 60) -> dict[str, Any]:
        try:
            self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        self.out.seek(0)
        self.err.seek(0)
        out, err = self.out.read(), self.err.read()
        self.out.close()
        self.err.close()
        assert out, err
        assert "Traceback" not in err, err
        doc: dict[str, Any] = json.loads(out)
        return doc


def _audit(s: Setup, *args: str, inventory: Path | None = None, cmd: str = "audit") -> Run:
    return Run(s, *args, inventory=inventory, cmd=cmd)


def _finish(run: Run, timeout: float = 60) -> dict[str, Any]:
    return run.finish(timeout)


def _by_name(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {h["name"]: h for h in doc["hosts"]}


def test_a_plain_audit_never_imports_fabric(setup: Setup) -> None:
    """fabric is loaded only when a jump host is used. (invoke is another matter: paramiko's
    config module imports it whenever it is installed, so fleet must add nothing to that.)"""
    probe = (
        "import sys\n"
        "from fleet.cli import main\n"
        "rc = main(sys.argv[1:])\n"
        "mods = sorted(m for m in sys.modules if m.split('.')[0] in ('fabric', 'invoke'))\n"
        "print('MODULES', rc, ' '.join(mods), file=sys.stderr)\n"
    )
    argv = ["audit", "-i", str(setup.inventory), "--limit", DIRECT, "--cpu-window", "0"]
    run = subprocess.run(
        [sys.executable, "-c", probe, *argv], capture_output=True, text=True, env=setup.env
    )
    line = next(ln for ln in run.stderr.splitlines() if ln.startswith("MODULES"))
    _, rc, *mods = line.split(" ")
    assert rc == "0", run.stdout + run.stderr
    assert not [m for m in " ".join(mods).split() if m.startswith("fabric")]
    base = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, paramiko; print(' '.join(sorted(m for m in sys.modules "
            "if m.split('.')[0] == 'invoke')))",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert set(" ".join(mods).split()) <= set(base.stdout.split())


def test_with_the_bastion_stopped_no_target_is_reached_and_each_names_it(setup: Setup) -> None:
    assert setup.current is None
    doc = _finish(
        _audit(setup, "--cpu-window", "0", "--known-hosts", str(setup.bastion_known_hosts))
    )
    hosts = _by_name(doc)
    assert hosts[DIRECT]["status"] == "compliant"
    behind = [h for name, h in hosts.items() if name != DIRECT]
    assert len(behind) == N
    assert Counter(h["status"] for h in behind) == {"unreachable": N}
    assert {h["error"] for h in behind} == {f"via bastion {setup.spec}: connection refused"}


def test_an_unknown_bastion_key_is_refused_before_any_authentication(setup: Setup) -> None:
    b = setup.start()
    offset = b.log.stat().st_size
    doc = _finish(_audit(setup, "--cpu-window", "0", "--limit", "behind"))
    errors = {h["error"] for h in doc["hosts"]}
    assert len(errors) == 1
    (error,) = errors
    assert error.startswith(
        f"via bastion {setup.spec}: unknown host key for [{b.address}]:{b.port}"
    )
    counts = lab_bastion.log_counts(b.log, offset)
    assert counts.accepted == 0 and counts.direct_tcpip == 0
    # No AutoAdd behind fleet's back: nothing was written anywhere either.
    assert not (Path(setup.env["HOME"]) / ".ssh" / "known_hosts").exists()


THREE = "clean-001,clean-002,clean-003"


def test_accept_new_records_the_bastion_key_and_the_next_run_trusts_it(
    setup: Setup, tmp_path: Path
) -> None:
    b = setup.current or setup.start()
    fresh = tmp_path / "known_hosts"
    doc = _finish(
        _audit(
            setup,
            "--cpu-window",
            "0",
            "--limit",
            THREE,
            "--accept-new-host-keys",
            "--known-hosts",
            str(fresh),
        )
    )
    assert Counter(h["status"] for h in doc["hosts"]) == {"compliant": 3}
    key = b.known_hosts_line.split(" ", 1)[1]
    assert fresh.read_text() == f"[{b.address}]:{b.port} {key}\n"
    again = _finish(
        _audit(setup, "--cpu-window", "0", "--limit", THREE, "--known-hosts", str(fresh))
    )
    assert Counter(h["status"] for h in again["hosts"]) == {"compliant": 3}


def test_fabric_reads_no_ssh_config_of_its_own(setup: Setup, tmp_path: Path) -> None:
    """fleet resolved the hop; fabric, left to itself, would look the bastion up in
    ~/.ssh/config (found through $HOME, unlike OpenSSH) and send it elsewhere."""
    b = setup.current or setup.start()
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "config").write_text(
        f"Host {b.address}\n    HostName 127.0.0.9\n    Port 1\n    ProxyCommand false\n"
    )
    env = setup.env
    setup.env = {**env, "HOME": str(home)}
    try:
        run = _audit(
            setup,
            "--cpu-window", "0", "--limit", THREE,
            "--known-hosts", str(setup.bastion_known_hosts),
        )  # fmt: skip
        doc = _finish(run)
    finally:
        setup.env = env
    assert Counter(h["status"] for h in doc["hosts"]) == {"compliant": 3}


def test_a_bastion_that_never_answers_fails_its_targets_within_the_connect_timeout(
    setup: Setup,
) -> None:
    with socket.socket() as silent:  # accepts TCP (backlog), never says a word
        silent.bind((setup.info.address, 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        spec = f"{setup.spec.split('@')[0]}@{setup.info.address}:{port}"
        inventory = setup.variant("silent", spec)
        start = time.monotonic()
        doc = _finish(
            _audit(
                setup,
                "--cpu-window",
                "0",
                "--connect-timeout",
                "1",
                "--limit",
                "behind",
                inventory=inventory,
            )
        )
        took = time.monotonic() - start
    hosts = doc["hosts"]
    assert Counter(h["status"] for h in hosts) == {"unreachable": N}
    assert {h["error"] for h in hosts} == {f"via bastion {spec}: SSH handshake timed out"}
    # Two attempts of 1 s (the open and the one reopen), then every target fails at once.
    assert took < 10, took


def test_a_two_hop_chain_goes_through_fabric_gateway_one_session_per_hop(
    setup: Setup, tmp_path: Path
) -> None:
    inner = setup.current or setup.start()
    outer = lab_bastion.start(
        tmp_path / "outer",
        setup.info.state_dir / "authorized_keys",
        [(inner.address, inner.port)],  # the outer bastion may only reach the inner one
    )
    try:
        known = tmp_path / "known_hosts"
        known.write_text(outer.known_hosts_line + "\n" + inner.known_hosts_line + "\n")
        inventory = setup.variant("chain", f"{outer.spec},{inner.spec}")
        inner_offset = inner.log.stat().st_size
        doc = _finish(
            _audit(
                setup,
                "--cpu-window",
                "0",
                "--limit",
                THREE,
                "--known-hosts",
                str(known),
                inventory=inventory,
            )
        )
        assert Counter(h["status"] for h in doc["hosts"]) == {"compliant": 3}
        o = lab_bastion.log_counts(outer.log)
        i = lab_bastion.log_counts(inner.log, inner_offset)
        assert (o.accepted, o.direct_tcpip, o.targets) == (1, 1, {(inner.address, inner.port)})
        assert (i.accepted, i.direct_tcpip) == (1, 3)
    finally:
        lab_bastion.stop(outer)


def test_remediate_plans_through_the_bastion_on_one_session(setup: Setup) -> None:
    b = setup.current or setup.start()
    offset = b.log.stat().st_size
    doc = _finish(
        _audit(
            setup,
            "--host",
            THREE,
            "--known-hosts",
            str(setup.bastion_known_hosts),
            "--cpu-window",
            "1",
            cmd="remediate",
        )
    )
    assert [h["status"] for h in doc["hosts"]] == ["compliant"] * 3
    counts = lab_bastion.log_counts(b.log, offset)
    assert (counts.accepted, counts.direct_tcpip) == (1, 3)


def _ss_established_to(port: int) -> list[tuple[str, int]]:
    """(local address:port, owner pid) of established TCP connections to `port`."""
    out = subprocess.run(
        ["ss", "-tnpH", "state", "established", f"( dport = :{port} )"],
        capture_output=True,
        text=True,
    ).stdout
    found = []
    for line in out.splitlines():
        fields = line.split()
        pids = re.findall(r"pid=(\d+)", line)
        for pid in pids or ["0"]:
            found.append((fields[2], int(pid)))
    return found


def test_200_targets_ride_one_bastion_session_and_the_bastion_holds_every_connection(
    setup: Setup,
) -> None:
    b = setup.current or setup.start()
    offset = b.log.stat().st_size
    proc = _audit(
        setup,
        "--cpu-window",
        "2",
        "--limit",
        "behind",
        "--known-hosts",
        str(setup.bastion_known_hosts),
    )
    owners: dict[str, set[int]] = {}
    bastion_pids = {b.pid}
    most = 0
    deadline = time.monotonic() + 60
    while proc.proc.poll() is None and time.monotonic() < deadline:
        seen = _ss_established_to(setup.info.port)
        # The session process that forwards for fleet exits with the run: note it while alive.
        bastion_pids.update(lab_bastion.session_pids(b.pid))
        most = max(most, len(seen))
        for local, pid in seen:
            if pid:  # a socket being torn down may have no owner left
                owners.setdefault(local, set()).add(pid)
        time.sleep(0.2)
    doc = _finish(proc)
    assert Counter(h["status"] for h in doc["hosts"]) == {"compliant": N}

    counts = lab_bastion.log_counts(b.log, offset)
    assert counts.accepted == 1, "one authenticated session for the whole run"
    assert counts.kex == 1
    assert counts.direct_tcpip == N
    assert counts.targets == {(setup.info.address, setup.info.port)}

    all_owners = set().union(*owners.values())
    assert len(owners) >= N // 2, f"saw only {len(owners)} connections to the targets"
    assert proc.proc.pid not in all_owners
    assert all_owners <= bastion_pids, (all_owners, bastion_pids)
    print(
        f"\nss: {len(owners)} connections to the targets seen, at most {most} at once, "
        f"all owned by the bastion's sshd {sorted(all_owners)}"
    )


def test_a_bastion_killed_mid_window_fails_its_targets_by_name_and_the_rest_finishes(
    setup: Setup,
) -> None:
    b = setup.current or setup.start()
    offset = b.log.stat().st_size
    start = time.monotonic()
    proc = _audit(setup, "--cpu-window", "3", "--known-hosts", str(setup.bastion_known_hosts))
    # Kill it once a good part of the fleet sits in its CPU window through it.
    while lab_bastion.log_counts(b.log, offset).direct_tcpip < 60:
        assert proc.proc.poll() is None and time.monotonic() - start < 30
        time.sleep(0.05)
    lab_bastion.kill(b)
    setup.current = None
    doc = _finish(proc)
    took = time.monotonic() - start
    hosts = _by_name(doc)
    assert hosts[DIRECT]["status"] == "compliant"
    behind = [h for name, h in hosts.items() if name != DIRECT]
    statuses = Counter(h["status"] for h in behind)
    assert set(statuses) <= {"unreachable", "error", "compliant"}
    failed = [h for h in behind if h["status"] != "compliant"]
    assert len(failed) >= N - 60
    for h in failed:
        assert f"bastion {setup.spec}" in h["error"], h
    in_flight = [h for h in failed if h["status"] == "error"]
    assert in_flight, statuses
    assert all("it went away" in h["error"] for h in in_flight)
    # The rest found it dead: one reopen was tried and refused.
    assert any(h["error"] == f"via bastion {setup.spec}: connection refused" for h in failed)
    assert took < 30
    print(f"\nkilled mid-window: {dict(statuses)} in {took:.1f}s; e.g. {in_flight[0]['error']!r}")
