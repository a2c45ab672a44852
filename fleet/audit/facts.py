"""Typed facts parsed from probe output. Pure functions: text in, dataclasses out."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from fleet.audit.cpu import cpu_between, parse_proc_stat
from fleet.audit.netdata_install import (
    ConfigSources,
    Verdict,
    config_sources,
    ebpf_verdicts,
    install_of,
)
from fleet.audit.netdataconf import load_netdata_config, netdata_true
from fleet.model import CpuFigures
from fleet.remote.probe import (
    EBPF_CONF_PATHS,
    NETDATA_DEFAULT_CONF,
    CommandRun,
    FileRead,
    ProbeOutput,
)

T = TypeVar("T")


@dataclass(frozen=True)
class Parsed(Generic[T]):
    """One file as read and as its owner's format reads: `value` when the read worked and the
    text is in the form the owner prints, else None and `problem` says why."""

    read: FileRead
    value: T | None = None
    problem: str | None = None  # read, but not in the owner's form

    def why_not(self) -> str:
        """Why there is no value: the text's problem, or the read's error."""
        return self.problem or self.read.describe_error()


def parsed(read: FileRead | None, parse: Callable[[str], T]) -> Parsed[T] | None:
    """`read` parsed once (None when the probe did not read it); a ValueError from the parser
    is the fact's problem, so a damaged file is never taken for an empty one."""
    if read is None:
        return None
    if not read.ok:
        return Parsed(read)
    try:
        return Parsed(read, parse(read.text or ""))
    except ValueError as exc:
        return Parsed(read, problem=str(exc))


# ---------------------------------------------------------------- tracefs: set_event, events
# What t_show() prints per enabled event: "%s:%s\n", subsystem and event names (letters,
# digits, `_`, and `-`/`.` in some subsystems such as xhci-hcd).
_SET_EVENT_LINE = re.compile(r"[A-Za-z0-9_.\-]+:[A-Za-z0-9_.\-]+")


def parse_set_event(text: str) -> list[str]:
    """`set_event`: one `subsystem:event` per line; empty means nothing enabled.

    Raises ValueError naming the first line the kernel could not have printed.
    """
    events = []
    for number, line in enumerate(text.split("\n"), start=1):
        if not line:
            continue
        if not _SET_EVENT_LINE.fullmatch(line):
            raise ValueError(f"set_event line {number} is not subsystem:event: {line[:60]!r}")
        events.append(line)
    return events


@dataclass(frozen=True)
class ProbeEvent:
    """One dynamic event definition from kprobe_events / uprobe_events / dynamic_events."""

    kind: str  # p (probe), r (return), f (fprobe), t (tprobe), e (eprobe), s (synthetic)...
    group: str
    event: str
    target: str  # symbol[+off], /path:0xoffset, or the eprobe's source
    source: str  # which file defined it
    maxactive: int | None = None

    @property
    def name(self) -> str:
        return f"{self.group}/{self.event}"


_DEF_RE = re.compile(
    r"^(?P<kind>[a-z])(?P<max>\d*):(?P<group>[^/\s]+)/(?P<event>\S+)\s*(?P<rest>.*)$"
)


def parse_probe_events(text: str, source: str) -> list[ProbeEvent]:
    """Lines like `p:kprobes/x tcp_sendmsg`, `r10:kprobes/y tcp_cleanup_rbuf`, uprobes alike.

    Lines end at "\n" only, as the kernel writes them. Raises ValueError naming the first
    line the kernel could not have written: garbage is never read as "no probes"."""
    events = []
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip(" \t"):
            continue
        m = _DEF_RE.match(line.strip(" \t"))
        if not m:
            raise ValueError(f"line {number} is not a probe definition: {line[:80]!r}")
        rest = m["rest"].split()
        events.append(
            ProbeEvent(
                kind=m["kind"],
                group=m["group"],
                event=m["event"],
                target=rest[0] if rest else "",
                source=source,
                maxactive=int(m["max"]) if m["max"] else None,
            )
        )
    return events


# ---------------------------------------------------------------- kprobes/list
@dataclass(frozen=True)
class KprobeEntry:
    address: str
    type: str  # k (kprobe) or r (kretprobe)
    symbol: str
    offset: int
    module: str | None
    flags: tuple[str, ...]

    @property
    def armed_candidate(self) -> bool:
        """Costs CPU when kprobes are globally armed: not per-probe disabled, not gone."""
        return "DISABLED" not in self.flags and "GONE" not in self.flags


