"""The ONE remote command of an audit, and the parser of its framed output (pure)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from functools import cache

from fleet.remote.shell import remote_script, script_stdin

# strerror texts (LC_ALL=C, glibc and musl/busybox) -> errno names the checks reason about.
ERRNO_BY_MESSAGE: dict[str, str] = {
    "No such file or directory": "ENOENT",
    "Permission denied": "EACCES",
    "Operation not permitted": "EPERM",
    "Is a directory": "EISDIR",
    "Device or resource busy": "EBUSY",
    "Resource busy": "EBUSY",
    "Invalid argument": "EINVAL",
    "No such device": "ENODEV",
    "Input/output error": "EIO",
    "I/O error": "EIO",
    "Not a directory": "ENOTDIR",
    "No such device or address": "ENXIO",
    # fleet's own refusal (probe.sh, apply.sh): the path resolves outside fleet_root.
    "Symbolic link leads outside fleet_root": "EXDEV",
}


class ProbeFormatError(ValueError):
    """The remote output does not follow the probe's framing (wrong shell, truncated run)."""


@dataclass(frozen=True)
class FileRead:
    """One file as the remote side read it: text, or the errno that stopped the read."""

    path: str
    text: str | None = None
    errno: str | None = None
    message: str | None = None

    @property
    def ok(self) -> bool:
        return self.text is not None

    @property
    def absent(self) -> bool:
        return self.errno in ("ENOENT", "ENOTDIR")

    def describe_error(self) -> str:
        return f"{self.path}: {self.errno or 'unreadable'} ({self.message or 'no detail'})"


@dataclass(frozen=True)
class CommandRun:
    name: str
    path: str
    rc: int
    stdout: str
    stderr: str


@dataclass
class ProbeOutput:
    """Everything one probe run returned, keyed by paths as seen from the host's root."""

    root: str
    env: dict[str, str] = field(default_factory=dict)
    files: dict[str, FileRead] = field(default_factory=dict)
    enables: dict[str, FileRead] = field(default_factory=dict)
    plugins: list[str] = field(default_factory=list)
    procs: dict[int, str] = field(default_factory=dict)
    cmdlines: dict[int, str] = field(default_factory=dict)  # netdata's, raw (NUL-separated)
    commands: dict[str, CommandRun] = field(default_factory=dict)
    fdinfo: list[tuple[int, dict[str, str]]] | None = None
    # fleet profile (fleet/remote/profile.sh): counters read at each end of its window.
    snapshots: dict[str, dict[str, FileRead]] = field(default_factory=dict)
    snapshot_fdinfo: dict[str, list[tuple[int, dict[str, str]]]] = field(default_factory=dict)
    sections: dict[str, str] = field(default_factory=dict)  # other frames' text, by tag
    stat1: str | None = None
    stat2: str | None = None
    stats: list[str] = field(default_factory=list)  # every sample, a second apart, in order
    complete: bool = False

    def file(self, path: str) -> FileRead:
        """The read of `path`; a file the probe did not ask for counts as absent."""
        return self.files.get(path) or FileRead(path, errno="ENOENT", message="not read")


@cache
def probe_script() -> str:
    return remote_script("probe.sh")


def new_nonce() -> str:
    return secrets.token_hex(12)


# Where each netdata install reads netdata.conf by default (fleet.audit.netdata_install).
NETDATA_DEFAULT_CONF = {
    "distro": "/etc/netdata/netdata.conf",
    "static": "/opt/netdata/etc/netdata/netdata.conf",
}
# First file found is used alone (no merge): user dir, legacy name, stock dir (reference 2.2).
EBPF_CONF_PATHS = [
    "/etc/netdata/ebpf.d.conf",
    "/etc/netdata/ebpf.conf",
    "/usr/lib/netdata/conf.d/ebpf.d.conf",
    "/usr/lib/netdata/conf.d/ebpf.conf",
    "/opt/netdata/etc/netdata/ebpf.d.conf",
    "/opt/netdata/etc/netdata/ebpf.conf",
    "/opt/netdata/usr/lib/netdata/conf.d/ebpf.d.conf",
    "/opt/netdata/usr/lib/netdata/conf.d/ebpf.conf",
]


