"""Load and validate playbooks/*.yml: which checks run, with which parameters and texts."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fleet.errors import PlaybookError
from fleet.findings import SEVERITIES
from fleet.yamlfile import line_of, load_yaml

BUILTIN_CHECKS = (
    "tracing.set_event",
    "tracing.probe_events",
    "kprobes.registered",
    "netdata.ebpf",
    "netdata.version",
    "bpf.tracing_programs",
    "cpu.system",
)
FILE_TESTS = ("equals", "empty", "ini")


@dataclass(frozen=True)
class CheckSpec:
    id: str
    title: str
    severity: str
    remediation: str | None
    params: dict[str, Any] = field(default_factory=dict)
    # type: file
    path: str | None = None
    test: dict[str, Any] | None = None
    when_absent: str = "skip"


@dataclass(frozen=True)
class Playbook:
    id: str
    title: str
    path: Path
    checks: tuple[CheckSpec, ...]

    @property
    def extra_files(self) -> tuple[str, ...]:
        """Files the probe must read for the playbook's own file checks."""
        return tuple(dict.fromkeys(c.path for c in self.checks if c.path))


def default_playbook_path() -> Path:
    """`$FLEET_PLAYBOOK`, else ./playbooks/kernel-tracing.yml, else the one in fleet's checkout."""
    env = os.environ.get("FLEET_PLAYBOOK")
    if env:
        return Path(env)
    local = Path("playbooks/kernel-tracing.yml")
    if local.exists():
        return local
    return Path(__file__).resolve().parent.parent / "playbooks" / "kernel-tracing.yml"


def _str(value: Any, where: str, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise PlaybookError(f"{where}: {what} must be a non-empty string")
    return value


def _check(raw: Any, path: Path, index: int) -> CheckSpec:
    where = f"{path}:{line_of(raw)}"
    if not isinstance(raw, dict):
        raise PlaybookError(f"{path}: checks[{index}] must be a mapping")
    known = {
        "id",
        "title",
        "text",
        "severity",
        "params",
        "remediation",
        "type",
        "path",
        "test",
        "when_absent",
    }
    unknown = sorted(set(raw) - known)
    if unknown:
        raise PlaybookError(f"{where}: check has unknown key(s): {', '.join(unknown)}")
    cid = _str(raw.get("id"), where, "check id")
    where = f"{where}: check {cid}"
    severity = raw.get("severity", "medium")
    if severity not in SEVERITIES:
        raise PlaybookError(f"{where}: severity {severity!r} is not one of {', '.join(SEVERITIES)}")
    params = raw.get("params") or {}
    if not isinstance(params, dict):
        raise PlaybookError(f"{where}: params must be a mapping")
    title = raw.get("title") or raw.get("text") or cid
    remediation = raw.get("remediation")
    ctype = raw.get("type", "builtin" if cid in BUILTIN_CHECKS else None)
    if ctype == "builtin":
        if cid not in BUILTIN_CHECKS:
            raise PlaybookError(
                f"{where}: no built-in check with this id (built-in: {', '.join(BUILTIN_CHECKS)})"
            )
        return CheckSpec(cid, str(title), severity, remediation, dict(params))
    if ctype != "file":
        raise PlaybookError(f"{where}: unknown check; give `type: file` with `path` and `test`")
    fpath = _str(raw.get("path"), where, "path")
    if not fpath.startswith("/") or any(c in fpath for c in "\n\0"):
        raise PlaybookError(f"{where}: path must be an absolute path on one line")
    test = raw.get("test")
    if not isinstance(test, dict) or len(test) != 1 or next(iter(test)) not in FILE_TESTS:
        raise PlaybookError(
            f"{where}: test must be one of {{equals: V}}, {{empty: true}}, "
            "{ini: {section: S, key: K, equals: V}}"
        )
    if "ini" in test:
        ini = test["ini"]
        if not isinstance(ini, dict) or not {"section", "key", "equals"} <= set(ini):
            raise PlaybookError(f"{where}: ini test needs section, key and equals")
    when_absent = raw.get("when_absent", "skip")
    if when_absent not in ("skip", "fail", "pass"):
        raise PlaybookError(f"{where}: when_absent must be skip, fail or pass")
    return CheckSpec(
        cid, str(title), severity, remediation, dict(params), fpath, dict(test), when_absent
    )


def load_playbook(path: str | Path) -> Playbook:
    path = Path(path)
    doc = load_yaml(path, PlaybookError)
    if not isinstance(doc, dict):
        raise PlaybookError(f"{path}: a playbook is a mapping with `checks:`")
    raw_checks = doc.get("checks")
    if not isinstance(raw_checks, list) or not raw_checks:
        raise PlaybookError(f"{path}:{line_of(doc)}: `checks:` must be a non-empty list")
    checks = [_check(raw, path, i) for i, raw in enumerate(raw_checks)]
    seen: set[str] = set()
    for raw, c in zip(raw_checks, checks, strict=True):
        if c.id in seen:
            raise PlaybookError(f"{path}:{line_of(raw)}: duplicate check id {c.id}")
        seen.add(c.id)
    return Playbook(
        id=str(doc.get("id") or path.stem),
        title=str(doc.get("title") or path.stem),
        path=path,
        checks=tuple(checks),
    )