# kernel/kprobes.c report_probe(): "%px  %s  %s+0x%x  %s " with a symbol, else "%px  %s  %pS "
# (%pS: `sym+0xoff/0xsize [mod]`, or the bare `0xaddr` when no symbol covers it), then the
# flags. The address reads as zeros when kallsyms hides it.
_KPROBE_RE = re.compile(r"^(?P<addr>[0-9a-fA-F]+)\s+(?P<type>[kr])\s+(?P<where>\S+)(?P<tail>.*)$")
_WHERE_RE = re.compile(r"^(?P<sym>\S+?)\+0x(?P<off>[0-9a-fA-F]+)(?:/0x[0-9a-fA-F]+)?$")
_BARE_ADDR_RE = re.compile(r"^0x[0-9a-fA-F]+$")


def parse_kprobes_list(text: str) -> list[KprobeEntry]:
    """`/sys/kernel/debug/kprobes/list`: addr  k|r  sym+0xoff  [mod] flags, one per line.

    Raises ValueError naming the first line that is not in a form the kernel prints, so an
    unreadable list is never taken for an empty one.
    """
    entries = []
    for number, line in enumerate(text.split("\n"), start=1):
        # The kernel pads with spaces only: \r, \f, U+2028 and the like are content here.
        if not line.strip(" \t"):
            continue
        m = _KPROBE_RE.match(line.strip(" \t"))
        where = _WHERE_RE.match(m["where"]) if m else None
        if m is None or (where is None and not _BARE_ADDR_RE.match(m["where"])):
            raise ValueError(f"line {number} is not a kprobe entry: {line[:80]!r}")
        tail = m["tail"]
        flags = tuple(re.findall(r"\[(GONE|DISABLED|OPTIMIZED|FTRACE)\]", tail))
        module = re.sub(r"\[(GONE|DISABLED|OPTIMIZED|FTRACE)\]", "", tail).strip(" []") or None
        symbol, offset = (where["sym"], int(where["off"], 16)) if where else (m["where"], 0)
        entries.append(KprobeEntry(m["addr"], m["type"], symbol, offset, module, flags))
    return entries


# events/<group>/<event>/enable: "1" enabled, "0" disabled; a trailing "*" means triggers
# are attached (soft mode): "0*" still arms the probe for them (kernel/trace/trace_events.c).
EVENT_STATES = ("0", "1", "0*", "1*")


def parse_event_enable(text: str) -> str | None:
    """An event's `enable` file as one of EVENT_STATES; None when it reads anything else."""
    value = text.strip()
    return value if value in EVENT_STATES else None


def event_fires(state: str | None) -> bool:
    """The probe behind the event is armed: enabled, or kept on by a trigger."""
    return state in ("1", "1*", "0*")


def parse_bool_file(text: str) -> bool | None:
    """Kernel boolean files read `1\\n`/`0\\n` (kprobes/enabled, tracing_on)."""
    value = text.strip()
    return {"1": True, "0": False, "Y": True, "N": False}.get(value)


def parse_bool_strict(text: str) -> bool:
    """parse_bool_file, raising ValueError for anything the kernel does not print."""
    value = parse_bool_file(text)
    if value is None:
        raise ValueError(f"not 0 or 1: {text.strip()[:40]!r}")
    return value


# ---------------------------------------------------------------- enabled_functions
@dataclass(frozen=True)
class FtraceFunction:
    name: str
    refcount: int
    flags: tuple[str, ...]  # R (saves regs), I (ip modify), D (direct call), ...
    handler: str | None  # the trampoline's handler, e.g. kprobe_ftrace_handler
    direct: str | None  # direct call target, e.g. bpf_trampoline_6442516263

    @property
    def owner(self) -> str:
        if self.direct and self.direct.startswith("bpf_trampoline"):
            return "bpf-trampoline"
        if self.handler and "kprobe" in self.handler:
            return "kprobe"
        return "ftrace"


_FUNC_RE = re.compile(r"^(?P<name>\S+) \((?P<count>\d+)\)(?P<flags>[^\t]*)(?:\t(?P<rest>.*))?$")


