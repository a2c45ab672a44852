"""Which netdata.conf files a host's netdata reads (pure).

A host can carry a distro netdata (config `/etc/netdata/netdata.conf`, plugins under
`/usr/libexec/netdata` or `/usr/lib/netdata`) and a static one (`/opt/netdata/...`) side by
side, often with a stale copy of the other's config. A running daemon reads what its command
line says: netdata's `getopt(argc, argv, "c:DdhP:i:p:s:t:u:vVW:")` loop loads every `-c FILE`
in turn, each overwriting what came before, applies `-W set SECTION KEY VALUE` in between,
and only when no `-c` was given loads its built-in default without overwriting. Anything else
(a daemon that names no readable file, an argv we cannot follow) is not guessed at.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fleet.audit.netdataconf import (
    PLUGINS,
    NetdataConfig,
    Setting,
    load_netdata_config,
    plugin_enabled,
)
from fleet.remote.probe import NETDATA_DEFAULT_CONF as DEFAULT_CONF

STATIC_PREFIX = "/opt/netdata/"
# netdata 1.36-1.37 daemon/main.c option_definitions: letters followed by ':' take an argument.
_OPTSTRING = "c:DdhP:i:p:s:t:u:vVW:"
_TAKES_ARG = {c for i, c in enumerate(_OPTSTRING) if c != ":" and _OPTSTRING[i + 1 : i + 2] == ":"}
_FLAGS = set(_OPTSTRING.replace(":", ""))


@dataclass(frozen=True)
class Layer:
    """One step of the daemon's config loading, in order."""

    kind: str  # "file" (a -c), "default" (built-in file, values set earlier kept), "set" (-W set)
    path: str | None = None
    section: str | None = None
    key: str | None = None
    value: str | None = None


@dataclass(frozen=True)
class Daemon:
    """A running netdata and how it loads its config."""

    pid: int
    argv: tuple[str, ...]
    install: str  # "distro" or "static" (from argv[0])
    layers: tuple[Layer, ...] = ()
    problem: str | None = None  # why its config cannot be told

    @property
    def files(self) -> list[str]:
        return [x.path for x in self.layers if x.path is not None]


def install_of(path: str) -> str:
    return "static" if path.startswith(STATIC_PREFIX) else "distro"


def split_cmdline(raw: str) -> tuple[str, ...]:
    """/proc/PID/cmdline: arguments each ended by NUL (the kernel's format)."""
    return tuple(raw.split("\0")[:-1]) if raw.endswith("\0") else tuple(raw.split("\0"))


def parse_daemon(pid: int, argv: tuple[str, ...]) -> Daemon | None:
    """The config layers of one netdata process; None for helpers that load no config
    (netdata's spawn server shares the daemon's name)."""
    if not argv or "--special-spawn-server" in argv:
        return None
    install = install_of(argv[0])
    layers: list[Layer] = []
    problem: str | None = None
    i = 1
    loaded = False
    # glibc getopt permutes: options are found anywhere until `--`.
    while i < len(argv):
        arg = argv[i]
        i += 1
        if arg == "--":
            break
        if not arg.startswith("-") or arg == "-":
            continue
        j = 1
        while j < len(arg):
            opt = arg[j]
            j += 1
            if opt not in _FLAGS:
                problem = f"netdata option -{opt} not understood"
                break
            if opt not in _TAKES_ARG:
                continue
            if j < len(arg):
                optarg, j = arg[j:], len(arg)
            elif i < len(argv):
                optarg, i = argv[i], i + 1
            else:
                problem = f"-{opt} without its argument"
                break
            if opt == "c":
                if not optarg.startswith("/"):
                    problem = f"-c {optarg!r} is relative to the daemon's start directory"
                layers.append(Layer("file", optarg))
                loaded = True
            elif opt == "W" and optarg == "set":
                if i + 3 > len(argv):
                    problem = "-W set without SECTION KEY VALUE"
                    break
                section, key, value = argv[i : i + 3]
                i += 3
                layers.append(Layer("set", section=section, key=key, value=value))
    if not loaded:
        layers.append(Layer("default", DEFAULT_CONF[install]))
    return Daemon(pid, argv, install, tuple(layers), problem)


@dataclass(frozen=True)
class ConfigSources:
    """Every netdata.conf that a netdata on the host reads or would read at its next start."""

    daemons: list[Daemon] = field(default_factory=list)
    # path -> who reads it: "pid 812 (-c)", "distro netdata at start", ...
    readers: dict[str, list[str]] = field(default_factory=dict)

    @property
    def paths(self) -> list[str]:
        """Files in use first, then the others, each once."""
        return list(self.readers)


