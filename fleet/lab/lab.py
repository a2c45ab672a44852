"""The local lab fleet: one real OpenSSH sshd on 127.0.0.1 fronting per-host file trees.

Every lab host is the same sshd; hosts differ by inventory name and ``fleet_root``, the prefix
the audit puts before every path it reads. So the audit's whole path (SSH, host key check,
key auth, ``sh -s``, real cat/grep on real files) runs for real, only the kernel is files.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import yaml

from fleet.errors import UsageError
from fleet.lab.trees import SCENARIOS, make_host_tree

SSHD = Path("/usr/sbin/sshd")
ADDRESS = "127.0.0.1"
_BANNER_DEADLINE = 10.0
_STOP_DEADLINE = 5.0
_SHM = "/dev/shm"
_SHM_PREFIX = "fleet-lab-"
_MARKER = "lab.json"
# Everything up() creates directly in the state dir; down() removes exactly these and hosts/.
_STATE_FILES = (
    _MARKER,
    "sshd_config",
    "ssh_host_ed25519_key",
    "ssh_host_ed25519_key.pub",
    "client_key",
    "client_key.pub",
    "authorized_keys",
    "known_hosts",
    "sshd.pid",
    "cpumodel.pid",
    "sshd.log",
    "cpumodel.log",
    "inventory.yml",
    "exec.sh",
    "kernelmodel.log",
)

# Children started by this process, kept so down() can reap them (a zombie still answers
# kill(pid, 0)) and so Popen does not warn about them being garbage-collected while running.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


class LabError(UsageError):
    """The lab cannot run on this machine as it is (sshd missing or refusing to start)."""


@dataclass(frozen=True)
class LabInfo:
    state_dir: Path
    inventory: Path
    known_hosts: Path
    client_key: Path
    address: str
    port: int
    sshd_pid: int
    cpumodel_pid: int | None
    hosts: list[str]


def host_plan(hosts: int, scenario: str) -> list[tuple[str, str, int]]:
    """(name, scenario, index) per host: `mixed` cycles through SCENARIOS."""
    if hosts < 1:
        raise UsageError(f"--hosts must be at least 1, not {hosts}")
    if scenario != "mixed" and scenario not in SCENARIOS:
        choices = ", ".join(("mixed", *SCENARIOS))
        raise UsageError(f"unknown lab scenario {scenario!r}; choose from {choices}")
    width = max(2, len(str(hosts)))
    plan = []
    for index in range(1, hosts + 1):
        kind = SCENARIOS[(index - 1) % len(SCENARIOS)] if scenario == "mixed" else scenario
        plan.append((f"{kind}-{index:0{width}d}", kind, index))
    return plan


def up(
    state_dir: Path,
    hosts: int = 6,
    scenario: str = "mixed",
    inventory_out: Path | None = None,
    cpu_model: bool = True,
    kernel_model: bool = True,
    extra_users: tuple[str, ...] = (),
) -> LabInfo:
    """Build the host trees, start sshd (and the CPU model), write the inventory.

    With `kernel_model`, sshd runs each command through exec.sh, which afterwards lets the
    lab kernel model apply what the command wrote (fleet/lab/kernelmodel.py); without it the
    trees are passive files, as the benchmark wants its sshd.

    `extra_users` (root only: tests of sudo) may log in too, with the lab's client key; their
    commands run as sent (no kernel model: it writes the trees, which only root can).
    """
    plan = host_plan(hosts, scenario)
    if not SSHD.is_file():
        raise LabError(f"{SSHD} not found: install it with 'apt-get install -y openssh-server'")
    if shutil.which("ssh-keygen") is None:
        raise LabError("ssh-keygen not found: install it with 'apt-get install -y openssh-client'")
    state = Path(os.path.abspath(state_dir))
    _claim_state_dir(state)
    try:
        return _up(state, plan, scenario, inventory_out, cpu_model, kernel_model, extra_users)
    except BaseException:
        down(state)
        raise


def _claim_state_dir(state: Path) -> None:
    """Make `state` ours and empty, refusing a running lab or a directory that is not a lab."""
    if state.exists():
        if not state.is_dir():
            raise UsageError(f"lab state dir {state} exists and is not a directory")
        if _running(state):
            raise UsageError(f"lab already up in {state}; run 'fleet lab down'")
        if (state / _MARKER).exists():
            down(state)  # leftovers of a lab whose processes died (reboot, kill -9)
        elif any(state.iterdir()):
            raise UsageError(
                f"{state} is not empty and holds no fleet lab; choose another --state-dir"
            )
    state.mkdir(mode=0o700, parents=True, exist_ok=True)
    state.chmod(0o700)  # mkdir's mode is masked by umask, and the dir may have existed


def _up(
    state: Path,
    plan: list[tuple[str, str, int]],
    scenario: str,
    inventory_out: Path | None,
    cpu_model: bool,
    kernel_model: bool,
    extra_users: tuple[str, ...] = (),
) -> LabInfo:
    if extra_users:
        # sshd reads authorized_keys as the user logging in: let others through, not list.
        state.chmod(0o711)
    # Marker first: from here on down() recognises the dir as a lab and may clean it.
    _write(state / _MARKER, json.dumps({"scenario": scenario, "hosts": len(plan)}) + "\n")
    user = pwd.getpwuid(os.getuid()).pw_name
    host_key = state / "ssh_host_ed25519_key"
    client_key = state / "client_key"
    _keygen(host_key, "fleet lab host key")
    _keygen(client_key, f"fleet lab client key for {user}")
    client_pub = (state / "client_key.pub").read_text().split()
    # from= keeps the key useless anywhere but this loopback lab.
    _write(state / "authorized_keys", f'from="{ADDRESS}" {client_pub[0]} {client_pub[1]}\n')

    hosts_dir = _make_hosts_dir(state, len(plan))
    for name, kind, index in plan:
        make_host_tree(hosts_dir / name, kind, index)

    if kernel_model:
        _write_exec_wrapper(state, hosts_dir)
    sshd_pid, port = _start_sshd(state, user, kernel_model, extra_users)
    host_pub = (state / "ssh_host_ed25519_key.pub").read_text().split()
    known_hosts = state / "known_hosts"
    _write(known_hosts, f"[{ADDRESS}]:{port} {host_pub[0]} {host_pub[1]}\n")
    closed_port = _free_port(avoid=port)

    inventory = state / "inventory.yml"
    text = _inventory(state, plan, user, port, closed_port, client_key, known_hosts)
    _write(inventory, text)
    if inventory_out is not None:
        inventory_out.parent.mkdir(parents=True, exist_ok=True)
        _write(inventory_out, text)

    cpumodel_pid = _start_cpumodel(state) if cpu_model else None
    marker = {
        "scenario": scenario,
        "hosts": len(plan),
        "scenarios": dict(Counter(kind for _, kind, _ in plan)),
        "address": ADDRESS,
        "port": port,
        "closed_port": closed_port,
        "user": user,
        "inventory_out": str(Path(os.path.abspath(inventory_out))) if inventory_out else None,
    }
    _write(state / _MARKER, json.dumps(marker, indent=2) + "\n")
    return LabInfo(
        state_dir=state,
        inventory=inventory,
        known_hosts=known_hosts,
        client_key=client_key,
        address=ADDRESS,
        port=port,
        sshd_pid=sshd_pid,
        cpumodel_pid=cpumodel_pid,
        hosts=[name for name, _, _ in plan],
    )


def _make_hosts_dir(state: Path, nhosts: int) -> Path:
    """state/hosts, its trees on tmpfs when possible.

    Creating a file on a VM's ext4 costs ~0.2 ms, on tmpfs ~15 us: 200 host trees take
    about 5 s on disk and 0.4 s on /dev/shm, and the CPU model's rewrites get cheaper too.
    So state/hosts is a symlink to a private directory there, unless /dev/shm is missing,
    not writable or short of room; then it is a plain directory.
    """
    hosts = state / "hosts"
    shm = Path(_SHM)
    try:
        st = os.statvfs(shm)
        room = st.f_bavail * st.f_frsize > nhosts * 512 * 1024 + 64 * 1024 * 1024
        if room and os.access(shm, os.W_OK | os.X_OK):
            target = Path(tempfile.mkdtemp(prefix=_SHM_PREFIX, dir=shm))
            hosts.symlink_to(target)
            return hosts
    except OSError:
        pass
    hosts.mkdir()
    return hosts


def _remove_hosts_dir(state: Path) -> None:
    hosts = state / "hosts"
    if hosts.is_symlink():
        target = Path(os.readlink(hosts))
        # Only ever a directory that _make_hosts_dir made.
        if target.parent == Path(_SHM) and target.name.startswith(_SHM_PREFIX):
            shutil.rmtree(target, ignore_errors=True)
        hosts.unlink()
    elif hosts.is_dir():
        shutil.rmtree(hosts)


def _write(path: Path, text: str) -> None:
    """Write whole or not at all (temp + rename), so readers never see a half file."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _keygen(path: Path, comment: str) -> None:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True,
        stdin=subprocess.DEVNULL,
        capture_output=True,
    )


