"""Writing an output file whole or not at all."""

from __future__ import annotations

import os
from pathlib import Path

from fleet.errors import UsageError


def write_atomic(path: Path, text: str, mode: int = 0o644) -> None:
    """Temp file in the same directory (hidden, not matching *.prom), then rename. A path
    that is not a regular file (/dev/stdout, a FIFO) is written in place: never replaced."""
    if path.exists() and not path.is_file():
        try:
            with open(path, "w", encoding="utf-8") as fh:
                fh.write(text)
        except OSError as exc:
            raise UsageError(f"{path}: cannot write: {exc.strerror}") from None
        return
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(mode=0o755, exist_ok=True)  # the -o directory of several formats
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise UsageError(f"{path}: cannot write: {exc.strerror}") from None
