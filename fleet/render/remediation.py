"""Output of fleet remediate and fleet rollback: the plan as a diff, the before -> after
table, and the contract's JSON (schema 1 plus steps, CPU before/after, verdict)."""

from __future__ import annotations

from typing import Any

from tabulate import tabulate

from fleet.model import FIXES, SKIPPED, UNREACHABLE
from fleet.remediate.results import PLANNED, HostRemediation, RemediationRun
from fleet.render.json_out import SCHEMA, summary


def _pct(cpu: Any) -> str:
    return f"{cpu.system_pct:.1f}" if cpu is not None else "-"


def render_plan(run: RemediationRun) -> str:
    lines: list[str] = []
    total = 0
    for h in run.hosts:
        if h.failed:  # unreachable, or its state could not be read
            lines.append(f"{h.name}: {h.status}: {h.result.error}")
            continue
        planned = [s for s in h.steps if s.status == PLANNED]
        total += len(planned)
        if not h.steps:
            lines.append(f"{h.name}: nothing to change ({h.status})")
            continue
        lines.append(f"{h.name}: {len(planned)} step(s) to apply ({h.status})")
        for s in h.steps:
            note = f" - {s.error}" if s.error else ""
            lines.append(f"  [{s.status}] {s.id}: {FIXES[s.id]}{note}")
            lines += [f"  {d}" for d in s.diff]
    hosts = sum(1 for h in run.hosts if any(s.status == PLANNED for s in h.steps))
    lines.append("")
    lines.append(
        f"plan: {total} step(s) on {hosts} host(s); nothing was changed. "
        "Apply with --apply (asks first) or --apply --yes.\n"
        "Each step is planned again from the state read just before it runs: a later step "
        "may find an earlier one left it nothing to do."
        if total
        else "plan: nothing to change."
    )
    return "\n".join(lines) + "\n"


def _steps_cell(h: HostRemediation) -> str:
    if not h.steps:
        return "-"
    counts: dict[str, int] = {}
    for s in h.steps:
        counts[s.status] = counts.get(s.status, 0) + 1
    return ", ".join(f"{n} {status}" for status, n in counts.items())


def render_results(run: RemediationRun, rollback: bool = False) -> str:
    rows = []
    proofs = any(h.proof is not None for h in run.hosts)  # --verify profile
    for h in run.hosts:
        outcome = "FAILED" if h.failed else ("restored" if rollback else "fixed")
        if not h.steps and not h.failed:
            outcome = "nothing to do"
        if h.status in (UNREACHABLE, SKIPPED):
            outcome = h.status
        row = [h.name, outcome, _steps_cell(h)]
        if not rollback:
            row += [
                f"{_pct(h.cpu_before)} -> {_pct(h.cpu_after)}",
                h.verdict.verdict if h.verdict else "-",
            ]
            if proofs:
                row.append(h.proof.verdict if h.proof else "-")
        row.append(h.result.error or (h.proof.reason if h.proof else ""))
        rows.append(row)
    headers = ["host", "result", "steps"]
    if not rollback:
        headers += ["sys% before -> after", "verdict"] + (["proof"] if proofs else [])
    headers.append("note")
    text = tabulate(rows, headers=headers, tablefmt="simple") + "\n"
    if run.budget_note:
        text += f"\n{run.budget_note}; hosts not started are listed as skipped\n"
    return text


def remediation_document(run: RemediationRun, command: str, playbook: str) -> dict[str, Any]:
    hosts = [h.result for h in run.hosts]
    doc: dict[str, Any] = {
        "schema": SCHEMA,
        "command": command,
        "started_at": run.started_at,
        "finished_at": run.finished_at,
        "playbook": playbook,
        "run_id": run.run_id,
        "hosts": [h.to_json() for h in run.hosts],
        "summary": summary(hosts),
    }
    doc["summary"]["failed"] = sum(h.failed for h in run.hosts)
    doc["summary"]["skipped"] = sum(h.status == SKIPPED for h in run.hosts)
    return doc