def parse_enabled_functions(text: str) -> list[FtraceFunction]:
    """`enabled_functions`: `func (N) R I D  \\ttramp: ... (handler)` + `\\tdirect-->target`."""
    funcs: list[FtraceFunction] = []
    for line in text.split("\n"):
        stripped = line.strip(" \t")
        if stripped.startswith("direct-->") and funcs:
            last = funcs[-1]
            target = stripped[len("direct-->") :].split("+", 1)[0].strip()
            funcs[-1] = FtraceFunction(last.name, last.refcount, last.flags, last.handler, target)
            continue
        m = _FUNC_RE.match(line.rstrip("\n"))
        if not m:
            continue
        rest = m["rest"] or ""
        handler = None
        hm = re.search(r"\(([^)+\s]+)", rest)
        if hm:
            handler = hm.group(1)
        direct = None
        dm = re.search(r"direct-->\s*(\S+)", rest)
        if dm:
            direct = dm.group(1).split("+", 1)[0]
        funcs.append(
            FtraceFunction(m["name"], int(m["count"]), tuple(m["flags"].split()), handler, direct)
        )
    return funcs


# ---------------------------------------------------------------- netdata
def parse_ini(text: str) -> dict[str, dict[str, str]]:
    """A generic ini file (a playbook's own `ini` file checks; netdata's files are read by
    fleet.audit.netdataconf): `[section]`, `key = value`; `#`/`;` lines are comments.

    Keys keep their inner spaces (`ebpf load mode`); sections and keys compare lower-case.
    """
    sections: dict[str, dict[str, str]] = {}
    current = sections.setdefault("", {})
    for raw in text.split("\n"):  # C programs split lines on \n alone
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1].strip().lower(), {})
            continue
        key, sep, value = line.partition("=")
        if sep:
            current[key.strip().lower()] = value.strip()
    return sections


_VERSION_RE = re.compile(r"v?(\d+)\.(\d+)(?:\.(\d+))?")


def parse_netdata_version(text: str) -> tuple[int, int, int] | None:
    """`netdata v1.36.1`, `netdata v1.36.1-123-nightly`, `netdata 1.37.1` -> (1, 36, 1)."""
    for token in text.split():
        m = _VERSION_RE.match(token)
        if m and token.lower() != "netdata":
            return int(m[1]), int(m[2]), int(m[3] or 0)
    return None


# ---------------------------------------------------------------- BPF programs
TRACING_PROG_TYPES = {"kprobe", "tracing", "tracepoint", "raw_tracepoint", "perf_event"}
# bpf_prog_type numbers as fdinfo prints them (include/uapi/linux/bpf.h).
PROG_TYPE_BY_NUMBER = {
    "1": "socket_filter",
    "2": "kprobe",
    "3": "sched_cls",
    "4": "sched_act",
    "5": "tracepoint",
    "6": "xdp",
    "7": "perf_event",
    "8": "cgroup_skb",
    "9": "cgroup_sock",
    "17": "raw_tracepoint",
    "26": "tracing",
    "29": "lsm",
    "31": "syscall",
}


@dataclass(frozen=True)
class BpfProgram:
    id: int | None
    type: str
    name: str
    owners: tuple[tuple[int, str], ...]  # (pid, comm)

    @property
    def tracing(self) -> bool:
        return self.type in TRACING_PROG_TYPES


def parse_bpftool_progs(text: str) -> list[BpfProgram]:
    """`bpftool prog show --json`: a JSON array of program objects.

    Raises ValueError for anything bpftool does not print (other JSON types included), so a
    damaged output is an unreadable fact, never an empty one or a crash.
    """
    data = json.loads(text or "[]")
    if not isinstance(data, list):
        raise ValueError("bpftool prog show --json did not return a list")
    progs = []
    for n, p in enumerate(data):
        if not isinstance(p, dict):
            raise ValueError(f"program #{n} is {type(p).__name__}, not an object")
        pids = p.get("pids", [])
        if not isinstance(pids, list | None) or not all(isinstance(o, dict) for o in pids or []):
            raise ValueError(f"program #{n}: pids is not a list of objects")
        prog_id = p.get("id")
        if prog_id is not None and (not isinstance(prog_id, int) or isinstance(prog_id, bool)):
            raise ValueError(f"program #{n}: id {prog_id!r} is not a number")
        try:
            owners = tuple((int(o.get("pid", 0)), str(o.get("comm", ""))) for o in pids or [])
        except (TypeError, ValueError):
            raise ValueError(f"program #{n}: a pid is not a number") from None
        progs.append(BpfProgram(prog_id, str(p.get("type", "")), str(p.get("name", "")), owners))
    return progs