def merged_config(layers: tuple[Layer, ...], texts: dict[str, str]) -> NetdataConfig:
    """What a daemon ends up with after loading its layers in order (`texts`: each file's
    content; an absent default file is netdata's built-in defaults, i.e. empty)."""
    sections: dict[str, dict[str, Setting]] = {}
    commented: dict[str, set[str]] = {}
    for layer in layers:
        if layer.kind == "set":
            assert layer.section is not None and layer.key is not None
            # config_set_default: a value loaded from a file stays; an earlier -W set does not.
            target = sections.setdefault(layer.section, {})
            held = target.get(layer.key)
            if held is None or held.source == "-W set":
                target[layer.key] = Setting(layer.value or "", 0, "-W set")
            continue
        assert layer.path is not None
        conf = load_netdata_config(texts.get(layer.path, ""))
        for name, keys in conf.sections.items():
            target = sections.setdefault(name, {})
            for key, st in keys.items():
                # -c overwrites what came before; the built-in default file does not.
                if layer.kind == "file" or key not in target:
                    target[key] = Setting(st.value, st.line, layer.path)
        for name, ckeys in conf.commented.items():
            commented.setdefault(name, set()).update(ckeys)
    only_commented = {
        name: frozenset(keys - sections.get(name, {}).keys()) for name, keys in commented.items()
    }
    return NetdataConfig(sections, only_commented)


@dataclass(frozen=True)
class Verdict:
    """Whether one reader of netdata.conf (a running daemon, or an install at its next start)
    runs the eBPF plugin."""

    reader: str  # "running netdata pid 812" or "distro netdata at its next start"
    files: tuple[str, ...]
    on: bool | None  # None: cannot be told (unreadable file, argv not understood)
    how: str
    edit: str | None = None  # the file whose change turns it off; None when none can

    def describe(self) -> str:
        return f"{self.reader}: {self.how}"


def ebpf_plugins(plugins: list[str], install: str) -> list[str]:
    """The eBPF plugins (`ebpf`, `ebpf-go`) installed with that netdata."""
    return [
        name
        for name in ("ebpf", "ebpf-go")
        if any(p.endswith(f"/{name}.plugin") and install_of(p) == install for p in plugins)
    ]


def _decide(conf: NetdataConfig, installed: list[str]) -> tuple[bool, str, str | None]:
    """(on, why, where the deciding key lives) over the plugins installed or named."""
    on, hows, where = False, [], None
    for plugin in ("ebpf", "ebpf-go"):
        found = conf.get(PLUGINS, plugin)
        if plugin not in installed and found is None:
            continue
        enabled, how = plugin_enabled(conf, plugin)
        hows.append(how)
        if enabled:
            on = True
            where = where or (found.source if found is not None else None)
    return on, "; ".join(hows) or "no eBPF plugin installed and no [plugins] ebpf key", where


def ebpf_verdicts(
    sources: ConfigSources, texts: dict[str, str | None], plugins: list[str]
) -> list[Verdict]:
    """One verdict per running daemon and per config file no daemon reads. `texts`: each
    path's content, None when it exists but could not be read; a missing key is absent."""
    out: list[Verdict] = []
    covered: set[str] = set()
    for d in sources.daemons:
        reader = f"running netdata pid {d.pid}"
        files = tuple(d.files)
        covered.update(files)
        bad = [p for p in files if texts.get(p, "") is None]
        bad += [x.path for x in d.layers if x.kind == "file" and x.path not in texts]
        if d.problem or bad:
            why = d.problem or f"{bad[0]} unreadable"
            out.append(Verdict(reader, files, None, f"{why}: cannot tell what it reads"))
            continue
        conf = merged_config(d.layers, {p: t or "" for p, t in texts.items()})
        on, how, where = _decide(conf, ebpf_plugins(plugins, d.install))
        edit = None
        if on and where != "-W set":
            # The last file loaded with overwrite wins; with none, the default file.
            edit = where or (files[-1] if files else None)
        out.append(Verdict(reader, files, on, how, edit))
    for path, readers in sources.readers.items():
        if path in covered:
            continue
        reader = " and ".join(readers)
        text = texts.get(path, "")
        if text is None:
            out.append(Verdict(reader, (path,), None, f"{path} unreadable"))
            continue
        # As one -c layer: each setting then names its file ("... (PATH line N)").
        conf = merged_config((Layer("file", path),), {path: text})
        on, how, _ = _decide(conf, ebpf_plugins(plugins, install_of(path)))
        out.append(Verdict(reader, (path,), on, how, path if on else None))
    return out


def config_sources(
    cmdlines: dict[int, str], installs: set[str], present: set[str]
) -> ConfigSources:
    """`cmdlines`: the raw /proc/PID/cmdline of each process named netdata; `installs`: which
    netdata installs the host has (binary or plugins found); `present`: netdata.conf paths
    that exist. A daemon's files come first; an install's own default follows when it exists
    (a stale config still decides what netdata does after the next restart of that install)."""
    daemons: list[Daemon] = []
    readers: dict[str, list[str]] = {}
    for pid in sorted(cmdlines):
        d = parse_daemon(pid, split_cmdline(cmdlines[pid]))
        if d is None:
            continue
        daemons.append(d)
        for layer in d.layers:
            if layer.path is not None:
                how = "-c" if layer.kind == "file" else "default"
                readers.setdefault(layer.path, []).append(f"running netdata pid {pid} ({how})")
    for install in ("distro", "static"):
        path = DEFAULT_CONF[install]
        if install in installs or path in present:
            readers.setdefault(path, []).append(f"{install} netdata at its next start")
    return ConfigSources(daemons, readers)
