"""The real-kernel tier's VM: built from Debian packages, booted under QEMU, stopped by pid.

Build (cached under FLEET_E2E_DIR, default `.e2e-vm/`; a rerun reuses what is there):
Debian's stock kernel (`linux-image-amd64` -> its versioned package), `busybox-static`,
`openssh-server`, `netdata-core` and every shared library they link, all fetched with
`apt-get download` and unpacked with `dpkg -x`, never installed on this machine. The
initramfs is an uncompressed newc cpio (decompressing under TCG costs seconds of boot).

Boot: `qemu-system-x86_64`, user-mode networking with the guest's port 22 forwarded to
127.0.0.1 only. KVM gets one short try when /dev/kvm exists; nested KVM has failed to boot
such guests, so TCG follows.

    python -m tests.e2e.vm build          # fetch + assemble (cached)
    python -m tests.e2e.vm up             # boot, print the ssh command and an inventory
    python -m tests.e2e.vm down           # stop QEMU by its pid
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
GUEST = Path(__file__).resolve().parent / "guest"
# netdata.conf's [plugins] ebpf as netdata reads it: the lab's netdata-restart uses it too.
NETDATA_AWK = REPO / "fleet/lab/netdata_ebpf.awk"
KERNEL_META = "linux-image-amd64"
# What the guest runs, by package: the binaries we copy (their libraries follow them).
BINARIES = {
    "busybox-static": ["bin/busybox"],
    "openssh-server": ["usr/sbin/sshd"],
    "netdata-core": ["usr/sbin/netdata"],
    # fleet profile's sources (the 6.1 kernel line's perf), and the stand-in ebpf.plugin's
    # real BPF programs: bpftrace compiles and attaches them, bpftool lists them.
    "linux-perf": ["usr/bin/perf"],
    "bpftrace": ["usr/bin/bpftrace"],
    "bpftool": ["usr/sbin/bpftool"],
}
# QEMU's virtio NIC: Debian builds its drivers as modules; their dependencies are added.
NIC_MODULES = ["virtio_pci", "virtio_net"]
GUEST_IP, GUEST_GW = "10.0.2.15/24", "10.0.2.2"
BOOT_TIMEOUT_S = 240.0
KVM_TRY_S = 15.0


class VmError(RuntimeError):
    """The VM could not be built or booted; the message says what and where."""


def cache_dir() -> Path:
    return Path(os.environ.get("FLEET_E2E_DIR", REPO / ".e2e-vm")).resolve()


def log(msg: str) -> None:
    print(f"e2e-vm: {msg}", file=sys.stderr, flush=True)


def _run(argv: list[str], cwd: Path | None = None) -> str:
    proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise VmError(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout


# ---- packages -------------------------------------------------------------------------------

_DEP = re.compile(r"^\s+\|?(?:Pre)?Depends: (\S+)$")
# Library packages whose files are not libraries the guest's binaries link.
_NOT_LIBS = re.compile(r"-(bin|dev|modules|runtime|common|data|doc)$")


def _depends(pkgs: list[str]) -> dict[str, list[str]]:
    """Each package's Depends/Pre-Depends (first of alternatives too), in one apt-cache call."""
    out = _run(
        [
            "apt-cache",
            "depends",
            "--no-recommends",
            "--no-suggests",
            "--no-conflicts",
            "--no-breaks",
            "--no-replaces",
            "--no-enhances",
            *pkgs,
        ]
    )
    deps: dict[str, list[str]] = {}
    current: list[str] = []
    for line in out.splitlines():
        if line and not line[0].isspace():
            current = deps.setdefault(line.strip(), [])
        elif (m := _DEP.match(line)) and not m.group(1).startswith("<"):
            current.append(m.group(1))
    return deps


def kernel_package() -> str:
    deps = [d for d in _depends([KERNEL_META]).get(KERNEL_META, []) if d.startswith("linux-image-")]
    if not deps:
        raise VmError(
            f"apt-cache: {KERNEL_META} depends on no linux-image-* package (run apt-get update)"
        )
    return deps[0]


def library_closure(roots: Iterable[str]) -> list[str]:
    """The roots plus every lib* package they depend on, transitively (apt-cache per level)."""
    seen: set[str] = set()
    level = set(roots)
    while level:
        seen |= level
        found = _depends(sorted(level))
        level = {
            d
            for ds in found.values()
            for d in ds
            if re.match(r"^(lib|zlib)", d) and not _NOT_LIBS.search(d)
        } - seen
    return sorted(seen)


