"""Shared test helpers: run the real probe script with a real sh on a local file tree."""

from __future__ import annotations

import subprocess
from pathlib import Path

from fleet.probe import ProbeOutput, new_nonce, parse_probe_output, probe_command, probe_script


def run_probe(
    root: Path, shell: str = "sh", window: int = 0, extra: tuple[str, ...] = ()
) -> tuple[ProbeOutput, subprocess.CompletedProcess[bytes]]:
    nonce = new_nonce()
    cmd = probe_command(nonce, str(root), window, extra)
    argv = [shell, "sh"] if shell == "busybox" else [shell]
    proc = subprocess.run(
        [*argv, "-c", cmd], input=probe_script().encode(), capture_output=True, timeout=30
    )
    return parse_probe_output(proc.stdout.decode(), proc.stderr.decode(), nonce, str(root)), proc


def write(root: Path, rel: str, text: str) -> Path:
    p = root / rel.lstrip("/")
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)
    return p
