"""Read back what `fleet audit --json` wrote (schema 1) as an AuditRun, for `report --from`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fleet.errors import UsageError
from fleet.model import (
    CHECK_STATUSES,
    HOST_STATUSES,
    AuditRun,
    CpuFigures,
    CpuShare,
    Finding,
    HostResult,
    parse_time,
)

COMMANDS = ("audit", "report")


class AuditFileError(UsageError):
    """The --from file is not a schema 1 audit document."""


class _Bad(Exception):
    pass


def _get(obj: Any, key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if not isinstance(obj, dict):
        raise _Bad(f"{where}: expected an object")
    if key not in obj:
        raise _Bad(f"{where}: missing '{key}'")
    value = obj[key]
    # bool is an int to Python, never a number here
    if not isinstance(value, kind) or (isinstance(value, bool) and bool not in _tuple(kind)):
        raise _Bad(f"{where}.{key}: unexpected {type(value).__name__}")
    return value


def _tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def _cpu(raw: Any, where: str) -> CpuFigures | None:
    if raw is None:
        return None
    num = (int, float)
    shares = []
    for i, s in enumerate(_get(raw, "per_cpu", list, where)):
        w = f"{where}.per_cpu[{i}]"
        shares.append(
            CpuShare(
                cpu=_get(s, "cpu", (int, type(None)), w),
                user_pct=float(_get(s, "user_pct", num, w)),
                system_pct=float(_get(s, "system_pct", num, w)),
                busy_pct=float(_get(s, "busy_pct", num, w)),
                ticks=0,
            )
        )
    return CpuFigures(
        user_pct=float(_get(raw, "user_pct", num, where)),
        system_pct=float(_get(raw, "system_pct", num, where)),
        busy_pct=float(_get(raw, "busy_pct", num, where)),
        cpus=_get(raw, "cpus", int, where),
        ticks=0,
        per_cpu=tuple(shares),
        clamped=False,
    )


def _finding(raw: Any, where: str) -> Finding:
    status = _get(raw, "status", str, where)
    if status not in CHECK_STATUSES:
        raise _Bad(f"{where}.status: unknown check status {status!r}")
    return Finding(
        id=_get(raw, "id", str, where),
        status=status,
        severity=_get(raw, "severity", str, where),
        summary=_get(raw, "summary", str, where),
        evidence=_get(raw, "evidence", dict, where),
        fix=_get(raw, "fix", (str, type(None)), where),
    )


def _host(raw: Any, where: str) -> HostResult:
    status = _get(raw, "status", str, where)
    if status not in HOST_STATUSES:
        raise _Bad(f"{where}.status: unknown host status {status!r}")
    checks = [
        _finding(c, f"{where}.checks[{i}]") for i, c in enumerate(_get(raw, "checks", list, where))
    ]
    return HostResult(
        name=_get(raw, "name", str, where),
        address=_get(raw, "address", str, where),
        port=_get(raw, "port", int, where),
        status=status,
        error=_get(raw, "error", (str, type(None)), where),
        duration_s=float(_get(raw, "duration_s", (int, float), where)),
        checks=checks,
        cpu=_cpu(_get(raw, "cpu", (dict, type(None)), where), f"{where}.cpu"),
    )


def _time(doc: Any, key: str) -> str:
    text: str = _get(doc, key, str, "document")
    try:
        ok = parse_time(text).tzinfo is not None
    except ValueError:
        ok = False
    if not ok:
        raise _Bad(f"document.{key}: {text!r} is not an ISO 8601 UTC time")
    return text


def parse_audit_document(doc: Any) -> tuple[AuditRun, str]:
    """(run, playbook) from a schema 1 document; ValueError naming the bad field."""
    try:
        schema = _get(doc, "schema", int, "document")
        if schema != 1:
            raise _Bad(f"schema {schema}, this fleet reads schema 1")
        command = _get(doc, "command", str, "document")
        if command not in COMMANDS:
            raise _Bad(f"written by 'fleet {command}', expected 'fleet audit --json'")
        hosts = [
            _host(h, f"hosts[{i}]") for i, h in enumerate(_get(doc, "hosts", list, "document"))
        ]
        names = [h.name for h in hosts]
        if len(set(names)) != len(names):
            raise _Bad("a host is listed twice")
        run = AuditRun(_time(doc, "started_at"), _time(doc, "finished_at"), hosts)
        return run, _get(doc, "playbook", str, "document")
    except _Bad as exc:
        raise ValueError(str(exc)) from None


def load_audit_file(path: Path) -> tuple[AuditRun, str]:
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise AuditFileError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise AuditFileError(f"{path}: cannot read: {getattr(exc, 'strerror', exc)}") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise AuditFileError(f"{path}:{exc.lineno}: not JSON: {exc.msg}") from None
    try:
        run, playbook = parse_audit_document(doc)
    except ValueError as exc:
        raise AuditFileError(f"{path}: not a 'fleet audit --json' document: {exc}") from None
    return run, playbook
