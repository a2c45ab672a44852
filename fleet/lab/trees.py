"""Host trees of the lab fleet: what one lab host's kernel and netdata look like on disk.

Each tree is a root prefix holding the real Linux paths the audit reads (procfs, tracefs,
debugfs, securityfs, /etc, /usr) in the kernel's own formats, so the audit runs unchanged
with ``fleet_root`` set. Everything is deterministic per (scenario, index): addresses, ids and
tags differ between hosts the way KASLR and load order make them differ, but rebuilding a
host gives the same tree.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import stat
import time
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from fleet.errors import UsageError
from fleet.lab import kernelmodel, procstat

SCENARIOS: tuple[str, ...] = ("incident", "clean", "half-fixed", "tracefs-only", "lockdown", "down")

NETDATA_PID = 1234
EBPF_PLUGIN_PID = 1301
_NETDATA_ARGV = ["/usr/sbin/netdata", "-P", "/run/netdata/netdata.pid", "-D"]
# netdata starts each plugin with its update interval as the only argument.
_EBPF_PLUGIN_ARGV = ["/usr/libexec/netdata/plugins.d/ebpf.plugin", "1"]

# Debian's stock kernel and Ubuntu's: the incident fleet runs the older one.
_KERNEL_UBUNTU = "5.15.0-91-generic"
_KERNEL_DEBIAN = "6.1.0-18-amd64"

# Offsets into a vmlinux text; KASLR adds a per-boot slide.
_FUNC_OFFSETS = {
    "tcp_sendmsg": 0x98BF40,
    "udp_sendmsg": 0x9C1D20,
    "tcp_v4_connect": 0x9A7E90,
    "tcp_v6_connect": 0xA3B5C0,
    "inet_csk_accept": 0x97F2A0,
    "udp_recvmsg": 0x9C4F10,
    "tcp_cleanup_rbuf": 0x989B70,
    "tcp_close": 0x98E6D0,
    "tcp_retransmit_skb": 0x99D4E0,
    "release_task": 0x0AB2C40,
    "security_bprm_check": 0x06F1A30,
    "do_sys_openat2": 0x04C3E80,
}

# ebpf.plugin's socket thread (legacy kprobe mode): (kprobe type, function), one BPF program each.
_NETDATA_KPROBES = (
    ("r", "tcp_sendmsg"),
    ("r", "udp_sendmsg"),
    ("r", "tcp_v4_connect"),
    ("r", "tcp_v6_connect"),
    ("r", "inet_csk_accept"),
    ("r", "udp_recvmsg"),
    ("k", "tcp_cleanup_rbuf"),
    ("k", "tcp_close"),
    ("k", "tcp_retransmit_skb"),
)
# ...and its process thread on a BTF kernel: an fentry program, i.e. a BPF trampoline.
_NETDATA_FENTRY = "release_task"
# btf_id of release_task in the lab's vmlinux BTF; names the trampoline.
_RELEASE_TASK_BTF_ID = 76201

_INCIDENT_EVENTS = (
    "sched:sched_switch",
    "sched:sched_wakeup",
    "irq:softirq_entry",
    "irq:softirq_exit",
    "net:netif_receive_skb",
    "net:net_dev_xmit",
    "skb:kfree_skb",
    "syscalls:sys_enter_sendto",
    "kprobes:fleet_tcp_sendmsg",
)

# The order a 6.1 kernel lists tracepoints in set_event: its event list's, which is neither
# alphabetical nor the order they were enabled (per object file in link order, each file's
# events in reverse of their definition). Every tracepoint the lab plants has its place:
# - captured-qemu/e2e/set_event.incident.txt (one Debian 6.1 boot, 14 tracepoints): irq, sched,
#   raw_syscalls, timer, sock, net:netif_receive_skb/net_dev_queue, skb;
# - net:net_dev_xmit after net:net_dev_queue: captured/set_event.enabled.txt (another kernel,
#   the same net.h order);
# - ras:mc_event after sched:sched_switch: captured-qemu/e2e/instances_rasdaemon_set_event.*;
# - not captured, placed from the 6.1 source (drivers/ras/ras.c links after kernel/,
#   net/socket.c before net/core/): ras:aer_event (defined after mc_event in ras_event.h,
#   hence listed before it), syscalls:sys_enter_sendto.
# A tracepoint not in this table is listed after all of these, alphabetically: a fallback,
# not the kernel's order.
_TRACEPOINT_ORDER = (
    "irq:softirq_exit",
    "irq:softirq_entry",
    "sched:sched_switch",
    "sched:sched_wakeup",
    "sched:sched_waking",
    "raw_syscalls:sys_exit",
    "raw_syscalls:sys_enter",
    "timer:hrtimer_expire_entry",
    "timer:hrtimer_start",
    "ras:aer_event",
    "ras:mc_event",
    "syscalls:sys_enter_sendto",
    "sock:inet_sock_set_state",
    "net:netif_receive_skb",
    "net:net_dev_queue",
    "net:net_dev_xmit",
    "skb:consume_skb",
    "skb:kfree_skb",
)


def _kernel_order(tracepoints: list[str], dynamic: list[str], instance: bool) -> list[str]:
    """Every event of one trace instance, in the order its set_event lists them.

    `dynamic` are the probe events in definition order (dynamic_events' order). The top
    instance lists them first, newest defined first (a new event goes to the head of the
    list), then the tracepoints (captured-qemu/e2e/set_event.incident.txt, set_event.c_enabled
    .txt). An instance builds its list by walking the kernel's event list and adding each at
    the head: its tracepoints come out in the same order as the top's and the probe events
    defined before it was created come last, oldest first
    (captured-qemu/e2e/instances_rasdaemon_set_event.*). The lab's instances are made after
    its probes, as in that capture."""
    rank = {event: i for i, event in enumerate(_TRACEPOINT_ORDER)}
    points = sorted(set(tracepoints), key=lambda e: (e not in rank, rank.get(e, 0), e))
    if instance:
        return points + list(dynamic)
    return list(reversed(dynamic)) + points


@dataclass(frozen=True)
class _Plan:
    """What one scenario puts in a tree."""

    kernel: str
    netdata: str | None = None  # installed version; None: not installed at all
    ebpf_line: str = ""  # the ebpf line of netdata.conf's [plugins]
    ebpf_on: bool = False  # what that line means to netdata: ebpf.plugin running
    debugfs: bool = True  # debugfs mounted at /sys/kernel/debug
    integrity_lockdown: bool = False
    kprobes_armed: bool = True  # debug/kprobes/enabled
    set_event: tuple[str, ...] = ()
    manual_kprobe: bool = False  # p:kprobes/fleet_tcp_sendmsg defined and enabled
    nginx_uprobe: bool = False  # p:uprobes/nginx_accept defined, disabled
    rasdaemon: bool = False
    # A security agent's kprobes (BPF through the kprobe PMU): registered, listed, and under
    # lockdown nobody can read whether they are armed.
    agent_kprobes: bool = False


_PLANS = {
    "incident": _Plan(
        kernel=_KERNEL_UBUNTU,
        netdata="1.36.1",
        ebpf_line="# ebpf = yes",
        ebpf_on=True,
        set_event=_INCIDENT_EVENTS,
        manual_kprobe=True,
    ),
    "clean": _Plan(
        kernel=_KERNEL_DEBIAN,
        netdata="1.37.1",
        ebpf_line="ebpf = no",
        rasdaemon=True,
    ),
    "half-fixed": _Plan(
        kernel=_KERNEL_UBUNTU,
        netdata="1.36.1",
        ebpf_line="ebpf = yes",
        ebpf_on=True,
        kprobes_armed=False,
    ),
    "tracefs-only": _Plan(
        kernel=_KERNEL_DEBIAN,
        debugfs=False,
        set_event=("sched:sched_wakeup",),
        nginx_uprobe=True,
    ),
    "lockdown": _Plan(
        kernel=_KERNEL_DEBIAN,
        integrity_lockdown=True,
        agent_kprobes=True,
    ),
    "down": _Plan(
        kernel=_KERNEL_DEBIAN,
    ),
}


class _Tree:
    """Writes files below one root."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def write(self, rel: str, text: str, mode: int = 0o644) -> Path:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        os.chmod(path, mode)
        return path

    def mkdir(self, rel: str) -> None:
        (self.root / rel).mkdir(parents=True, exist_ok=True)

    def socket(self, rel: str) -> None:
        """A UNIX socket node: open() on it fails (ENXIO) whoever reads."""
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_symlink() or path.exists():
            path.unlink()
        os.mknod(path, 0o600 | stat.S_IFSOCK)  # bind() would cap the path at 108 bytes

    def symlink(self, rel: str, target: str) -> None:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_symlink() or path.exists():
            path.unlink()
        path.symlink_to(target)


@cache
def _stock(name: str) -> str:
    """A stock netdata config file shipped in fleet/lab/stock/ (see its README)."""
    return (Path(__file__).parent / "stock" / name).read_text()


@cache
def _script(name: str) -> str:
    return (Path(__file__).parent / name).read_text()


def _lines(lines: list[str] | tuple[str, ...]) -> str:
    return "".join(f"{line}\n" for line in lines)


def _mounts(debugfs: bool) -> str:
    lines = [
        "sysfs /sys sysfs rw,nosuid,nodev,noexec,relatime 0 0",
        "proc /proc proc rw,nosuid,nodev,noexec,relatime 0 0",
        "udev /dev devtmpfs rw,nosuid,relatime,size=16340236k,nr_inodes=4085059,mode=755,"
        "inode64 0 0",
        "devpts /dev/pts devpts rw,nosuid,noexec,relatime,gid=5,mode=620,ptmxmode=000 0 0",
        "tmpfs /run tmpfs rw,nosuid,nodev,noexec,relatime,size=3273648k,mode=755,inode64 0 0",
        "/dev/sda1 / ext4 rw,relatime,errors=remount-ro 0 0",
        "securityfs /sys/kernel/security securityfs rw,nosuid,nodev,noexec,relatime 0 0",
        "tmpfs /dev/shm tmpfs rw,nosuid,nodev,inode64 0 0",
        "cgroup2 /sys/fs/cgroup cgroup2 rw,nosuid,nodev,noexec,relatime,nsdelegate,"
        "memory_recursiveprot 0 0",
        "pstore /sys/fs/pstore pstore rw,nosuid,nodev,noexec,relatime 0 0",
        "bpf /sys/fs/bpf bpf rw,nosuid,nodev,noexec,relatime,mode=700 0 0",
    ]
    if debugfs:
        lines.append("debugfs /sys/kernel/debug debugfs rw,nosuid,nodev,noexec,relatime 0 0")
    lines += [
        "tracefs /sys/kernel/tracing tracefs rw,nosuid,nodev,noexec,relatime 0 0",
        "/dev/sda15 /boot/efi vfat rw,relatime,fmask=0077,dmask=0077,codepage=437,"
        "iocharset=iso8859-1,shortname=mixed,errors=remount-ro 0 0",
    ]
    return _lines(lines)


def _netdata_conf(ebpf_line: str) -> str:
    """Upstream's stock netdata.conf plus what an admin adds: a local-only web server and the
    [plugins] line that decides whether ebpf.plugin runs."""
    return (
        _stock("netdata.conf.1.36.1")
        + "[web]\n    bind to = 127.0.0.1\n\n"
        + "[plugins]\n    # apps = yes\n    # cgroups = yes\n"
        + f"    {ebpf_line}\n    # go.d = yes\n    # python.d = yes\n"
    )


def _proc(tree: _Tree, rel: str, comm: str, argv: list[str]) -> None:
    """A process directory: comm, and cmdline as NUL-terminated arguments."""
    tree.write(f"{rel}/comm", f"{comm}\n")
    tree.write(f"{rel}/cmdline", "".join(f"{arg}\0" for arg in argv))


def _kprobe_base(addr: int, kind: str, func: str) -> str:
    # kernel/kprobes.c report_probe(): "%px  %s  %s+0x%x  %s " then the flags; a vmlinux
    # symbol has no module name, which prints as a single space.
    return f"{addr:016x}  {kind}  {func}+0x0    "


# enabled_functions flags, kernel/trace/ftrace.c t_show() up to 6.2: " (%ld)%s%s%s" with
# " R"/"  " (regs), " I"/"  " (ipmodify), " D"/"  " (direct), then "\ttramp: ..." when the
# function has a trampoline of its own.


def _ftrace_kprobe_entry(func: str, tramp: int) -> str:
    # A function hooked by kprobes through ftrace, as the Debian 6.1 guest printed it
    # (tests/fixtures/captured-qemu/enabled_functions.c_enabled.txt, e2e/enabled_functions.*):
    # kprobe_ftrace_ops saves regs but does not modify the ip, so R only; its trampoline is
    # shared by every kprobe and calls kprobe_ftrace_handler itself; one line per function
    # however many probes sit on it.
    return (
        f"{func} (1) R    \ttramp: 0x{tramp:x} (kprobe_ftrace_handler+0x0/0x1b0) "
        "->kprobe_ftrace_handler+0x0/0x1b0"
    )


def _ftrace_direct_entry(func: str, btf_id: int) -> list[str]:
    # A BPF fentry trampoline is a direct call; the name is bpf_trampoline_<key> with key
    # (btf obj id 1 = vmlinux) << 32 | 0x80000000 | btf_id, the size one page. Not captured
    # (the capture guests attached no fentry program): written from the 6.1 source. The
    # trampoline is registered with register_ftrace_direct_multi(), whose ops carry
    # MULTI_FLAGS = FTRACE_OPS_FL_DIRECT | FTRACE_OPS_FL_SAVE_REGS (no IPMODIFY since 6.0) and
    # the static trampoline ftrace_regs_caller calling call_direct_funcs; SAVE_REGS sets the
    # record's R flag, DIRECT its D flag: " R" + "  " + " D", then the TAB.
    key = (1 << 32) | 0x80000000 | btf_id
    return [
        f"{func} (1) R   D\ttramp: ftrace_regs_caller+0x0/0x65 (call_direct_funcs+0x0/0x20)",
        f"\tdirect-->bpf_trampoline_{key}+0x0/0x1000",
    ]


@dataclass(frozen=True)
class _Prog:
    """One loaded BPF program as bpftool 7.x shows it."""

    id: int
    type: str
    name: str
    loaded_at: int
    bytes_xlated: int
    bytes_jited: int
    map_ids: tuple[int, ...]
    btf_id: int | None
    pid: int
    comm: str

    def json(self) -> dict[str, object]:
        obj: dict[str, object] = {
            "id": self.id,
            "type": self.type,
            # BPF_OBJ_NAME_LEN is 16 with the NUL: the kernel keeps 15 characters.
            "name": self.name[:15],
            # A tag hashes the instructions, so one program has one tag on every host.
            "tag": hashlib.sha1(self.name.encode()).hexdigest()[:16],
            "gpl_compatible": True,
            "loaded_at": self.loaded_at,
            "uid": 0,
            "orphaned": False,
            "bytes_xlated": self.bytes_xlated,
            "jited": True,
            "bytes_jited": self.bytes_jited,
            "bytes_memlock": 4096,
            "map_ids": list(self.map_ids),
        }
        if self.btf_id is not None:
            obj["btf_id"] = self.btf_id
        obj["pids"] = [{"pid": self.pid, "comm": self.comm}]
        return obj

    def text(self) -> str:
        j = self.json()
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S+0000", time.gmtime(self.loaded_at))
        maps = ",".join(map(str, self.map_ids))
        lines = [
            f"{self.id}: {self.type}  name {j['name']}  tag {j['tag']}  gpl",
            f"\tloaded_at {stamp}  uid 0",
            f"\txlated {self.bytes_xlated}B  jited {self.bytes_jited}B  memlock 4096B"
            f"  map_ids {maps}",
        ]
        if self.btf_id is not None:
            lines.append(f"\tbtf_id {self.btf_id}")
        lines.append(f"\tpids {self.comm}({self.pid})")
        return _lines(lines)


def _bpf_progs(seed: str, boot: int, with_netdata: bool) -> list[_Prog]:
    """Loaded BPF programs: systemd's firewall hook, plus ebpf.plugin's when it runs."""
    rng = random.Random(seed + "/bpf")
    progs = [
        _Prog(
            id=rng.randint(3, 9),
            type="cgroup_skb",
            name="sd_fw_egress",
            loaded_at=boot + rng.randint(3, 9),
            bytes_xlated=64,
            bytes_jited=55,
            map_ids=(2, 3),
            btf_id=None,
            pid=1,
            comm="systemd",
        )
    ]
    next_id = rng.randint(40, 60)
    first_map = rng.randint(10, 20)
    btf_id = rng.randint(100, 200)
    loaded = boot + rng.randint(60, 600)
    programs = [("kprobe", f"netdata_{func}") for _, func in _NETDATA_KPROBES]
    programs.append(("tracing", f"netdata_{_NETDATA_FENTRY}"))
    for i, (kind, name) in enumerate(programs):
        xlated = rng.randint(25, 250) * 8
        progs.append(
            _Prog(
                id=next_id + i,
                type=kind,
                name=name,
                loaded_at=loaded,
                bytes_xlated=xlated,
                bytes_jited=xlated * 5 // 8,
                map_ids=(first_map, first_map + 1 + i % 3),
                btf_id=btf_id,
                pid=EBPF_PLUGIN_PID,
                comm="ebpf.plugin",
            )
        )
    return progs if with_netdata else progs[:1]


def _write_progs(tree: _Tree, rel: str, progs: list[_Prog]) -> None:
    """<rel>.json as `bpftool prog show --json` prints it, <rel>.txt as plain `prog show`."""
    data = json.dumps([p.json() for p in progs], separators=(",", ":"))
    tree.write(f"{rel}.json", data + "\n")
    tree.write(f"{rel}.txt", "".join(p.text() for p in progs))


def make_host_tree(root: Path, scenario: str, index: int) -> None:
    """Build one lab host's tree at `root` (created if missing) for `scenario`."""
    if scenario not in _PLANS:
        raise UsageError(f"unknown lab scenario {scenario!r}; choose from {', '.join(SCENARIOS)}")
    _build(_Tree(Path(root)), _PLANS[scenario], f"{scenario}-{index}")


def _build(tree: _Tree, plan: _Plan, seed: str) -> None:
    rng = random.Random(seed)
    counters = procstat.fresh_counters(seed, time.time())
    boot = counters.btime
    slide = rng.randrange(1, 512) * 0x200000
    addr = {func: 0xFFFFFFFF81000000 + slide + off for func, off in _FUNC_OFFSETS.items()}
    kprobe_tramp = 0xFFFFFFFFC0000000 + rng.randrange(0x100, 0x1000) * 0x1000

    # procfs
    tree.write("proc/sys/kernel/osrelease", f"{plan.kernel}\n")
    tree.write("proc/mounts", _mounts(plan.debugfs))
    tree.write("proc/stat", procstat.render_stat(counters))
    _proc(tree, "proc/1", "systemd", ["/sbin/init"])
    _proc(tree, "proc/412", "systemd-journal", ["/lib/systemd/systemd-journald"])
    _proc(tree, "proc/698", "sshd", ["sshd: /usr/sbin/sshd -D [listener] 0 of 10-100 startups"])
    if plan.netdata:
        _proc(tree, f"proc/{NETDATA_PID}", "netdata", _NETDATA_ARGV)
    if plan.ebpf_on:
        _proc(tree, f"proc/{EBPF_PLUGIN_PID}", "ebpf.plugin", _EBPF_PLUGIN_ARGV)
    if plan.rasdaemon:
        _proc(tree, "proc/811", "rasdaemon", ["/usr/sbin/rasdaemon", "-f", "-r"])
    if plan.nginx_uprobe:
        # nginx rewrites its argv into one title string.
        title = "nginx: master process /usr/sbin/nginx -g daemon on; master_process on;"
        _proc(tree, "proc/950", "nginx", [title])

    # securityfs, sysfs
    if plan.integrity_lockdown:
        tree.write("sys/kernel/security/lockdown", "none [integrity] confidentiality\n")
    else:
        tree.write("sys/kernel/security/lockdown", "[none] integrity confidentiality\n")
    tree.write("sys/module/apparmor/parameters/enabled", "Y\n")

    # tracefs
    tracing = "sys/kernel/tracing"
    kprobe_events: list[str] = []
    uprobe_events: list[str] = []
    dynamic: list[str] = []  # probe events, in definition order (as dynamic_events lists them)
    if plan.manual_kprobe:
        kprobe_events.append("p:kprobes/fleet_tcp_sendmsg tcp_sendmsg")
        dynamic.append("kprobes:fleet_tcp_sendmsg")
    if plan.nginx_uprobe:
        uprobe_events.append("p:uprobes/nginx_accept /usr/sbin/nginx:0x000000000004a3f0")
        dynamic.append("uprobes:nginx_accept")
    tree.write(f"{tracing}/kprobe_events", _lines(kprobe_events))
    tree.write(f"{tracing}/uprobe_events", _lines(uprobe_events))
    tree.write(f"{tracing}/dynamic_events", _lines(kprobe_events + uprobe_events))
    tree.write(f"{tracing}/current_tracer", "nop\n")
    tree.write(f"{tracing}/tracing_on", "1\n")
    instances = {"": tracing}
    points = [e for e in plan.set_event if e.partition(":")[0] not in kernelmodel.DYNAMIC_GROUPS]
    # Every instance has every probe event (an events/<group>/<event>/enable reading 0 until
    # enabled there: captured-qemu/e2e/instances_rasdaemon_events_kprobes_ip_rcv_enable.*).
    events = {"": _kernel_order(points, dynamic, instance=False)}
    enabled = {"": [e for e in events[""] if e in plan.set_event]}
    tree.mkdir(f"{tracing}/instances")
    if plan.rasdaemon:
        ras = ["ras:aer_event", "ras:mc_event"]
        inst = f"{tracing}/instances/rasdaemon"
        tree.write(f"{inst}/current_tracer", "nop\n")
        tree.write(f"{inst}/tracing_on", "1\n")
        instances["rasdaemon"] = inst
        events["rasdaemon"] = _kernel_order(ras, dynamic, instance=True)
        enabled["rasdaemon"] = [e for e in events["rasdaemon"] if e in ras]

    # kprobes: netdata's (perf kprobe PMU: in kprobes/list, never in kprobe_events) and the
    # manual tracefs one. Two probes on one address are both listed.
    def kprobe(kind: str, func: str, owner: str) -> kernelmodel.KprobeSpec:
        return kernelmodel.KprobeSpec(
            _kprobe_base(addr[func], kind, func), "[FTRACE]", func, addr[func], owner
        )

    kprobes: list[kernelmodel.KprobeSpec] = []
    if plan.manual_kprobe:
        kprobes.append(kprobe("k", "tcp_sendmsg", "event:kprobes:fleet_tcp_sendmsg"))
    if plan.netdata:
        kprobes += [kprobe(kind, func, "netdata") for kind, func in _NETDATA_KPROBES]
    if plan.agent_kprobes:
        kprobes += [
            kprobe("k", "security_bprm_check", "static"),
            kprobe("r", "do_sys_openat2", "static"),
        ]
    # enabled_functions: one entry per hooked function, in address order. Kprobes reach
    # ftrace only while armed; a BPF trampoline (netdata's fentry) regardless.
    direct = []
    if plan.netdata:
        direct.append(
            {
                "func": _NETDATA_FENTRY,
                "addr": addr[_NETDATA_FENTRY],
                "lines": _ftrace_direct_entry(_NETDATA_FENTRY, _RELEASE_TASK_BTF_ID),
                "owner": "netdata",
            }
        )
    spec = kernelmodel.Spec(
        instances=instances,
        events=events,
        kprobes=kprobes,
        kprobe_ftrace={kp.func: _ftrace_kprobe_entry(kp.func, kprobe_tramp) for kp in kprobes},
        direct_ftrace=direct,
        kprobes_dir="sys/kernel/debug/kprobes" if plan.debugfs else None,
        netdata_proc=f"proc/{EBPF_PLUGIN_PID}" if plan.netdata else None,
        enabled_functions=f"{tracing}/enabled_functions",
    )

    tree.mkdir("run")  # where remediation takes its lock, as on every Linux host

    # debugfs
    tree.mkdir("sys/kernel/debug")
    if plan.debugfs:
        if plan.integrity_lockdown:
            # Integrity lockdown refuses debugfs files with write bits (kprobes/enabled is
            # 0600) with EPERM. The lab makes it a socket node, which every open() refuses
            # (ENXIO), root included, without leaving the tree (a link out of fleet_root is
            # refused by fleet itself). Either means "unknown", never "empty"; kprobes/list
            # is 0400 and stays readable.
            tree.socket("sys/kernel/debug/kprobes/enabled")
        # On a real box an automount of the same tracefs.
        tree.symlink("sys/kernel/debug/tracing", "../tracing")
    # Integrity lockdown leaves tracefs alone: a Debian 6.1 guest booted with
    # lockdown=integrity read enabled_functions fine (tests/fixtures/captured-qemu).
    kernelmodel.install(tree.root, spec, enabled, plan.kprobes_armed)

    # userspace: bpftool everywhere, netdata where installed
    lab = "var/lib/fleet-lab"
    tree.write("usr/sbin/bpftool", _script("fake_bpftool.sh"), 0o755)
    tree.write("usr/sbin/perf", _script("fake_perf.sh"), 0o755)
    tree.write("usr/sbin/netdata-restart", _script("fake_netdata_restart.sh"), 0o755)
    tree.write(f"{lab}/netdata_ebpf.awk", _script("netdata_ebpf.awk"))
    progs_with = _bpf_progs(seed, boot, with_netdata=True)
    progs_without = _bpf_progs(seed, boot, with_netdata=False)
    _write_progs(tree, f"{lab}/bpf_progs", progs_with if plan.ebpf_on else progs_without)
    if plan.netdata is None:
        return
    tree.write("usr/sbin/netdata", _script("fake_netdata.sh"), 0o755)
    tree.write("usr/libexec/netdata/plugins.d/ebpf.plugin", "#!/bin/sh\nexit 0\n", 0o755)
    tree.write("etc/netdata/netdata.conf", _netdata_conf(plan.ebpf_line))
    stock = {v: _stock(f"ebpf.d.conf.{v}") for v in ("1.36.1", "1.37.1")}
    tree.write("usr/lib/netdata/conf.d/ebpf.d.conf", stock[plan.netdata])
    # What netdata-restart needs to take netdata's state away and bring it back.
    tree.write(f"{lab}/netdata_version", f"{plan.netdata}\n")
    tree.write(f"{lab}/ebpf_plugin_pid", f"{EBPF_PLUGIN_PID}\n")
    _proc(tree, f"{lab}/ebpf_plugin_proc", "ebpf.plugin", _EBPF_PLUGIN_ARGV)
    _write_progs(tree, f"{lab}/bpf_progs.with_netdata", progs_with)
    _write_progs(tree, f"{lab}/bpf_progs.without_netdata", progs_without)
