"""`fleet report`: audit (or read a saved `fleet audit --json`), record the run in the history,
compute drift and waivers, render every asked-for format, write the files, notify.

Everything a user can get wrong (formats, paths, waiver file, --from file, history file,
inventory, playbook) is checked before any host is contacted (exit 2).
"""

from __future__ import annotations

import argparse
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path

from fleet.config.targets import AuditRequest
from fleet.errors import UsageError
from fleet.model import AuditRun
from fleet.report.data import ReportData
from fleet.report.drift import Drift, compute_drift
from fleet.report.history import WAIVER_EXPIRED, WAIVER_IN_EFFECT, History, default_history_path
from fleet.report.notify import NotifyError, payload, post_json
from fleet.report.waivers import Waiver, WaiverOutcome, apply_waivers, load_waivers
from fleet.transport.fanout import ProgressFactory

CPU_POINTS = 120  # runs shown in each host's CPU chart
DEFAULT_KEEP_DAYS = 90


@dataclass(frozen=True)
class ReportRequest:
    audit: AuditRequest = field(default_factory=AuditRequest)  # the targets, when auditing
    formats: list[str] | None = None
    output: Path | None = None
    from_file: Path | None = None
    history: Path | None = None
    keep_days: int = DEFAULT_KEEP_DAYS
    waivers: Path | None = None
    webhook: str | None = None
    webhook_timeout: float = 10.0
    profile: bool = False  # profile each host beside its audit (fleet.profile)

    @classmethod
    def from_namespace(cls, args: argparse.Namespace) -> ReportRequest:
        """Every field from fleet report's options; none is left out silently."""
        own = {f.name: getattr(args, f.name) for f in fields(cls) if f.name != "audit"}
        return cls(audit=AuditRequest.from_namespace(args), **own)


@dataclass
class ReportResult:
    """The run's report data (fleet.render.report_files renders and writes it) and what was
    worth a warning on the way."""

    data: ReportData
    warnings: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return self.data.exit_code()


AuditFn = Callable[[], tuple[AuditRun, str]]


def _prepare_audit(
    req: AuditRequest, progress: ProgressFactory | None, warnings: list[str], profile: bool
) -> AuditFn:
    """Load inventory and playbook now (their errors are exit 2); audit when called."""
    from fleet.audit.run import audit_fleet, prepare

    hosts, ctx, playbook_path = prepare(req)
    warnings += ctx.warnings
    if profile:
        from fleet.profile.run import probe_beside_profile

        if not req.cpu_window:
            raise UsageError("--profile samples over the CPU window: give --cpu-window 1 or more")
        work = probe_beside_profile()
        return lambda: (audit_fleet(hosts, ctx, progress, work), str(playbook_path))
    return lambda: (audit_fleet(hosts, ctx, progress), str(playbook_path))


def _prepare_source(
    req: ReportRequest, progress: ProgressFactory | None, warnings: list[str]
) -> tuple[AuditFn, str]:
    if req.from_file is None:
        return _prepare_audit(req.audit, progress, warnings, req.profile), "audit"
    if req.audit.limit:
        raise UsageError("--limit selects inventory hosts; it does not apply to --from")
    if req.profile:
        raise UsageError("--profile samples hosts now; it does not apply to --from")
    from fleet.report.saved_audit import load_audit_file

    loaded = load_audit_file(req.from_file)
    return (lambda: loaded), str(req.from_file)


def record(
    history: History,
    run: AuditRun,
    playbook: str,
    source: str,
    waivers: WaiverOutcome,
    keep_days: int,
    now: datetime,
) -> tuple[int, Drift]:
    """Store the run and compute its drift in one transaction (all or nothing)."""
    names = [h.name for h in run.hosts]
    marks = {k: WAIVER_EXPIRED if m.expired else WAIVER_IN_EFFECT for k, m in waivers.marks.items()}
    with history.transaction():
        ref = history.add_run(run, playbook, source, now.strftime("%Y-%m-%dT%H:%M:%SZ"))
        past = history.past(names, ref.id)
        drift, streaks = compute_drift(run.hosts, run.started_at, past, waivers.waived)
        history.add_results(ref.id, run.hosts, streaks, marks)
        history.prune(keep_days, now, keep_run=ref.id)
    return ref.id, drift


def run_report(
    req: ReportRequest,
    progress: ProgressFactory | None = None,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> ReportResult:
    """Audit (or load --from), apply waivers, record in the history with its drift. The
    inventory, playbook, waivers and webhook URL are checked before any host is contacted."""
    if req.webhook and not req.webhook.startswith(("http://", "https://")):
        raise UsageError("--notify-webhook: an http:// or https:// URL is needed")
    waivers: list[Waiver] = load_waivers(req.waivers) if req.waivers else []
    warnings: list[str] = []
    get_run, source = _prepare_source(req, progress, warnings)
    history = History(req.history or default_history_path())
    try:
        run, playbook = get_run()  # hosts are contacted here, not before
        outcome = apply_waivers(run.hosts, waivers, now().date())
        warnings += outcome.warnings()
        run_id: int | None = None
        series: dict[str, list[tuple[str, float | None]]] = {}
        try:
            run_id, drift = record(history, run, playbook, source, outcome, req.keep_days, now())
            series = history.cpu_series([h.name for h in run.hosts], CPU_POINTS)
        except sqlite3.Error as exc:
            # The audit is done and its reports are still worth writing (a .prom left stale
            # alerts nobody): report without drift, and say so.
            drift = Drift(unavailable=f"history {history.path}: {exc}")
            warnings.append(f"{history.path}: run not recorded: {exc}")
    finally:
        history.close()
    data = ReportData(run, playbook, drift, outcome, series, run_id, source)
    return ReportResult(data, warnings)


def notify_drift(req: ReportRequest, data: ReportData) -> list[str]:
    """POST the drift to --notify-webhook when there is any (after the reports are written);
    a delivery failure is a warning, never the run's failure."""
    if not req.webhook or not data.drift.changed:
        return []
    try:
        post_json(req.webhook, payload(data), timeout=req.webhook_timeout)
    except NotifyError as exc:
        return [f"notify: {exc}"]
    return []
