"""`fleet report --format json`: the audit's schema 1 document, unchanged (`command`:
"report"), plus two top-level blocks: `drift` and `waivers`."""

from __future__ import annotations

from typing import Any

from fleet.render.json_out import audit_document, render_json
from fleet.report.data import ReportData


def report_document(data: ReportData) -> dict[str, Any]:
    doc = audit_document(data.run, "report", data.playbook)
    doc["drift"] = {"run_id": data.run_id, **data.drift.to_json()}
    doc["waivers"] = [use.to_json() for use in data.waivers.uses]
    return doc


def render_report_json(data: ReportData) -> str:
    return render_json(report_document(data))
