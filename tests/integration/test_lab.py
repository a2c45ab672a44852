"""The local lab: a real sshd on loopback, host trees in real kernel formats, the CPU model."""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from fleet import lab
from fleet.errors import UsageError
from fleet.lab import kernelmodel

pytestmark = pytest.mark.integration

SSH = shutil.which("ssh")
KPROBE_LINE = re.compile(r"^[0-9a-f]{16}  [kr]  \S+\+0x[0-9a-f]+  .* (\[\w+\])*$")
NETDATA_FUNCS = {
    "tcp_sendmsg",
    "udp_sendmsg",
    "tcp_v4_connect",
    "tcp_v6_connect",
    "inet_csk_accept",
    "udp_recvmsg",
    "tcp_cleanup_rbuf",
    "tcp_close",
    "tcp_retransmit_skb",
}
BPF_KEYS = {
    "id",
    "type",
    "name",
    "tag",
    "gpl_compatible",
    "loaded_at",
    "uid",
    "orphaned",
    "bytes_xlated",
    "jited",
    "bytes_jited",
    "bytes_memlock",
    "map_ids",
    "pids",
}


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[lab.LabInfo]:
    """A 6-host mixed lab that tests only read (one host per scenario)."""
    info = lab.up(tmp_path_factory.mktemp("mixed") / "state")
    try:
        yield info
    finally:
        lab.down(info.state_dir)


@pytest.fixture
def new_lab(tmp_path: Path) -> Iterator[Callable[..., lab.LabInfo]]:
    """Labs a test may change or stop; whatever is left is taken down afterwards."""
    states: list[Path] = []

    def start(**kwargs: Any) -> lab.LabInfo:
        states.append(tmp_path / f"lab{len(states)}")
        return lab.up(states[-1], **kwargs)

    yield start
    for state in states:
        lab.down(state)


def root_of(info: lab.LabInfo, host: str) -> Path:
    return info.state_dir / "hosts" / host


def host(info: lab.LabInfo, scenario: str) -> Path:
    [name] = [h for h in info.hosts if h.startswith(f"{scenario}-")]
    return root_of(info, name)