def probe_args(
    nonce: str, root: str, cpu_window: int, extra_files: tuple[str, ...] = ()
) -> list[str]:
    """The probe's arguments: NONCE ROOT WINDOW, then the files it reads besides its fixed
    ones (netdata's config files and the playbook's `extra_files`)."""
    files = dict.fromkeys([*NETDATA_DEFAULT_CONF.values(), *EBPF_CONF_PATHS, *extra_files])
    return [nonce, root, str(cpu_window), *files]


def probe_stdin(nonce: str, root: str, cpu_window: int, extra_files: tuple[str, ...] = ()) -> bytes:
    """What the remote `sh -s` reads: the arguments, then the script (fleet/remote/shell.py;
    sudo, when the host wants it, is put around the command by fleet/transport/become.py)."""
    return script_stdin(probe_script(), probe_args(nonce, root, cpu_window, extra_files))


def _strip_root(root: str, path: str) -> str:
    prefix = root.rstrip("/")
    if prefix and path.startswith(prefix + "/"):
        return path[len(prefix) :]
    return path


def _collect_grep(
    lines: list[str], wanted: list[str], errors: dict[str, tuple[str, str]], root: str
) -> dict[str, FileRead]:
    """Turn `grep -H ''` output for `wanted` paths into FileReads (paths relative to root)."""
    content: dict[str, list[str]] = {w: [] for w in wanted}
    by_len = sorted(wanted, key=len, reverse=True)
    for line in lines:
        head, sep, rest = line.partition(":")
        if sep and head in content:
            content[head].append(rest)
            continue
        # A path with ':' in it: fall back to the longest wanted prefix.
        for w in by_len:
            if line.startswith(w + ":"):
                content[w].append(line[len(w) + 1 :])
                break
        else:
            raise ProbeFormatError(f"probe output line belongs to no requested file: {line!r}")
    out: dict[str, FileRead] = {}
    # A path asked for twice (older probes did) is printed twice by grep: keep one copy.
    for w in set(wanted):
        n = wanted.count(w)
        if n > 1 and len(content[w]) % n == 0:
            content[w] = content[w][: len(content[w]) // n]
    for w in wanted:
        rel = _strip_root(root, w)
        if w in errors:
            errno, message = errors[w]
            out[rel] = FileRead(rel, errno=errno, message=message)
        else:
            text = "".join(f"{c}\n" for c in content[w])
            out[rel] = FileRead(rel, text=text)
    return out


def _parse_stderr(stderr: str, nonce: str) -> tuple[dict[str, tuple[str, str]], dict[str, str]]:
    """grep's per-file errors, and each command's stderr (framed by '<nonce> cmd NAME')."""
    errors: dict[str, tuple[str, str]] = {}
    cmd_err: dict[str, list[str]] = {}
    current: str | None = None
    for line in stderr.splitlines():
        if line.startswith(nonce + " cmd "):
            current = line.split(" ", 2)[2]
            cmd_err[current] = []
        elif line.startswith(nonce + " end "):
            current = None
        elif current is not None:
            cmd_err[current].append(line)
        elif line.startswith("grep: "):
            path, _, message = line[len("grep: ") :].rpartition(": ")
            errno = ERRNO_BY_MESSAGE.get(message.strip(), "EIO")
            errors[path] = (errno, message.strip())
    return errors, {k: "\n".join(v) for k, v in cmd_err.items()}


def parse_probe_output(stdout: str, stderr: str, nonce: str, root: str) -> ProbeOutput:
    """Parse a probe run. Raises ProbeFormatError when the framing is missing or broken."""
    # The output was decoded with "replace": a root holding bytes that are not UTF-8 must be
    # seen the same way, or no path would be recognised as under it (every file "absent").
    root = root.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    out = ProbeOutput(root=root)
    marker = nonce + " "
    lines = stdout.split("\n")
    begin = next((i for i, line in enumerate(lines) if line.startswith(marker + "begin")), None)
    if begin is None:
        raise ProbeFormatError("probe did not start (no begin frame); is `sh` POSIX on the host?")
    lines = lines[begin:]  # whatever a noisy login shell printed first is not ours
    errors, cmd_err = _parse_stderr(stderr, nonce)
    section: list[str] = []
    body: list[str] = []
    wanted: list[str] = []
    rc_seen: list[str] = []

    def close() -> None:
        if not section:
            return
        tag = section[0]
        if tag in ("files", "enables"):
            reads = _collect_grep([b for b in body if b], wanted, errors, root)
            (out.files if tag == "files" else out.enables).update(reads)
        elif tag == "snap" and len(section) > 1:
            reads = _collect_grep([b for b in body if b], wanted, errors, root)
            out.snapshots[section[1]] = reads
        elif tag in ("procs", "comms"):
            for b in body:
                path, _, comm = b.rpartition(":")
                pid = path.removesuffix("/comm").rsplit("/", 1)[-1]
                if path.endswith("/comm") and pid.isdigit():
                    out.procs[int(pid)] = comm
        elif tag == "cmdline" and len(section) > 1 and section[1].isdigit():
            # The raw bytes, newlines in arguments included; printf added one "\n" after.
            out.cmdlines[int(section[1])] = "\n".join(body).removesuffix("\n")
        elif tag == "fdinfo" and len(section) > 1:
            out.snapshot_fdinfo[section[1]] = _parse_fdinfo(body)
        elif tag == "fdinfo":
            out.fdinfo = _parse_fdinfo(body)
        elif tag in ("stat1", "stat", "stat2"):
            text = "\n".join(body)
            out.stats.append(text)
            if tag == "stat1":
                out.stat1 = text
            elif tag == "stat2":
                out.stat2 = text
        elif tag == "times":
            out.sections[tag] = "\n".join(body)
        elif tag == "cmd":
            name = section[1]
            path = _strip_root(root, " ".join(section[2:]))
            rc = int(rc_seen[-1]) if rc_seen else 255  # no rc frame: the run was cut short
            text = "\n".join(body)
            out.commands[name] = CommandRun(
                name, path, rc, text.removesuffix("\n"), cmd_err.get(name, "")
            )
        section.clear()
        body.clear()
        wanted.clear()
        rc_seen.clear()

    began = False
    for line in lines:
        if out.complete:
            # Nothing of ours follows `done`: more is somebody else's, and not to be trusted.
            if line:
                raise ProbeFormatError("output after the probe's done frame")
            continue
        if not line.startswith(marker):
            body.append(line)
            continue
        tag, *args = line[len(marker) :].split(" ")
        if tag == "begin":
            if began:
                raise ProbeFormatError("a second begin frame: the probe ran twice in one output")
            began = True
        if tag == "want":
            wanted.append(line[len(marker) + len("want ") :])
        elif tag == "env":
            out.env[args[0]] = " ".join(args[1:])
        elif tag == "plugin":
            out.plugins.append(" ".join(args))
        elif tag == "rc":
            rc_seen.append(args[-1])
            close()
        elif tag in ("begin", "done"):
            close()
            out.complete = out.complete or tag == "done"
        else:
            close()
            section[:] = [tag, *args]
    close()
    return out


def _parse_fdinfo(lines: list[str]) -> list[tuple[int, dict[str, str]]]:
    """`grep -rH` over /proc/PID/fdinfo: one dict of prog_* fields per (pid, fd)."""
    progs: dict[tuple[int, str], dict[str, str]] = {}
    for line in lines:
        path, _, kv = line.partition(":")
        parts = path.split("/")
        if "fdinfo" not in parts or not kv:
            continue
        i = parts.index("fdinfo")
        if i < 1 or not parts[i - 1].isdigit():
            continue
        key, _, value = kv.partition(":")
        progs.setdefault((int(parts[i - 1]), parts[i + 1] if i + 1 < len(parts) else ""), {})[
            key.strip()
        ] = value.strip()
    return [(pid, fields) for (pid, _fd), fields in sorted(progs.items())]