def bpf_from_fdinfo(
    entries: list[tuple[int, dict[str, str]]], comms: dict[int, str]
) -> list[BpfProgram]:
    """Programs seen as fds in /proc/PID/fdinfo (one per prog_id, owners merged)."""
    by_id: dict[str, tuple[str, list[tuple[int, str]]]] = {}
    for pid, fields in entries:
        if "prog_type" not in fields:
            continue
        key = fields.get("prog_id") or f"{pid}:{fields.get('prog_tag', '')}"
        ptype = PROG_TYPE_BY_NUMBER.get(fields["prog_type"], f"type{fields['prog_type']}")
        owners = by_id.setdefault(key, (ptype, []))[1]
        if (pid, comms.get(pid, "")) not in owners:
            owners.append((pid, comms.get(pid, "")))
    return [
        BpfProgram(int(k) if k.isdigit() else None, t, "", tuple(o)) for k, (t, o) in by_id.items()
    ]


# ---------------------------------------------------------------- the whole host
@dataclass
class HostFacts:
    """Every fact the checks and the fixes read, each parsed once from the probe output."""

    uid: int | None
    kernel: str | None
    lockdown: str | None  # the mode in effect (`integrity`), from `none [integrity] ...`
    apparmor: bool | None
    tracefs: str | None
    debugfs: str | None
    set_event: dict[str, Parsed[list[str]]]  # instance ("" = top) -> `subsystem:event`s
    probe_defs: dict[str, FileRead]  # kprobe_events / uprobe_events / dynamic_events
    probe_events: list[ProbeEvent]
    event_enable: dict[str, dict[str, str | None]]  # "grp/event" -> instance -> EVENT_STATES
    kprobes_enabled: Parsed[bool] | None
    kprobes_list: Parsed[list[KprobeEntry]] | None
    enabled_functions: Parsed[list[FtraceFunction]] | None
    netdata_conf_path: str | None  # the file in use (first of netdata_sources)
    ebpf_conf_path: str | None
    ebpf_programs_on: list[str] | None  # ebpf.d.conf's `[ebpf programs]` that are on
    netdata_binary: str | None
    netdata_version_text: str | None
    netdata_version: tuple[int, int, int] | None
    netdata_plugins: list[str]
    processes: dict[int, str]
    bpf_source: str | None  # "bpftool", "fdinfo" or None
    bpf_programs: list[BpfProgram]
    bpf_error: str | None
    cpu: CpuFigures | None
    cpu_error: str | None
    # Why nothing can be known of the host's mounts (no readable /proc/mounts with a proc
    # line: a fleet_root typo, an empty tree), or None.
    unknown_root: str | None = None
    files: dict[str, FileRead] = field(default_factory=dict)  # the playbook's file checks
    cpu_samples: list[str] = field(default_factory=list)  # /proc/stat, a second apart
    bpf_unreadable: bool = False  # bpftool ran but failed or printed garbage, no fallback
    # kernel.bpf_stats_enabled: every BPF program run timed while 1 (fleet profile turns it
    # on for its window only); None when unreadable or absent.
    bpf_stats_enabled: bool | None = None
    # Every netdata.conf a netdata here reads now or at its next start
    # (fleet.audit.netdata_install).
    netdata_sources: ConfigSources = field(default_factory=ConfigSources)
    netdata_texts: dict[str, str | None] = field(default_factory=dict)  # None: unreadable

    def netdata_installed(self) -> bool:
        return bool(self.netdata_binary or self.netdata_plugins or self.netdata_conf_path)

    def netdata_verdicts(self) -> list[Verdict]:
        """Whether each netdata here (running, or at its next start) runs the eBPF plugin,
        read from the files that netdata itself loads."""
        return ebpf_verdicts(self.netdata_sources, self.netdata_texts, self.netdata_plugins)


def _first_present(
    reads: dict[str, FileRead], paths: list[str]
) -> tuple[FileRead | None, str | None]:
    """The first path that exists (readable or not): netdata's lookup order."""
    for p in paths:
        r = reads.get(p)
        if r is not None and not r.absent:
            return r, p
    return None, None