def fetch(packages: list[str], debs: Path) -> dict[str, Path]:
    """apt-get download what is not cached yet; package name -> its .deb."""
    debs.mkdir(parents=True, exist_ok=True)

    def have() -> dict[str, Path]:
        return {p.name.split("_", 1)[0]: p for p in debs.glob("*.deb")}

    missing = [p for p in packages if p not in have()]
    if missing:
        log(f"apt-get download {len(missing)} packages")
        # As root apt warns that _apt cannot write here; the download itself is fine.
        _run(["apt-get", "download", "-q", *missing], cwd=debs)
    found = have()
    lost = [p for p in packages if p not in found]
    if lost:
        raise VmError(f"apt-get download did not produce: {', '.join(lost)}")
    return {p: found[p] for p in packages}


def unpack(deb: Path, into: Path) -> Path:
    dest = into / deb.stem
    if not (dest / ".done").exists():
        shutil.rmtree(dest, ignore_errors=True)
        dest.mkdir(parents=True)
        _run(["dpkg-deb", "-x", str(deb), str(dest)])
        (dest / ".done").touch()
    return dest


# ---- ELF: what a binary links ---------------------------------------------------------------


def needed(path: Path) -> list[str]:
    """DT_NEEDED sonames of an ELF64 little-endian file (section headers; no binutils)."""
    data = path.read_bytes()
    if data[:4] != b"\x7fELF" or data[4] != 2:
        raise VmError(f"{path}: not an ELF64 file")
    sections = _sections(data)
    out: list[str] = []
    for _name, sh_type, _f, _a, off, size, link, _i, _al, entsize in sections:
        if sh_type != 6:  # SHT_DYNAMIC
            continue
        stroff = sections[link][4]
        for j in range(0, size, entsize or 16):
            tag, val = struct.unpack_from("<qQ", data, off + j)
            if tag == 0:
                break
            if tag == 1:  # DT_NEEDED
                end = data.index(b"\0", stroff + val)
                out.append(data[stroff + val : end].decode())
    return out


_LIBDIRS = ["lib/x86_64-linux-gnu", "usr/lib/x86_64-linux-gnu", "lib64", "lib", "usr/lib"]


def resolve_libraries(binaries: list[Path], trees: list[Path]) -> dict[str, Path]:
    """soname -> file in the unpacked packages, for the binaries and their libraries."""
    found: dict[str, Path] = {}
    todo = [(b, s) for b in binaries for s in needed(b)]
    while todo:
        who, soname = todo.pop()
        if soname in found:
            continue
        for tree in trees:
            hits = [tree / d / soname for d in _LIBDIRS if (tree / d / soname).exists()]
            if hits:
                real = hits[0].resolve()
                found[soname] = real
                todo += [(real, s) for s in needed(real)]
                break
        else:
            raise VmError(f"{who.name} needs {soname}, which no fetched package provides")
    return found


# ---- initramfs ------------------------------------------------------------------------------


class Cpio:
    """newc archive writer: what the kernel unpacks into rootfs."""

    def __init__(self) -> None:
        self.buf = io.BytesIO()
        self.ino = 1
        self.names: set[str] = set()

    def _entry(
        self,
        name: str,
        mode: int,
        data: bytes = b"",
        nlink: int = 1,
        rdev: tuple[int, int] = (0, 0),
    ) -> None:
        name = name.strip("/")
        if name in self.names:
            return
        self.names.add(name)
        raw = name.encode() + b"\0"
        fields = [self.ino, mode, 0, 0, nlink, 0, len(data), 0, 0, *rdev, len(raw), 0]
        self.buf.write(b"070701" + b"".join(b"%08X" % f for f in fields) + raw)
        self.buf.write(b"\0" * (-(110 + len(raw)) % 4) + data + b"\0" * (-len(data) % 4))
        self.ino += 1

    def dir(self, name: str, perm: int = 0o755) -> None:
        parts = name.strip("/").split("/")
        for i in range(1, len(parts)):
            self._entry("/".join(parts[:i]), 0o040755, nlink=2)
        self._entry(name, 0o040000 | perm, nlink=2)

    def file(self, name: str, data: bytes, perm: int = 0o644) -> None:
        parent = os.path.dirname(name.strip("/"))
        if parent:
            self.dir(parent)
        self._entry(name, 0o100000 | perm, data)

    def symlink(self, name: str, target: str) -> None:
        self._entry(name, 0o120777, target.encode())

    def chardev(self, name: str, major: int, minor: int) -> None:
        self._entry(name, 0o020600, rdev=(major, minor))

    def finish(self) -> bytes:
        self._entry("TRAILER!!!", 0)
        return self.buf.getvalue() + b"\0" * (-self.buf.tell() % 512)