def ssh(info: lab.LabInfo, known_hosts: Path, *command: str) -> subprocess.CompletedProcess[str]:
    assert SSH is not None
    user = yaml.safe_load(info.inventory.read_text())["all"]["vars"]["ansible_user"]
    return subprocess.run(
        [
            SSH,
            "-F",
            "/dev/null",
            "-i",
            str(info.client_key),
            "-o",
            f"UserKnownHostsFile={known_hosts}",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "BatchMode=yes",
            "-o",
            "ConnectTimeout=10",
            "-p",
            str(info.port),
            f"{user}@{info.address}",
            *command,
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def system_ticks(root: Path) -> int:
    first = (root / "proc/stat").read_text().splitlines()[0].split()
    assert first[0] == "cpu"
    return int(first[3])


def stat_numbers(root: Path) -> dict[str, list[int]]:
    out = {}
    for line in (root / "proc/stat").read_text().splitlines():
        name, *values = line.split()
        out[name] = [int(v) for v in values]
    return out


def run(path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """A lab fake command, started the way the audit starts it (absolute path, real sh)."""
    return subprocess.run([str(path), *args], capture_output=True, text=True, timeout=30)


# --- sshd -------------------------------------------------------------------------------


@pytest.mark.skipif(SSH is None, reason="needs the OpenSSH client")
def test_real_ssh_client_reads_a_tree_file_through_the_lab_sshd(mixed: lab.LabInfo) -> None:
    set_event = host(mixed, "incident") / "sys/kernel/tracing/set_event"
    proc = ssh(mixed, mixed.known_hosts, "cat", str(set_event))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == set_event.read_text()
    assert "sched:sched_switch\n" in proc.stdout


def test_one_sshd_listens_on_loopback_only(mixed: lab.LabInfo) -> None:
    assert mixed.address == "127.0.0.1"
    assert alive(mixed.sshd_pid)
    cmdline = Path(f"/proc/{mixed.sshd_pid}/cmdline").read_bytes()
    assert b"sshd" in cmdline
    config = (mixed.state_dir / "sshd_config").read_text().splitlines()
    assert [line for line in config if line.startswith("ListenAddress")] == [
        f"ListenAddress 127.0.0.1:{mixed.port}"
    ]
    assert "PasswordAuthentication no" in config and "SetEnv SHLVL=1" in config
    assert (
        (mixed.state_dir / "known_hosts")
        .read_text()
        .startswith(f"[127.0.0.1]:{mixed.port} ssh-ed25519 AAAA")
    )
    assert mixed.state_dir.stat().st_mode & 0o777 == 0o700


@pytest.mark.skipif(SSH is None, reason="needs the OpenSSH client")
def test_strict_client_with_empty_known_hosts_is_refused(
    mixed: lab.LabInfo, tmp_path: Path
) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    proc = ssh(mixed, empty, "true")
    assert proc.returncode == 255
    assert "Host key verification failed" in proc.stderr


def test_down_host_port_refuses_connections(mixed: lab.LabInfo) -> None:
    inventory = yaml.safe_load(mixed.inventory.read_text())
    [(name, hostvars)] = inventory["all"]["children"]["lab_down"]["hosts"].items()
    assert name == "down-06" and hostvars["ansible_port"] != mixed.port
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", hostvars["ansible_port"]), timeout=5).close()


def test_down_stops_both_processes_and_removes_the_trees(
    new_lab: Callable[..., lab.LabInfo],
) -> None:
    info = new_lab(hosts=2)
    assert info.cpumodel_pid is not None
    pids = [info.sshd_pid, info.cpumodel_pid]
    trees = [root_of(info, name) for name in info.hosts]
    assert all(alive(pid) for pid in pids) and all(t.is_dir() for t in trees)
    assert lab.status(info.state_dir)["running"] is True

    assert lab.down(info.state_dir) is True
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert not any(t.exists() for t in trees)
    assert lab.down(info.state_dir) is False
    assert lab.status(info.state_dir)["running"] is False


def test_up_refuses_a_lab_that_is_already_up(
    new_lab: Callable[..., lab.LabInfo],
) -> None:
    info = new_lab(hosts=1, cpu_model=False)
    with pytest.raises(UsageError, match=r"lab already up in .*; run 'fleet lab down'"):
        lab.up(info.state_dir, hosts=1)
    assert info.cpumodel_pid is None and alive(info.sshd_pid)


def test_up_refuses_a_non_empty_directory_that_is_not_a_lab(tmp_path: Path) -> None:
    (tmp_path / "precious.txt").write_text("keep me\n")
    with pytest.raises(UsageError, match="not empty"):
        lab.up(tmp_path, hosts=1)
    assert (tmp_path / "precious.txt").read_text() == "keep me\n"


def test_unknown_scenario_and_zero_hosts_are_usage_errors(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="unknown lab scenario 'noisy'"):
        lab.up(tmp_path / "a", scenario="noisy")
    with pytest.raises(UsageError, match="at least 1"):
        lab.up(tmp_path / "b", hosts=0)
    with pytest.raises(UsageError, match="unknown lab scenario"):
        lab.make_host_tree(tmp_path / "c", "noisy", 1)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


# --- inventory and host names -------------------------------------------------------------


def test_mixed_lab_inventory_has_one_host_per_scenario_group(mixed: lab.LabInfo) -> None:
    assert mixed.hosts == [
        "incident-01",
        "clean-02",
        "half-fixed-03",
        "tracefs-only-04",
        "lockdown-05",
        "down-06",
    ]
    doc = yaml.safe_load(mixed.inventory.read_text())
    top = doc["all"]["vars"]
    assert top["ansible_host"] == "127.0.0.1" and top["ansible_port"] == mixed.port
    assert top["ansible_ssh_private_key_file"] == str(mixed.client_key)
    assert top["fleet_known_hosts"] == str(mixed.known_hosts)
    groups = doc["all"]["children"]
    assert list(groups) == [
        "lab_incident",
        "lab_clean",
        "lab_half_fixed",
        "lab_tracefs_only",
        "lab_lockdown",
        "lab_down",
    ]
    for name in mixed.hosts:
        scenario = name.rsplit("-", 1)[0]
        hostvars = groups["lab_" + scenario.replace("-", "_")]["hosts"][name]
        root = Path(hostvars["fleet_root"])
        assert root.is_absolute() and (root / "proc/sys/kernel/osrelease").is_file()
        assert hostvars["fleet_netdata_restart"] == f"{root}/usr/sbin/netdata-restart"
    assert lab.status(mixed.state_dir)["scenarios"] == {s: 1 for s in lab.SCENARIOS}


def test_host_names_are_padded_to_the_width_of_the_host_count() -> None:
    plan = lab.host_plan(200, "incident")
    assert [name for name, _, _ in plan[:2]] == ["incident-001", "incident-002"]
    assert plan[-1] == ("incident-200", "incident", 200)
    assert [name for name, _, _ in lab.host_plan(7, "mixed")][-1] == "incident-07"


# --- host trees ---------------------------------------------------------------------------


def test_incident_host_shows_the_isp_incident_in_kernel_formats(mixed: lab.LabInfo) -> None:
    root = host(mixed, "incident")
    tracing = root / "sys/kernel/tracing"
    assert (root / "proc/sys/kernel/osrelease").read_text() == "5.15.0-91-generic\n"
    set_event = (tracing / "set_event").read_text().splitlines()
    assert {"sched:sched_switch", "net:netif_receive_skb", "kprobes:fleet_tcp_sendmsg"} <= set(
        set_event
    )
    assert all(re.fullmatch(r"\w+:\w+", line) for line in set_event)
    # Probe events first, then tracepoints in the kernel's order, not alphabetical
    # (captured-qemu/e2e/set_event.incident.txt).
    assert set_event[0] == "kprobes:fleet_tcp_sendmsg"
    assert set_event.index("irq:softirq_exit") < set_event.index("irq:softirq_entry")
    assert (tracing / "kprobe_events").read_text() == "p:kprobes/fleet_tcp_sendmsg tcp_sendmsg\n"
    assert (tracing / "events/kprobes/fleet_tcp_sendmsg/enable").read_text() == "1\n"
    assert (tracing / "events/enable").read_text() == "X\n"
    assert (root / "sys/kernel/debug/kprobes/enabled").read_text() == "1\n"
    assert os.readlink(root / "sys/kernel/debug/tracing") == "../tracing"

    kprobes = (root / "sys/kernel/debug/kprobes/list").read_text().splitlines()
    assert all(KPROBE_LINE.match(line) for line in kprobes), kprobes
    assert all(line.endswith("    [FTRACE]") for line in kprobes)
    assert {line.split()[2].split("+")[0] for line in kprobes} == NETDATA_FUNCS
    assert sum(" k  tcp_sendmsg+0x0 " in line for line in kprobes) == 1  # the manual probe

    functions = (tracing / "enabled_functions").read_text()
    # As the Debian 6.1 guest printed it (captured-qemu/enabled_functions.c_enabled.txt).
    assert re.search(
        r"(?m)^tcp_sendmsg \(1\) R    \ttramp: 0xffffffffc[0-9a-f]+ "
        r"\(kprobe_ftrace_handler\+0x0/0x1b0\) ->kprobe_ftrace_handler\+0x0/0x1b0$",
        functions,
    )
    assert re.search(r"\n\tdirect-->bpf_trampoline_\d+\+0x0/0x[0-9a-f]+\n", functions)

    comms = {p.parent.name: p.read_text() for p in (root / "proc").glob("[0-9]*/comm")}
    assert comms["1234"] == "netdata\n" and comms["1301"] == "ebpf.plugin\n"
    cmdline = (root / "proc/1301/cmdline").read_bytes()
    assert cmdline == b"/usr/libexec/netdata/plugins.d/ebpf.plugin\x001\x00"
    conf = (root / "etc/netdata/netdata.conf").read_text()
    assert "[plugins]\n" in conf and "    # ebpf = yes\n" in conf
    ebpf_d = (root / "usr/lib/netdata/conf.d/ebpf.d.conf").read_text()
    assert "    ebpf load mode = entry\n" in ebpf_d and "    socket = yes\n" in ebpf_d
    assert os.access(root / "usr/libexec/netdata/plugins.d/ebpf.plugin", os.X_OK)


def test_clean_host_has_only_rasdaemon_tracing(mixed: lab.LabInfo) -> None:
    root = host(mixed, "clean")
    tracing = root / "sys/kernel/tracing"
    assert (tracing / "set_event").read_text() == ""
    assert (tracing / "kprobe_events").read_text() == ""
    assert (root / "sys/kernel/debug/kprobes/list").read_text() == ""
    assert (tracing / "instances/rasdaemon/set_event").read_text() == (
        "ras:aer_event\nras:mc_event\n"
    )
    assert "    ebpf = no\n" in (root / "etc/netdata/netdata.conf").read_text()
    assert not (root / "proc/1301").exists() and (root / "proc/1234/comm").exists()
    progs = json.loads((root / "var/lib/fleet-lab/bpf_progs.json").read_text())
    assert [(p["type"], p["pids"]) for p in progs] == [
        ("cgroup_skb", [{"pid": 1, "comm": "systemd"}])
    ]


def test_half_fixed_host_is_disarmed_but_netdata_ebpf_still_on(mixed: lab.LabInfo) -> None:
    root = host(mixed, "half-fixed")
    assert (root / "sys/kernel/debug/kprobes/enabled").read_text() == "0\n"
    assert (root / "sys/kernel/tracing/set_event").read_text() == ""
    assert (root / "sys/kernel/tracing/kprobe_events").read_text() == ""
    kprobes = (root / "sys/kernel/debug/kprobes/list").read_text().splitlines()
    assert len(kprobes) == len(NETDATA_FUNCS) and all(KPROBE_LINE.match(k) for k in kprobes)
    assert "    ebpf = yes\n" in (root / "etc/netdata/netdata.conf").read_text()
    assert (root / "proc/1301/comm").read_text() == "ebpf.plugin\n"
    # Disarmed kprobes leave ftrace; the BPF trampoline stays.
    functions = (root / "sys/kernel/tracing/enabled_functions").read_text()
    assert "kprobe_ftrace_handler" not in functions
    assert "\nrelease_task (1) R   D\ttramp: ftrace_regs_caller+" in "\n" + functions


def test_tracefs_only_host_has_no_debugfs(mixed: lab.LabInfo) -> None:
    root = host(mixed, "tracefs-only")
    mounts = (root / "proc/mounts").read_text()
    assert "debugfs" not in mounts
    assert "tracefs /sys/kernel/tracing tracefs rw,nosuid,nodev,noexec,relatime 0 0\n" in mounts
    assert list((root / "sys/kernel/debug").iterdir()) == []
    tracing = root / "sys/kernel/tracing"
    assert (tracing / "set_event").read_text() == "sched:sched_wakeup\n"
    assert (tracing / "uprobe_events").read_text() == (
        "p:uprobes/nginx_accept /usr/sbin/nginx:0x000000000004a3f0\n"
    )
    assert (tracing / "events/uprobes/nginx_accept/enable").read_text() == "0\n"
    assert not (root / "usr/sbin/netdata").exists() and not (root / "etc/netdata").exists()


def test_lockdown_host_refuses_reads_like_the_kernel(mixed: lab.LabInfo) -> None:
    root = host(mixed, "lockdown")
    assert (root / "sys/kernel/security/lockdown").read_text() == (
        "none [integrity] confidentiality\n"
    )
    enabled = root / "sys/kernel/debug/kprobes/enabled"
    proc = subprocess.run(["cat", str(enabled)], capture_output=True, text=True)
    assert proc.returncode == 1 and "No such device or address" in proc.stderr
    # tracefs is not locked down at integrity level: the agent's kprobes are hooked there.
    functions = (root / "sys/kernel/tracing/enabled_functions").read_text()
    assert "security_bprm_check (1) R" in functions
    # kprobes/list (0400) stays readable: a security agent's probes are listed.
    listed = (root / "sys/kernel/debug/kprobes/list").read_text().splitlines()
    assert [line.split()[1:3] for line in listed] == [
        ["k", "security_bprm_check+0x0"],
        ["r", "do_sys_openat2+0x0"],
    ]
    assert (root / "sys/kernel/tracing/set_event").read_text() == ""


def test_every_tree_has_the_common_files(mixed: lab.LabInfo) -> None:
    for name in mixed.hosts:
        root = root_of(mixed, name)
        assert (root / "sys/module/apparmor/parameters/enabled").read_text() == "Y\n"
        assert (root / "sys/kernel/tracing/current_tracer").read_text() == "nop\n"
        assert (root / "sys/kernel/tracing/tracing_on").read_text() == "1\n"
        assert (root / "sys/kernel/tracing/instances").is_dir()
        assert (
            "sysfs /sys sysfs rw,nosuid,nodev,noexec,relatime 0 0\n"
            in (root / "proc/mounts").read_text()
        )
        stat = stat_numbers(root)
        assert len(stat["cpu"]) == 10 and [f"cpu{i}" in stat for i in range(8)] == [True] * 8
        assert {"intr", "ctxt", "btime", "processes", "procs_running", "softirq"} <= set(stat)


# --- fake commands ------------------------------------------------------------------------


def test_fake_netdata_and_bpftool_answer_like_the_real_ones(mixed: lab.LabInfo) -> None:
    root = host(mixed, "incident")
    version = run(root / "usr/sbin/netdata", "-v")
    assert (version.returncode, version.stdout) == (0, "netdata v1.36.1\n")
    assert run(root / "usr/sbin/netdata", "-V").stdout == "netdata v1.36.1\n"
    assert run(host(mixed, "clean") / "usr/sbin/netdata", "-v").stdout == "netdata v1.37.1\n"
    bad = run(root / "usr/sbin/netdata", "--frobnicate")
    assert bad.returncode == 1 and bad.stdout == "" and "netdata" in bad.stderr

    bpftool = root / "usr/sbin/bpftool"
    for args in (("prog", "show", "--json"), ("prog", "show", "-j"), ("prog", "list", "--json")):
        proc = run(bpftool, *args)
        assert proc.returncode == 0, proc.stderr
        progs = json.loads(proc.stdout)
        assert {p["type"] for p in progs} == {"kprobe", "tracing", "cgroup_skb"}
        assert all(set(p) >= BPF_KEYS for p in progs)
        assert all(len(p["name"]) <= 15 and re.fullmatch(r"[0-9a-f]{16}", p["tag"]) for p in progs)
        owners = {p["pids"][0]["comm"] for p in progs if p["type"] == "kprobe"}
        assert owners == {"ebpf.plugin"}
    assert run(bpftool, "version").stdout.splitlines()[0] == "bpftool v7.1.0"
    plain = run(bpftool, "prog", "show").stdout
    assert re.match(r"\d+: cgroup_skb  name sd_fw_egress  tag [0-9a-f]{16}  gpl\n", plain)
    wrong = run(bpftool, "prog", "frob")
    assert wrong.returncode == 255 and "Error:" in wrong.stderr
    assert run(host(mixed, "tracefs-only") / "usr/sbin/bpftool", "prog", "show", "-j").stdout


def test_netdata_restart_with_ebpf_off_removes_only_netdata_state(tmp_path: Path) -> None:
    root = tmp_path / "incident-01"
    lab.make_host_tree(root, "incident", 1)
    kprobes = root / "sys/kernel/debug/kprobes/list"
    functions = root / "sys/kernel/tracing/enabled_functions"
    progs = root / "var/lib/fleet-lab/bpf_progs.json"
    before = {p: p.read_text() for p in (kprobes, functions, progs)}
    conf = root / "etc/netdata/netdata.conf"
    conf.write_text(conf.read_text().replace("# ebpf = yes", "ebpf = no"))

    proc = run(root / "usr/sbin/netdata-restart")
    assert proc.returncode == 0, proc.stderr
    kernelmodel.reconcile(root)  # what the lab's sshd does after each command
    assert not (root / "proc/1301").exists() and (root / "proc/1234/comm").exists()
    # The manual probe on tcp_sendmsg is not netdata's: its lines stay.
    assert kprobes.read_text().splitlines() == [
        line for line in before[kprobes].splitlines() if " k  tcp_sendmsg+" in line
    ]
    assert functions.read_text().splitlines() == [
        line for line in before[functions].splitlines() if line.startswith("tcp_sendmsg ")
    ]
    assert [p["pids"] for p in json.loads(progs.read_text())] == [[{"pid": 1, "comm": "systemd"}]]
    assert not list(root.rglob("*.fleet-lab.*")) and not list((root / "proc").glob(".*"))

    # Turning it back on (any case, the key's last value wins) brings back exactly the same.
    conf.write_text(conf.read_text() + "[plugins]\n    EBPF = On\n")
    assert run(root / "usr/sbin/netdata-restart").returncode == 0
    kernelmodel.reconcile(root)
    assert (root / "proc/1301/comm").read_text() == "ebpf.plugin\n"
    assert sorted(kprobes.read_text().splitlines()) == sorted(before[kprobes].splitlines())
    assert sorted(functions.read_text().splitlines()) == sorted(before[functions].splitlines())
    assert json.loads(progs.read_text()) == json.loads(before[progs])


def test_netdata_restart_without_netdata_fails_like_systemctl(tmp_path: Path) -> None:
    root = tmp_path / "lockdown-01"
    lab.make_host_tree(root, "lockdown", 1)
    proc = run(root / "usr/sbin/netdata-restart")
    assert proc.returncode == 5 and "netdata.service not found" in proc.stderr


# --- CPU model ----------------------------------------------------------------------------


def test_cpu_model_makes_hot_hosts_gain_system_time_faster(mixed: lab.LabInfo) -> None:
    hot, cool = host(mixed, "incident"), host(mixed, "clean")
    samples = []
    for _ in range(7):
        samples.append({r: stat_numbers(r) for r in (hot, cool)})
        time.sleep(0.25)
    for earlier, later in itertools.pairwise(samples):
        for r in (hot, cool):
            for name, values in earlier[r].items():
                if name not in ("procs_running", "procs_blocked"):
                    assert all(b >= a for a, b in zip(values, later[r][name], strict=True)), name
    gained = {r: samples[-1][r]["cpu"][2] - samples[0][r]["cpu"][2] for r in (hot, cool)}
    # 1.5 s on 8 CPUs at 100 ticks/s: ~840 system ticks hot, ~50 cool.
    assert gained[hot] > 400 and gained[cool] < 150 and gained[hot] > 4 * gained[cool]


def test_cpu_model_follows_a_fix_written_into_the_tree(
    new_lab: Callable[..., lab.LabInfo],
) -> None:
    info = new_lab(hosts=1, scenario="tracefs-only")
    root = root_of(info, info.hosts[0])
    start = system_ticks(root)
    time.sleep(1.0)
    assert system_ticks(root) - start > 300  # sched:sched_wakeup enabled: hot
    (root / "sys/kernel/tracing/set_event").write_text("")
    time.sleep(0.6)  # the model sees the change on its next tick
    start = system_ticks(root)
    time.sleep(1.0)
    assert system_ticks(root) - start < 100


def test_stat_exists_without_the_cpu_model(new_lab: Callable[..., lab.LabInfo]) -> None:
    info = new_lab(hosts=1, cpu_model=False)
    assert info.cpumodel_pid is None
    root = root_of(info, info.hosts[0])
    first = (root / "proc/stat").read_text()
    time.sleep(0.4)
    assert (root / "proc/stat").read_text() == first and first.startswith("cpu  ")