# Where the kernel's debugfs is mounted unless /proc/mounts says otherwise.
DEBUGFS = "/sys/kernel/debug"
# netdata's eBPF collectors as their processes are named (comm) and their files.
EBPF_GO_PLUGIN = "ebpf-go.plugin"
EBPF_PLUGINS = ("ebpf.plugin", EBPF_GO_PLUGIN)


def host_facts(out: ProbeOutput, cpus: frozenset[int] | None = None) -> HostFacts:
    """Build every fact the checks need from one probe run."""
    f = out.files
    tracefs = out.env.get("tracefs", "-")
    tracefs = None if tracefs in ("-", "") else tracefs
    debugfs = out.env.get("debugfs", "-")
    debugfs = None if debugfs in ("-", "") else debugfs
    kdir = f"{debugfs or DEBUGFS}/kprobes"

    set_event: dict[str, Parsed[list[str]]] = {}
    probe_defs: dict[str, FileRead] = {}
    if tracefs:
        inst_prefix = f"{tracefs}/instances/"
        for path, read in f.items():
            if path == f"{tracefs}/set_event":
                set_event[""] = Parsed(read)
            elif path.startswith(inst_prefix) and path.endswith("/set_event"):
                set_event[path[len(inst_prefix) : -len("/set_event")]] = Parsed(read)
        set_event = {i: parsed(p.read, parse_set_event) or p for i, p in set_event.items()}
        for name in ("kprobe_events", "uprobe_events", "dynamic_events"):
            probe_defs[name] = out.file(f"{tracefs}/{name}")

    seen: dict[str, ProbeEvent] = {}
    for name, read in probe_defs.items():
        if read.ok:
            try:
                defined = parse_probe_events(read.text or "", name)
            except ValueError as exc:
                probe_defs[name] = FileRead(read.path, errno="EBADMSG", message=str(exc))
                continue
            for ev in defined:
                seen.setdefault(ev.name, ev)
    event_enable: dict[str, dict[str, str | None]] = {}
    if tracefs:
        for path, read in out.enables.items():
            rel = path[len(tracefs) + 1 :]
            instance = ""
            if rel.startswith("instances/"):
                instance, rel = rel[len("instances/") :].split("/", 1)
            ev = rel.removeprefix("events/").removesuffix("/enable")
            event_enable.setdefault(ev, {})[instance] = (
                parse_event_enable(read.text or "") if read.ok else None
            )

    def opt(path: str) -> str | None:
        r = f.get(path)
        return r.text.strip() if r is not None and r.ok and r.text is not None else None

    nd_cmd = _installed(out, "netdata_version")
    sources, texts = _netdata_sources(out, nd_cmd.path if nd_cmd else None)
    in_use = sources.paths[0] if sources.paths else None
    netdata_conf_path = in_use if in_use in f and not f[in_use].absent else None
    ebpf_conf, ebpf_conf_path = _first_present(f, EBPF_CONF_PATHS)
    ebpf_programs_on = None
    if ebpf_conf is not None and ebpf_conf.ok:
        progs = load_netdata_config(ebpf_conf.text or "").sections.get("ebpf programs", {})
        ebpf_programs_on = sorted(k for k, v in progs.items() if netdata_true(v.value))

    bpf_source: str | None = None
    bpf_programs: list[BpfProgram] = []
    bpf_error: str | None = None
    reasons: list[str] = []
    run = _installed(out, "bpftool_prog")
    if run is not None and run.rc == 0:
        try:
            bpf_programs = parse_bpftool_progs(run.stdout)
            bpf_source = "bpftool"
        except ValueError as exc:
            reasons.append(f"bpftool output unparsable: {exc}")
    elif run is not None:
        detail = (run.stderr.strip() or run.stdout.strip()).splitlines()[:1]
        reasons.append(f"bpftool failed (rc {run.rc}{': ' + detail[0] if detail else ''})")
    else:
        reasons.append("no bpftool on the host")
    if bpf_source is None and out.fdinfo is not None:
        if out.env.get("uid") == "0":
            bpf_programs = bpf_from_fdinfo(out.fdinfo, out.procs)
            bpf_source = "fdinfo"
        else:
            reasons.append(f"/proc/*/fdinfo of other users needs root (uid {out.env.get('uid')})")
    elif bpf_source is None:
        reasons.append("no /proc/PID/fdinfo to read")
    bpf_error = None if bpf_source else "; ".join(reasons)
    # bpftool was there but its answer could not be used, and nothing else covered for it.
    bpf_unreadable = bpf_source is None and run is not None

    cpu = None
    cpu_error = None
    if out.stat1 is not None or out.stat2 is not None:
        try:
            cpu = cpu_between(
                parse_proc_stat(out.stat1 or ""), parse_proc_stat(out.stat2 or ""), cpus
            )
        except ValueError as exc:
            cpu_error = str(exc)

    uid_text = out.env.get("uid", "")
    apparmor = opt("/sys/module/apparmor/parameters/enabled")
    version_text = (nd_cmd.stdout.strip() or None) if nd_cmd and nd_cmd.rc == 0 else None
    return HostFacts(
        uid=int(uid_text) if uid_text.isdigit() else None,
        kernel=opt("/proc/sys/kernel/osrelease"),
        lockdown=lockdown_mode(opt("/sys/kernel/security/lockdown")),
        apparmor=None if apparmor is None else apparmor.upper().startswith("Y"),
        tracefs=tracefs,
        debugfs=debugfs,
        set_event=set_event,
        probe_defs=probe_defs,
        probe_events=list(seen.values()),
        event_enable=event_enable,
        kprobes_enabled=parsed(f.get(f"{kdir}/enabled"), parse_bool_strict),
        kprobes_list=parsed(f.get(f"{kdir}/list"), parse_kprobes_list),
        enabled_functions=parsed(
            f.get(f"{tracefs}/enabled_functions") if tracefs else None, parse_enabled_functions
        ),
        netdata_conf_path=netdata_conf_path,
        ebpf_conf_path=ebpf_conf_path,
        ebpf_programs_on=ebpf_programs_on,
        netdata_binary=nd_cmd.path if nd_cmd else None,
        netdata_version_text=version_text,
        netdata_version=parse_netdata_version(version_text or ""),
        netdata_plugins=list(out.plugins),
        processes=dict(out.procs),
        bpf_source=bpf_source,
        bpf_programs=bpf_programs,
        bpf_error=bpf_error,
        bpf_unreadable=bpf_unreadable,
        bpf_stats_enabled=parse_bool_file(opt("/proc/sys/kernel/bpf_stats_enabled") or ""),
        cpu=cpu,
        cpu_error=cpu_error,
        unknown_root=_unknown_root(f.get("/proc/mounts")),
        files=dict(f),
        cpu_samples=list(out.stats),
        netdata_sources=sources,
        netdata_texts=texts,
    )