@dataclass(frozen=True)
class Image:
    kernel: Path
    initrd: Path
    client_key: Path
    host_pubkey: str
    kernel_release: str


def _keys(keys: Path) -> None:
    keys.mkdir(parents=True, exist_ok=True)
    for name in ("ssh_host_ed25519_key", "client_ed25519"):
        if not (keys / name).exists():
            _run(
                [
                    "ssh-keygen",
                    "-q",
                    "-t",
                    "ed25519",
                    "-N",
                    "",
                    "-C",
                    f"fleet-e2e-{name}",
                    "-f",
                    str(keys / name),
                ]
            )


def _sections(data: bytes) -> list[tuple[int, ...]]:
    (shoff,) = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
    return [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize) for i in range(shnum)]


def _module_deps(ko: Path) -> list[str]:
    """The `depends=` of a module's .modinfo section (what modinfo -F depends prints)."""
    data = ko.read_bytes()
    sections = _sections(data)
    (shstrndx,) = struct.unpack_from("<H", data, 0x3E)
    names_off = sections[shstrndx][4]
    for sh in sections:
        name = data[names_off + sh[0] : data.index(b"\0", names_off + sh[0])]
        if name == b".modinfo":
            for field in data[sh[4] : sh[4] + sh[5]].split(b"\0"):
                if field.startswith(b"depends="):
                    return [d for d in field[8:].decode().split(",") if d]
    return []


def _modules(kernel_tree: Path) -> list[Path]:
    """NIC_MODULES and what they depend on, in load order (modinfo: no depmod output needed)."""
    (mdir,) = list((kernel_tree / "lib/modules").iterdir())
    index = {p.name.removesuffix(".ko").replace("-", "_"): p for p in mdir.rglob("*.ko")}
    order: list[Path] = []

    def visit(name: str) -> None:
        ko = index.get(name.replace("-", "_"))
        if ko is None:
            raise VmError(f"module {name} not in {mdir.name}")
        if ko in order:
            return
        for dep in _module_deps(ko):
            visit(dep)
        order.append(ko)

    for m in NIC_MODULES:
        visit(m)
    return order


def build() -> Image:
    """Fetch, unpack and assemble; every stage is cached, the initrd by its inputs' digest."""
    t0 = time.monotonic()
    root = cache_dir()
    debs, trees, keys = root / "debs", root / "unpacked", root / "keys"
    kpkg = kernel_package()
    libs = library_closure(BINARIES)
    debfiles = fetch(sorted({kpkg, *libs}), debs)
    unpacked = {p: unpack(d, trees) for p, d in debfiles.items()}
    _keys(keys)

    ktree = unpacked[kpkg]
    (vmlinuz,) = list((ktree / "boot").glob("vmlinuz-*"))
    release = vmlinuz.name.removeprefix("vmlinuz-")
    bins = {f"/{rel}": unpacked[pkg] / rel for pkg, rels in BINARIES.items() for rel in rels}
    sonames = resolve_libraries(list(bins.values()), list(unpacked.values()))
    modules = _modules(ktree)

    digest = hashlib.sha256()
    for p in sorted(debfiles.values()):
        digest.update(p.name.encode())
    for p in [
        *sorted(GUEST.rglob("*")),
        NETDATA_AWK,
        keys / "ssh_host_ed25519_key.pub",
        keys / "client_ed25519.pub",
        Path(__file__),
    ]:
        if p.is_file():
            digest.update(p.name.encode() + p.read_bytes())
    initrd = root / f"initrd-{digest.hexdigest()[:16]}.cpio"
    if not initrd.exists():
        for old in root.glob("initrd-*.cpio"):
            old.unlink()
        data = _initramfs(bins, sonames, modules, unpacked["netdata-core"], keys, release)
        tmp = initrd.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(data)
        tmp.rename(initrd)
        log(
            f"initramfs {initrd.name}: {len(data) / 2**20:.1f} MiB, {len(sonames)} "
            f"libraries, {len(modules)} modules"
        )
    log(f"image ready in {time.monotonic() - t0:.1f} s (kernel {release}, cache {root})")
    host_pub = " ".join((keys / "ssh_host_ed25519_key.pub").read_text().split()[:2])
    return Image(vmlinuz, initrd, keys / "client_ed25519", host_pub, release)


