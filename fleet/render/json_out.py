"""`--json`: the contract's schema 1 document."""

from __future__ import annotations

import json
from typing import Any

from fleet.model import COMPLIANT, ERROR, NON_COMPLIANT, UNREACHABLE, AuditRun, HostResult

SCHEMA = 1


def summary(hosts: list[HostResult]) -> dict[str, int]:
    statuses = [h.status for h in hosts]
    return {
        "hosts": len(hosts),
        "compliant": statuses.count(COMPLIANT),
        "non_compliant": statuses.count(NON_COMPLIANT),
        "unreachable": statuses.count(UNREACHABLE),
        "error": statuses.count(ERROR),
    }


def audit_document(run: AuditRun, command: str, playbook: str) -> dict[str, Any]:
    return {
        "schema": SCHEMA,
        "command": command,
        "started_at": run.started_at,
        "finished_at": run.finished_at,
        "playbook": playbook,
        "hosts": [h.to_json() for h in run.hosts],
        "summary": summary(run.hosts),
    }


def render_json(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2, sort_keys=False) + "\n"
