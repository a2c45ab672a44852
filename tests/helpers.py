"""Shared test helpers: run the real probe script with a real sh on a local file tree."""

from __future__ import annotations

import os
import stat
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from fleet.lab.lab import write_tool_dispatchers
from fleet.remote.probe import ProbeOutput, new_nonce, parse_probe_output, probe_stdin
from fleet.remote.profile import profile_stdin


def run_probe(
    root: Path,
    shell: str = "sh",
    window: int = 0,
    extra: tuple[str, ...] = (),
    lab_tools: bool = True,
) -> tuple[ProbeOutput, subprocess.CompletedProcess[bytes]]:
    """The probe as `sh -s` runs it on a host. `lab_tools`: the lab's bpftool and netdata
    first on PATH, answering for the tree (as on a lab host); without, the system's only."""
    nonce = new_nonce()
    argv = [shell, "sh"] if shell == "busybox" else [shell]
    env = dict(os.environ)
    if lab_tools:
        tools = write_tool_dispatchers(root.parent / f".{root.name}-lab-bin")
        env["PATH"] = f"{tools}:{env.get('PATH', '')}"
    proc = subprocess.run(
        [*argv, "-s"],
        input=probe_stdin(nonce, str(root), window, extra),
        capture_output=True,
        timeout=30,
        env=env,
    )
    return parse_probe_output(proc.stdout.decode(), proc.stderr.decode(), nonce, str(root)), proc


def run_profile(
    root: Path, shell: str = "sh", window: int = 1, path: str | None = None
) -> tuple[ProbeOutput, subprocess.CompletedProcess[bytes]]:
    """fleet profile's script as `sh -s` runs it on a lab host (the lab's perf and bpftool
    first on PATH); `path` replaces PATH whole (a host without perf or bpftool)."""
    nonce = new_nonce()
    argv = [shell, "sh"] if shell == "busybox" else [shell]
    tools = write_tool_dispatchers(root.parent / f".{root.name}-lab-bin")
    env = {**os.environ, "PATH": path or f"{tools}:{os.environ.get('PATH', '')}"}
    proc = subprocess.run(
        [*argv, "-s"],
        input=profile_stdin(nonce, str(root), window, 99),
        capture_output=True,
        timeout=60,
        env=env,
    )
    return parse_probe_output(proc.stdout.decode(), proc.stderr.decode(), nonce, str(root)), proc


def write(root: Path, rel: str, text: str) -> Path:
    p = root / rel.lstrip("/")
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)
    return p


@contextmanager
def immutable(path: Path) -> Iterator[Path]:
    """`chattr +i`: every write to the file fails with EPERM, root's included (a real refusal
    by the kernel, inside the tree); undone on the way out so the tree can be removed."""
    subprocess.run(["chattr", "+i", str(path)], check=True, capture_output=True)
    try:
        yield path
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True, capture_output=True)


def unreadable(path: Path) -> Path:
    """`path` replaced by a socket node: every open() fails (ENXIO), root's included."""
    path.unlink(missing_ok=True)
    os.mknod(path, 0o600 | stat.S_IFSOCK)
    return path


def process_cmdlines() -> dict[int, bytes]:
    """Every process's command line (NUL-separated), this test's own left out; a process that
    ends while being read is simply not there."""
    out = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == os.getpid():
            continue
        try:
            out[int(d.name)] = (d / "cmdline").read_bytes()
        except OSError:
            continue
    return out


def snapshot(tree: Path) -> dict[str, bytes | None]:
    """Every file (its bytes) and directory (None) of a host tree, fleet's backups and lock
    included, but the CPU model's moving proc/stat."""
    out: dict[str, bytes | None] = {}
    for p in sorted(tree.rglob("*")):
        rel = str(p.relative_to(tree))
        if p.is_symlink() or (rel.startswith("proc/") and "stat" in p.name):
            continue
        out[rel] = p.read_bytes() if p.is_file() else None
    return out