def _initramfs(
    bins: dict[str, Path],
    sonames: dict[str, Path],
    modules: list[Path],
    netdata: Path,
    keys: Path,
    release: str,
) -> bytes:
    a = Cpio()
    a.dir("tmp", 0o1777)
    a.dir("dev")
    # The kernel opens /dev/console for PID 1 before anything can mount devtmpfs.
    a.chardev("dev/console", 5, 1)
    for d in [
        "proc",
        "sys",
        "run",
        "var/log",
        "etc/ssh",
        "usr/bin",
        "usr/sbin",
        "sbin",
        "lib/x86_64-linux-gnu",
        "lib64",
        "sys/kernel",
        "usr/lib/netdata/plugins.d",
    ]:
        a.dir(d)
    a.dir("root", 0o700)
    a.dir("root/.ssh", 0o700)
    for dest, src in bins.items():
        a.file(dest, src.read_bytes(), 0o755)
    for soname, src in sonames.items():
        a.file(f"lib/x86_64-linux-gnu/{soname}", src.read_bytes(), 0o755)
    a.symlink("lib64/ld-linux-x86-64.so.2", "/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2")
    # busybox applets: one symlink each, so PATH finds sh, grep, cat, ip, nc, awk, ...
    applets = _run([str(bins["/bin/busybox"]), "--list-full"]).split()
    for applet in applets:
        if f"/{applet}" not in bins:
            a.symlink(applet, "/bin/busybox")
    for ko in modules:
        a.file(f"lib/modules/{ko.name}", ko.read_bytes())
    a.file("etc/fleet-e2e/modules", "".join(f"{ko.name}\n" for ko in modules).encode())
    a.file("etc/fleet-e2e/release", f"{release}\n".encode())
    # netdata's own packaged config; the incident turns its eBPF plugin on (guest/fleet-e2e).
    conf = (netdata / "etc/netdata/netdata.conf").read_bytes()
    a.file("usr/share/fleet-e2e/netdata.conf.debian", conf)
    a.file("etc/ssh/ssh_host_ed25519_key", (keys / "ssh_host_ed25519_key").read_bytes(), 0o600)
    a.file("etc/ssh/ssh_host_ed25519_key.pub", (keys / "ssh_host_ed25519_key.pub").read_bytes())
    a.file("root/.ssh/authorized_keys", (keys / "client_ed25519.pub").read_bytes(), 0o600)
    a.file("usr/share/fleet-e2e/netdata_ebpf.awk", NETDATA_AWK.read_bytes())
    a.symlink("init", "/bin/busybox")
    for alias in ("fleet-e2e-sink", "fleet-e2e-pace"):
        a.symlink(f"usr/sbin/{alias}", "fleet-e2e")
    for src in sorted(GUEST.iterdir()):
        dest = {
            "inittab": "etc/inittab",
            "sshd_config": "etc/ssh/sshd_config",
            "passwd": "etc/passwd",
            "group": "etc/group",
            "ebpf.plugin": "usr/lib/netdata/plugins.d/ebpf.plugin",
        }.get(src.name, f"usr/sbin/{src.name}")
        a.file(dest, src.read_bytes(), 0o755 if os.access(src, os.X_OK) else 0o644)
    return a.finish()


# ---- boot -----------------------------------------------------------------------------------