def _installed(out: ProbeOutput, name: str) -> CommandRun | None:
    """A command the probe ran, unless the shell said it is not there (127: not found)."""
    run = out.commands.get(name)
    return None if run is None or run.rc == 127 else run


def _netdata_sources(
    out: ProbeOutput, binary: str | None
) -> tuple[ConfigSources, dict[str, str | None]]:
    installs = {install_of(p) for p in out.plugins}
    if binary:
        installs.add(install_of(binary))
    present = {
        p for p in NETDATA_DEFAULT_CONF.values() if p in out.files and not out.files[p].absent
    }
    sources = config_sources(dict(out.cmdlines), installs, present)
    texts: dict[str, str | None] = {}
    for path in sources.paths:
        read = out.files.get(path)
        if read is None or read.absent:
            continue  # absent: netdata's built-in defaults (a -c file must exist)
        texts[path] = read.text if read.ok else None
    return sources, texts


def lockdown_mode(text: str | None) -> str | None:
    """`none [integrity] confidentiality` -> `integrity`."""
    if not text:
        return None
    m = re.search(r"\[(\w+)\]", text)
    return m.group(1) if m else None


def _unknown_root(mounts: FileRead | None) -> str | None:
    """Why nothing can be known about the host's mounts, or None when /proc/mounts was read."""
    if mounts is None:
        return "/proc/mounts was not read"
    if not mounts.ok:
        return f"{mounts.describe_error()}: not a readable Linux root"
    # procfs is mounted wherever /proc/mounts is the kernel's own: without that line the
    # file cannot say whether tracefs or debugfs are mounted.
    if not any(line.split()[1:3] == ["/proc", "proc"] for line in (mounts.text or "").split("\n")):
        return "/proc/mounts lists no proc mount: not a Linux root's mount table"
    return None
