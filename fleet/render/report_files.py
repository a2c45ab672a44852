"""Where each report format goes (`--format FMT[:PATH]`, `-o`) and how files are written:
atomically, a temporary file in the same directory then a rename (what node_exporter's
textfile collector needs, and what keeps a half-written report from ever being served)."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from fleet.config.outfile import write_atomic
from fleet.errors import UsageError
from fleet.render.html import render_html
from fleet.render.junit import render_junit
from fleet.render.markdown import render_markdown
from fleet.render.prometheus import render_prometheus
from fleet.render.report_json import render_report_json
from fleet.render.report_table import render_report_table
from fleet.report.data import ReportData

Renderer = Callable[[ReportData], str]

# format -> (file extension, renderer)
FORMATS: dict[str, tuple[str, Renderer]] = {
    "table": ("txt", render_report_table),
    "markdown": ("md", render_markdown),
    "json": ("json", render_report_json),
    "html": ("html", render_html),
    "junit": ("xml", render_junit),
    "prometheus": ("prom", render_prometheus),
}
ALIASES = {"md": "markdown", "prom": "prometheus", "text": "table", "xml": "junit"}
SUFFIXES = {
    ".txt": "table",
    ".md": "markdown",
    ".json": "json",
    ".html": "html",
    ".htm": "html",
    ".xml": "junit",
    ".prom": "prometheus",
}


@dataclass(frozen=True)
class Output:
    fmt: str
    path: Path | None  # None: stdout


def _format_name(text: str) -> str:
    name = ALIASES.get(text.strip().lower(), text.strip().lower())
    if name not in FORMATS:
        raise UsageError(f"unknown report format {text!r}; choose from {', '.join(FORMATS)}")
    return name


def plan_outputs(formats: list[str] | None, output: Path | None) -> list[Output]:
    """`--format FMT[:PATH]`... and `-o PATH` -> where each format goes.

    A format with its own PATH goes there. The others go to `-o`: the file itself when there
    is one such format, a directory (report.<ext> inside) when there are several; with no
    `-o`, to stdout, which takes one format only. No --format: table, or the format that
    `-o`'s suffix names (report.html -> html)."""
    specs = formats or []
    if not specs:
        guessed = SUFFIXES.get(output.suffix.lower()) if output else None
        specs = [guessed or "table"]
    named: list[Output] = []
    rest: list[str] = []
    for spec in specs:
        fmt, sep, path = spec.partition(":")
        name = _format_name(fmt)
        if sep and not path:
            raise UsageError(f"--format {spec!r}: empty path after ':'")
        if sep:
            named.append(Output(name, Path(path)))
        else:
            rest.append(name)
    if len(set(rest)) != len(rest):
        raise UsageError("--format: the same format twice needs a path for each (FMT:PATH)")
    plan = list(named)
    if len(rest) == 1:
        plan.append(Output(rest[0], output))
    elif rest and output is None:
        raise UsageError(
            f"--format {', '.join(rest)}: only one format can go to stdout; "
            "give -o DIR or FMT:PATH for the others"
        )
    elif rest:
        assert output is not None
        if output.exists() and not output.is_dir():
            raise UsageError(f"{output}: several formats need -o to be a directory")
        plan += [Output(f, output / f"report.{FORMATS[f][0]}") for f in rest]
    paths = [o.path for o in plan if o.path is not None]
    if len(set(paths)) != len(paths):
        raise UsageError("two formats would write the same file")
    return plan


def check_writable(plan: list[Output], output: Path | None) -> None:
    for out in plan:
        if out.path is None:
            continue
        parent = out.path.parent
        if parent == output and not parent.exists():
            parent = parent.parent  # the -o directory of several formats: made when writing
        if not parent.is_dir():
            raise UsageError(f"{out.path}: no such directory {parent}")
        if not os.access(parent, os.W_OK | os.X_OK):
            raise UsageError(f"{out.path}: directory {parent} is not writable")
        if out.path.is_dir():
            raise UsageError(f"{out.path}: is a directory")


def write_outputs(plan: list[Output], data: ReportData) -> tuple[str, list[Path]]:
    """Render every planned format: (what goes to stdout, the files written)."""
    stdout = ""
    written: list[Path] = []
    for out in plan:
        text = FORMATS[out.fmt][1](data)
        if out.path is None:
            stdout = text
        else:
            write_atomic(out.path, text)
            written.append(out.path)
    return stdout, written
