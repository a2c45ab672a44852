"""Debian's real netdata binary as the judge of what netdata reads from a config file.

`netdata -c FILE -W get SECTION KEY DEFAULT` loads FILE with netdata's own loader and prints
the value it holds. The binary and the libraries it links come from `apt-get download`
(never installed), cached beside the real-kernel tier's packages.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from functools import cache
from pathlib import Path

import pytest

from tests.e2e import vm

PACKAGE = "netdata-core"
# The host's own C library runs the binary; only the other libraries come from packages.
_HOST_LIBS = ("libc.so", "libm.so", "ld-linux", "libpthread.so", "libdl.so", "librt.so")


class Netdata:
    def __init__(self, binary: Path, libdir: Path) -> None:
        self.binary = binary
        self.env = {"LD_LIBRARY_PATH": str(libdir), "PATH": os.environ.get("PATH", "")}

    def get(self, conf: Path, section: str, key: str, default: str) -> bytes:
        """The value netdata holds for [section] key after loading conf (default if unset)."""
        return self.get_after(["-c", str(conf)], section, key, default)

    def get_after(self, args: list[str], section: str, key: str, default: str) -> bytes:
        """The value netdata holds once it has gone through `args` (its -c and -W set, in
        order) - what a daemon started with them reads."""
        proc = subprocess.run(
            [str(self.binary), *args, "-W", "get", section, key, default],
            capture_output=True,
            env=self.env,
            timeout=30,
            check=True,
        )
        assert proc.stdout.endswith(b"\n"), proc
        return proc.stdout[:-1]

    def plugin_enabled(self, conf: Path, plugin: str) -> bool:
        """plugins_d's decision: the plugin's key, defaulting to `enable running new plugins`."""
        new = self.get(conf, "plugins", "enable running new plugins", "yes")
        default = "yes" if _true(new) else "no"
        return _true(self.get(conf, "plugins", plugin, default))


def _true(value: bytes) -> bool:
    return value.lower() in (b"yes", b"true", b"on", b"auto", b"on demand")


@cache
def _build() -> Netdata | str:
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        return "apt-get/dpkg-deb not found (Debian's netdata is the oracle)"
    root = vm.cache_dir() / "netdata-oracle"
    try:
        packages = vm.library_closure([PACKAGE])
        debs = vm.fetch(packages, vm.cache_dir() / "debs")
        trees = [vm.unpack(debs[p], root / "trees") for p in packages]
        binary = next(t / "usr/sbin/netdata" for t in trees if (t / "usr/sbin/netdata").exists())
        libs = vm.resolve_libraries([binary], trees)
    except (vm.VmError, StopIteration) as exc:
        return f"cannot get Debian's netdata: {exc}"
    libdir = root / "lib"
    shutil.rmtree(libdir, ignore_errors=True)
    libdir.mkdir(parents=True)
    for soname, path in libs.items():
        if not soname.startswith(_HOST_LIBS):
            (libdir / soname).symlink_to(path)
    return Netdata(binary, libdir)


def netdata_oracle() -> Netdata:
    """The oracle, or a skip (a failure under CI, where it must run)."""
    got = _build()
    if isinstance(got, str):
        if os.environ.get("CI"):
            pytest.fail(got)
        pytest.skip(got)
    return got