def _free_port(avoid: int = 0) -> int:
    """A loopback port nothing listens on right now (the kernel's pick for port 0)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((ADDRESS, 0))
            port: int = s.getsockname()[1]
        if port != avoid:
            return port


def _sshd_version() -> tuple[int, int]:
    out = subprocess.run([str(SSHD), "-V"], capture_output=True, text=True).stderr
    m = re.search(r"OpenSSH_(\d+)\.(\d+)", out)
    return (int(m.group(1)), int(m.group(2))) if m else (0, 0)


def _write_exec_wrapper(state: Path, hosts_dir: Path) -> None:
    """exec.sh: sshd's ForceCommand. The client's command runs as it asked, with the lab's
    tools first on PATH; then the kernel model reads what it wrote, the way a kernel reacts to
    a write before the next read. The model learns which host tree the command touched from
    the command and its stdin (where fleet sends its arguments): a private copy, removed as
    soon as the model has read it."""
    model = Path(__file__).parent / "kernelmodel.py"
    write_tool_dispatchers(state / "bin")
    text = (
        "#!/bin/sh\n"
        "# fleet lab: run the client's command, then let the lab kernel model react to it.\n"
        f"PATH={shlex.quote(str(state / 'bin'))}:$PATH; export PATH\n"
        'if [ -z "${SSH_ORIGINAL_COMMAND+x}" ]; then exec "${SHELL:-/bin/sh}"; fi\n'
        f"umask 077; seen=$(mktemp {shlex.quote(str(state))}/stdin.XXXXXX) || exit 1\n"
        'tee "$seen" | sh -c "$SSH_ORIGINAL_COMMAND"\n'
        "rc=$?\n"
        # The model file alone (stdlib only, -I -S): ~50 ms a command, not ~130 ms.
        f"{shlex.quote(sys.executable)} -I -S {shlex.quote(str(model))} "
        f"{shlex.quote(str(hosts_dir))} "
        '--command="$SSH_ORIGINAL_COMMAND" --stdin-file="$seen" '
        f">>{shlex.quote(str(state / 'kernelmodel.log'))} 2>&1\n"
        'rm -f "$seen"\n'
        "exit $rc\n"
    )
    _write(state / "exec.sh", text)
    (state / "exec.sh").chmod(0o755)


# The lab machine's own bpftool and netdata. A lab host is a tree, and its tools live in it
# (usr/sbin/NAME); the probe names the tree it audits in FLEET_ROOT for the commands it runs
# (a real bpftool ignores it), so the lab's tool answers for that host. The probe itself
# never runs a file from the audited tree.
_DISPATCHER = """#!/bin/sh
# fleet lab: this lab host's NAME, i.e. $FLEET_ROOT/usr/sbin/NAME (see fleet/lab/lab.py).
name=${0##*/}
if [ -n "${FLEET_ROOT-}" ] && [ -x "$FLEET_ROOT/usr/sbin/$name" ]; then
    FLEET_LAB_TOOLS=${0%/*}; export FLEET_LAB_TOOLS  # where the lab's perf finds its samples
    exec "$FLEET_ROOT/usr/sbin/$name" "$@"
fi
if [ -z "${FLEET_ROOT-}" ]; then
    # No tree: the host is this machine itself (bench/profile.py); its own tool answers.
    o=$IFS; IFS=:
    for d in $PATH; do
        [ "$d" != "${0%/*}" ] && [ -x "$d/$name" ] && { IFS=$o; exec "$d/$name" "$@"; }
    done
    IFS=$o
fi
echo "$name: command not found" >&2
exit 127
"""
LAB_TOOLS = ("bpftool", "netdata", "perf")


def write_tool_dispatchers(directory: Path) -> Path:
    """bin/bpftool, bin/netdata and bin/perf that answer for the host tree in $FLEET_ROOT."""
    directory.mkdir(parents=True, exist_ok=True)
    for name in LAB_TOOLS:
        _write(directory / name, _DISPATCHER)
        (directory / name).chmod(0o755)
    stock = resources.files("fleet.lab").joinpath("stock")
    for state in ("hot", "cool"):
        name = f"perf-samples.{state}.txt"
        _write(directory / name, stock.joinpath(name).read_text())
    return directory


def sshd_config_lines(
    host_key: Path, pid_file: Path, authorized_keys: Path, users: tuple[str, ...], forwarding: str
) -> list[str]:
    """What every lab sshd (targets, bastion) shares: loopback only, key auth only, fast."""
    lines = [
        f"HostKey {host_key}",
        f"PidFile {pid_file}",
        f"AuthorizedKeysFile {authorized_keys}",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "PubkeyAuthentication yes",
        # PAM needs root; as a normal user sshd must do without it.
        "UsePAM no",
        # The state dir may sit in a group-writable tree; the keys are ours anyway.
        "StrictModes no",
        "UseDNS no",
        # The benchmark opens hundreds of connections at once.
        "MaxStartups 1000:30:2000",
        f"AllowUsers {' '.join(users)}",
        # Bash sources ~/.bashrc for ssh commands only when SHLVL < 2 after its own
        # increment; root's runs pyenv init, 100 ms per connection.
        "SetEnv SHLVL=1",
        "PrintMotd no",
        "X11Forwarding no",
        f"AllowTcpForwarding {forwarding}",
        "AllowAgentForwarding no",
        "PermitTunnel no",
    ]
    if os.getuid() == 0:
        lines.append("PermitRootLogin prohibit-password")
    if _sshd_version() >= (9, 8):
        # Newer sshd throttles a source address after failed or aborted sessions; every lab
        # client is 127.0.0.1 and tests fail authentication on purpose.
        lines.append("PerSourcePenalties no")
    return lines


def _sshd_config(
    state: Path, user: str, port: int, kernel_model: bool = False, extra_users: tuple[str, ...] = ()
) -> str:
    lines = [
        "# fleet lab sshd: loopback only, one user, key auth only.",
        f"ListenAddress {ADDRESS}:{port}",
        *sshd_config_lines(
            state / "ssh_host_ed25519_key",
            state / "sshd.pid",
            state / "authorized_keys",
            (user, *extra_users),
            forwarding="no",
        ),
        "MaxSessions 200",
        "PrintLastLog no",
        # VERBOSE logs each auth attempt and "Starting session: (forced-)command": tests count them.
        "LogLevel VERBOSE",
        "Subsystem sftp internal-sftp",
    ]
    if kernel_model and not extra_users:
        lines.append(f"ForceCommand {state / 'exec.sh'}")
    if kernel_model and extra_users:
        # Only the lab's own user goes through the kernel model (a Match block comes last).
        lines += [f"Match User {user}", f"    ForceCommand {state / 'exec.sh'}"]
    return "\n".join(lines) + "\n"


def _start_sshd(
    state: Path, user: str, kernel_model: bool = False, extra_users: tuple[str, ...] = ()
) -> tuple[int, int]:
    """Start sshd on a free loopback port; (pid, port) once it answers with an SSH banner."""
    if os.getuid() == 0:
        # Root's sshd chroots its pre-auth child into the privilege separation dir.
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    log_path = state / "sshd.log"
    for attempt in range(5):
        port = _free_port()
        config = state / "sshd_config"
        _write(config, _sshd_config(state, user, port, kernel_model, extra_users))
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(
                [str(SSHD), "-D", "-e", "-f", str(config)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        _CHILDREN[proc.pid] = proc
        _write(state / "sshd.pid", f"{proc.pid}\n")
        if _wait_banner(port, proc):
            return proc.pid, port
        _stop(proc.pid)
        tail = _tail(log_path)
        # Someone took the port between our probe and sshd's bind: rare, try another.
        if "Address already in use" in tail and attempt < 4:
            continue
        raise LabError(f"sshd did not start on {ADDRESS}:{port}; {log_path} ends:\n{tail}")
    raise AssertionError("unreachable")


def _wait_banner(port: int, proc: subprocess.Popen[bytes]) -> bool:
    deadline = time.monotonic() + _BANNER_DEADLINE
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with socket.create_connection((ADDRESS, port), timeout=1.0) as s:
                banner = s.recv(64)
                # Answering with our own identification keeps sshd from logging the probe
                # as an error (a silent close is "kex_exchange_identification" at ERROR).
                s.sendall(b"SSH-2.0-fleet-lab-probe\r\n")
                if banner.startswith(b"SSH-2.0"):
                    return True
        except OSError:
            pass
        time.sleep(0.02)
    return False


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _start_cpumodel(state: Path) -> int:
    env = dict(os.environ)
    # The daemon must import this very fleet package, installed or not.
    package_parent = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_parent, env.get("PYTHONPATH")) if p)
    with open(state / "cpumodel.log", "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "fleet.lab.cpumodel", str(state)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
            env=env,
            cwd=state,
        )
    _CHILDREN[proc.pid] = proc
    _write(state / "cpumodel.pid", f"{proc.pid}\n")
    return proc.pid


def _inventory(
    state: Path,
    plan: list[tuple[str, str, int]],
    user: str,
    port: int,
    closed_port: int,
    client_key: Path,
    known_hosts: Path,
) -> str:
    groups: dict[str, dict[str, dict[str, dict[str, object]]]] = {}
    for name, kind, _ in plan:
        root = state / "hosts" / name
        hostvars: dict[str, object] = {
            "fleet_root": str(root),
            "fleet_netdata_restart": str(root / "usr/sbin/netdata-restart"),
        }
        if kind == "down":
            # Nothing listens there: connections are refused, like a host that is off.
            hostvars["ansible_port"] = closed_port
        group = "lab_" + kind.replace("-", "_")
        groups.setdefault(group, {"hosts": {}})["hosts"][name] = hostvars
    inventory = {
        "all": {
            "vars": {
                "ansible_host": ADDRESS,
                "ansible_port": port,
                "ansible_user": user,
                "ansible_ssh_private_key_file": str(client_key),
                "fleet_known_hosts": str(known_hosts),
            },
            "children": groups,
        }
    }
    header = f"# fleet lab inventory, written by 'fleet lab up' (state: {state}).\n"
    return header + yaml.safe_dump(inventory, sort_keys=False, default_flow_style=False)


def _read_pid(path: Path) -> int | None:
    try:
        pid = int(path.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if pid > 0 else None


def _alive(pid: int) -> bool:
    """Running and not a zombie; reaps it first if it is our own child."""
    child = _CHILDREN.get(pid)
    if child is not None and child.poll() is not None:
        del _CHILDREN[pid]
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def _is(pid: int, needle: str) -> bool:
    """`pid` still runs the program we started (pid files outlive reboots; pids get reused)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return needle.encode() in cmdline


def _stop(pid: int) -> None:
    """SIGTERM, wait, then SIGKILL; returns once the process is gone."""
    for sig, wait in ((signal.SIGTERM, _STOP_DEADLINE), (signal.SIGKILL, _STOP_DEADLINE)):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not _alive(pid):
                return
            time.sleep(0.02)


def _running(state: Path) -> dict[str, int]:
    """The lab's processes that are still running, by role."""
    found = {}
    for role, needle in (("cpumodel", "fleet.lab.cpumodel"), ("sshd", "sshd")):
        pid = _read_pid(state / f"{role}.pid")
        if pid is not None and _alive(pid) and _is(pid, needle):
            found[role] = pid
    return found


def down(state_dir: Path) -> bool:
    """Stop the lab's sshd and CPU model by pid and remove its state; True if either ran."""
    state = Path(os.path.abspath(state_dir))
    if not state.is_dir():
        return False
    running = _running(state)
    # The CPU model first: it writes into the trees about to be removed.
    for role in ("cpumodel", "sshd"):
        if role in running:
            _stop(running[role])
    is_lab = (state / _MARKER).exists()
    for name in _STATE_FILES:
        with contextlib.suppress(FileNotFoundError):
            (state / name).unlink()
    if is_lab:
        _remove_hosts_dir(state)
    with contextlib.suppress(OSError):
        state.rmdir()  # only if nothing else was left in it
    return bool(running)


def status(state_dir: Path) -> dict[str, object]:
    """What runs and what was built: for `fleet lab status` and scripts."""
    state = Path(os.path.abspath(state_dir))
    try:
        marker = json.loads((state / _MARKER).read_text())
    except (OSError, ValueError):
        marker = {}
    running = _running(state) if state.is_dir() else {}
    return {
        "state_dir": str(state),
        "running": "sshd" in running,
        "sshd_pid": running.get("sshd"),
        "cpumodel_pid": running.get("cpumodel"),
        "address": marker.get("address"),
        "port": marker.get("port"),
        "hosts": marker.get("hosts", 0),
        "scenarios": marker.get("scenarios", {}),
        "inventory": str(state / "inventory.yml") if marker else None,
        # Where the host trees really are (tmpfs when state/hosts is a symlink).
        "trees": str((state / "hosts").resolve()) if (state / "hosts").is_dir() else None,
        "inventory_out": marker.get("inventory_out"),
    }