@dataclass
class Vm:
    pid: int
    port: int
    accel: str
    boot_s: float
    console: Path
    image: Image
    state: Path

    @property
    def known_hosts(self) -> Path:
        return self.state / "known_hosts"

    def ssh_argv(self, *remote: str) -> list[str]:
        """The OpenSSH client, for reading the guest independently of fleet."""
        return [
            "ssh",
            "-F",
            "none",
            "-p",
            str(self.port),
            "-i",
            str(self.image.client_key),
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            f"UserKnownHostsFile={self.known_hosts}",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "BatchMode=yes",
            "-o",
            "ConnectTimeout=60",
            "-o",
            "ServerAliveInterval=15",
            "root@127.0.0.1",
            *remote,
        ]

    def inventory(self, path: Path, **host_vars: str) -> Path:
        lines = [
            "all:",
            "  hosts:",
            "    vm:",
            "      ansible_host: 127.0.0.1",
            f"      ansible_port: {self.port}",
            "      ansible_user: root",
            f"      ansible_ssh_private_key_file: {self.image.client_key}",
            f"      fleet_known_hosts: {self.known_hosts}",
            "      fleet_netdata_restart: fleet-e2e netdata restart",
        ]
        lines += [f"      {k}: {v}" for k, v in host_vars.items()]
        path.write_text("\n".join(lines) + "\n")
        return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _banner(port: int) -> bool:
    """True once the guest's sshd answers through the forward (QEMU accepts even before)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.settimeout(10)
            return s.recv(64).startswith(b"SSH-2.0-")
    except OSError:
        return False


def _qemu_argv(image: Image, port: int, accel: str, console: Path) -> list[str]:
    # One vCPU: with two under TCG, a kprobe removed while the load ran tcp_sendmsg on the
    # other vCPU oopsed the guest (a call through NULL at tcp_sendmsg's ftrace site), and
    # clearing 1320 events under load soft-locked it. Cross-vCPU code patching is what
    # emulation gets wrong; one vCPU has none.
    argv = [
        "qemu-system-x86_64",
        "-m",
        # bpftrace's LLVM is ~200 MiB of the initramfs, held twice while it unpacks.
        "2048",
        "-smp",
        "1",
        "-kernel",
        str(image.kernel),
        "-initrd",
        str(image.initrd),
        "-append",
        "console=ttyS0 panic=-1 quiet",
        "-display",
        "none",
        "-monitor",
        "none",
        "-serial",
        f"file:{console}",
        "-no-reboot",
        "-netdev",
        f"user,id=n0,hostfwd=tcp:127.0.0.1:{port}-:22",
        "-device",
        "virtio-net-pci,netdev=n0",
    ]
    return argv + (["-accel", "kvm", "-cpu", "host"] if accel == "kvm" else ["-accel", "tcg"])


def _start(image: Image, state: Path, accel: str, timeout: float) -> Vm | None:
    port = _free_port()
    console = state / f"console-{accel}.log"
    console.unlink(missing_ok=True)
    t0 = time.monotonic()
    with open(state / f"qemu-{accel}.err", "wb") as err:
        proc = subprocess.Popen(
            _qemu_argv(image, port, accel, console),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
            start_new_session=True,
        )
    (state / "qemu.pid").write_text(f"{proc.pid}\n")
    while time.monotonic() - t0 < timeout:
        if proc.poll() is not None:
            return None
        text = console.read_text(errors="replace") if console.exists() else ""
        if "fleet-e2e: ready" in text and _banner(port):
            return Vm(proc.pid, port, accel, time.monotonic() - t0, console, image, state)
        if "Kernel panic" in text or "fleet-e2e: sshd failed" in text:
            break
        time.sleep(0.5)
    _kill(proc.pid)
    return None


def up(state: Path) -> Vm:
    """Boot the guest (KVM one short try, then TCG) and wait for its sshd; fail loudly."""
    image = build()
    state.mkdir(parents=True, exist_ok=True)
    down(state)
    vm = None
    if os.access("/dev/kvm", os.R_OK | os.W_OK):
        vm = _start(image, state, "kvm", KVM_TRY_S)
        if vm is None:
            log(f"KVM did not boot the guest within {KVM_TRY_S:g} s; using TCG")
    if vm is None:
        vm = _start(image, state, "tcg", BOOT_TIMEOUT_S)
    if vm is None:
        tail = ""
        for c in state.glob("console-*.log"):
            tail += "".join(c.read_text(errors="replace").splitlines(True)[-15:])
        raise VmError(
            f"the guest did not boot to sshd within {BOOT_TIMEOUT_S:g} s "
            f"(console in {state}):\n{tail}"
        )
    vm.known_hosts.write_text(f"[127.0.0.1]:{vm.port} {image.host_pubkey}\n")
    (state / "port").write_text(f"{vm.port}\n")
    log(f"guest up in {vm.boot_s:.1f} s ({vm.accel}), ssh on 127.0.0.1:{vm.port}")
    return vm


def _kill(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    for _ in range(100):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        try:
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return
        except ChildProcessError:
            pass
        time.sleep(0.1)
    os.killpg(pid, signal.SIGKILL)


def down(state: Path) -> None:
    pidfile = state / "qemu.pid"
    if pidfile.exists():
        pid = int(pidfile.read_text())
        # Only our QEMU: the pid must still be a qemu-system process.
        try:
            comm = Path(f"/proc/{pid}/comm").read_text().strip()
        except OSError:
            comm = ""
        if comm.startswith("qemu-system"):
            _kill(pid)
        pidfile.unlink()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.e2e.vm")
    ap.add_argument("command", choices=["build", "up", "down"])
    ap.add_argument("--state", type=Path, default=cache_dir() / "run")
    args = ap.parse_args(argv)
    try:
        if args.command == "build":
            build()
        elif args.command == "up":
            vm = up(args.state)
            inv = vm.inventory(args.state / "inventory.yml")
            print(
                f"boot {vm.boot_s:.1f} s ({vm.accel}, kernel {vm.image.kernel_release})\n"
                f"{' '.join(vm.ssh_argv())}\n"
                f"fleet audit -i {inv}\nstop: python -m tests.e2e.vm down"
            )
        else:
            down(args.state)
    except VmError as e:
        print(f"e2e-vm: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
