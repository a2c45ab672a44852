"""fleet report over the real sshd lab: the JSON contract plus drift, drift between two real
runs, --from, waivers, every format in one run, the textfile export and the webhook."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from fleet import lab
from tests.integration.conftest import fleet_env, run_fleet
from tests.webhook import Hook

AUDIT_KEYS = {"schema", "command", "started_at", "finished_at", "playbook", "hosts", "summary"}


def report(state: Path, *args: str | Path) -> subprocess.CompletedProcess[str]:
    """`fleet report` as cron runs it, with its own state directory (history lives there)."""
    env = {**fleet_env(), "FLEET_STATE_DIR": str(state)}
    return subprocess.run(
        [sys.executable, "-m", "fleet.cli", "report", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


def quick(info: lab.LabInfo, limit: str | None = None) -> tuple[str | Path, ...]:
    """Target options for a fast lab report: no CPU window, optionally one group."""
    return ("-i", info.inventory, "--cpu-window", "0", *(("--limit", limit) if limit else ()))


def lab_hosts(info: lab.LabInfo) -> dict[str, dict[str, Any]]:
    """Lab host name -> its inventory vars (fleet_root, ...)."""
    doc = yaml.safe_load(info.inventory.read_text())
    hosts: dict[str, dict[str, Any]] = {}
    for group in doc["all"]["children"].values():
        hosts.update(group["hosts"])
    return hosts


def served_by(info: lab.LabInfo, path: Path, mapping: dict[str, str]) -> Path:
    """An inventory of made-up hosts, each served by the tree of the lab host whose name
    starts with the mapped scenario ("down": nothing listens). Changing the mapping between
    two runs changes what those hosts look like, as a real fleet drifts."""
    doc = yaml.safe_load(info.inventory.read_text())
    by_scenario = {name.rsplit("-", 1)[0]: v for name, v in lab_hosts(info).items()}
    hosts = {name: dict(by_scenario[scenario]) for name, scenario in mapping.items()}
    path.write_text(yaml.safe_dump({"all": {"vars": doc["all"]["vars"], "hosts": hosts}}))
    return path


def test_json_is_the_audit_contract_plus_drift_and_waivers(
    lab6: lab.LabInfo, tmp_path: Path
) -> None:
    proc = report(tmp_path / "state", *quick(lab6), "--format", "json")
    assert proc.returncode == 5, proc.stderr
    doc = json.loads(proc.stdout)
    assert set(doc) == AUDIT_KEYS | {"drift", "waivers"}
    assert doc["schema"] == 1 and doc["command"] == "report"
    assert doc["summary"] == {
        "hosts": 6,
        "compliant": 1,
        "non_compliant": 3,
        "unreachable": 1,
        "error": 1,
    }
    assert [h["name"] for h in doc["hosts"]] == lab6.hosts
    drift = doc["drift"]
    assert drift["run_id"] == 1 and drift["previous_run"] is None and drift["changed"]
    assert {c["host"] for c in drift["new_failures"]} == {
        lab6.hosts[0],
        lab6.hosts[2],
        lab6.hosts[3],
    }
    assert [h["host"] for h in drift["became_unreachable"]] == [lab6.hosts[5]]
    assert doc["waivers"] == []
    # the history went to the state directory, private
    history = tmp_path / "state" / "history.sqlite"
    assert history.stat().st_mode & 0o777 == 0o600
    assert "Traceback" not in proc.stderr


def test_drift_between_two_lab_runs_in_every_format(lab6: lab.LabInfo, tmp_path: Path) -> None:
    state, out = tmp_path / "state", tmp_path / "out"
    inv = tmp_path / "fleet.yml"
    formats = ["table", "markdown", "json", "html", "junit", "prometheus"]
    fmt_args = [a for f in formats for a in ("--format", f)]

    served_by(
        lab6,
        inv,
        {"web-a": "clean", "web-b": "half-fixed", "web-c": "clean", "web-d": "tracefs-only"},
    )
    first = report(state, "-i", inv, "--cpu-window", "0", "--format", "json")
    assert first.returncode == 1, first.stderr
    since = json.loads(first.stdout)["started_at"]

    # web-a picks up a tracepoint, web-b gets fixed, web-c goes dark, web-d stays broken
    served_by(
        lab6,
        inv,
        {"web-a": "tracefs-only", "web-b": "clean", "web-c": "down", "web-d": "tracefs-only"},
    )
    second = report(state, "-i", inv, "--cpu-window", "0", *fmt_args, "-o", out)
    assert second.returncode == 5, second.stderr
    assert second.stdout == ""
    names = sorted(p.name for p in out.iterdir())
    assert names == [f"report.{ext}" for ext in ("html", "json", "md", "prom", "txt", "xml")]
    assert second.stderr == ""  # silent on success: cron mails nothing

    drift = json.loads((out / "report.json").read_text())["drift"]
    assert drift["run_id"] == 2 and drift["previous_run"]["id"] == 1
    assert [(c["host"], c["check"]) for c in drift["new_failures"]] == [
        ("web-a", "tracing.set_event")
    ]
    assert [(c["host"], c["check"], c["since"]) for c in drift["fixed"]] == [
        ("web-b", "netdata.ebpf", since)
    ]
    assert [h["host"] for h in drift["became_unreachable"]] == ["web-c"]
    assert [(c["host"], c["check"], c["since"]) for c in drift["still_failing"]] == [
        ("web-d", "tracing.set_event", since)
    ]

    table = (out / "report.txt").read_text()
    assert table.startswith("Drift since run 1 (")
    assert table.index("New failures (1)") < table.index("HOST ")
    md = (out / "report.md").read_text()
    headings = re.findall(r"^## (.*)$", md, re.M)
    assert headings[0].startswith("Drift since run 1") and headings[1] == "Summary"
    html = (out / "report.html").read_text()
    assert html.index('id="drift"') < html.index('id="hosts"')
    suites = ET.fromstring((out / "report.xml").read_bytes()).findall("testsuite")
    assert [s.get("name") for s in suites] == ["web-a", "web-b", "web-c", "web-d"]
    fams = {f.name: f for f in text_string_to_metric_families((out / "report.prom").read_text())}
    up = {s.labels["host"]: s.value for s in fams["fleet_host_up"].samples}
    assert up == {"web-a": 1, "web-b": 1, "web-c": 0, "web-d": 1}
    drift_metric = {s.labels["kind"]: s.value for s in fams["fleet_drift"].samples}
    assert drift_metric["new_failures"] == 1 and drift_metric["fixed"] == 1


def test_from_a_saved_audit_gives_the_live_audits_hosts_and_exit_code(
    lab6: lab.LabInfo, tmp_path: Path
) -> None:
    saved = tmp_path / "audit.json"
    audit = run_fleet("audit", "-i", lab6.inventory, "--cpu-window", "1", "--json", "-o", saved)
    proc = report(tmp_path / "state", "--from", saved, "--format", "json")
    assert proc.returncode == audit.returncode == 5, proc.stderr
    doc, original = json.loads(proc.stdout), json.loads(saved.read_text())
    assert doc["hosts"] == original["hosts"] and doc["summary"] == original["summary"]
    assert (doc["started_at"], doc["playbook"]) == (original["started_at"], original["playbook"])
    assert doc["hosts"][0]["cpu"]["per_cpu"]  # CPU figures survive the round trip


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not json at all", ":1: not JSON"),
        ('{"schema": 2}', "schema 2, this fleet reads schema 1"),
        ('{"schema": 1, "command": "audit"}', "missing 'hosts'"),
    ],
)
def test_a_bad_from_file_is_exit_2_and_one_line(tmp_path: Path, content: str, message: str) -> None:
    bad = tmp_path / "audit.json"
    bad.write_text(content)
    proc = report(tmp_path / "state", "--from", bad)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith(f"fleet: error: {bad}") and message in proc.stderr
    assert not (tmp_path / "state" / "history.sqlite").exists()


def test_limit_does_not_apply_to_from(tmp_path: Path) -> None:
    proc = report(tmp_path / "state", "--from", tmp_path / "a.json", "--limit", "web*")
    assert proc.returncode == 2 and "--limit" in proc.stderr


def _connections(info: lab.LabInfo) -> int:
    return (info.state_dir / "sshd.log").read_text(errors="replace").count("Connection from")


def test_a_broken_waiver_file_is_exit_2_naming_file_and_line_before_any_host_is_contacted(
    lab6: lab.LabInfo, tmp_path: Path
) -> None:
    waivers = tmp_path / "waivers.yml"
    waivers.write_text(
        "waivers:\n  - host: '*'\n    check: netdata.ebpf\n    reason: r\n    owner: o\n"
        "  - host: '*'\n    check: cpu.system\n    reason: r\n    owner: o\n    expires: soon\n"
    )
    before = _connections(lab6)
    proc = report(tmp_path / "state", "-i", lab6.inventory, "--waivers", waivers)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr == f"fleet: error: {waivers}:2: waiver 1: missing 'expires' " + (
        "(a waiver without an end is a new rule)\n"
    )
    assert _connections(lab6) == before
    # positive control: the same command with a good waiver file does connect
    waivers.write_text("waivers: []\n")
    proc = report(tmp_path / "state", *quick(lab6, "lab_clean"), "--waivers", waivers)
    assert proc.returncode == 0 and _connections(lab6) > before


def write_waivers(path: Path, *entries: tuple[str, str, str]) -> Path:
    path.write_text(
        yaml.safe_dump(
            {
                "waivers": [
                    {
                        "host": h,
                        "check": c,
                        "reason": "CHG-1234",
                        "owner": "ops@example.com",
                        "expires": e,
                    }
                    for h, c, e in entries
                ]
            }
        )
    )
    return path


def test_an_active_waiver_makes_the_host_waived_and_the_exit_code_zero(
    lab6: lab.LabInfo, tmp_path: Path
) -> None:
    waivers = write_waivers(tmp_path / "w.yml", ("half-fixed-*", "netdata.ebpf", "2099-12-31"))
    proc = report(tmp_path / "state", *quick(lab6, "lab_half_fixed"), "--waivers", waivers)
    assert proc.returncode == 0, proc.stderr
    assert re.search(rf"^{lab6.hosts[2]}\s+waived\s+-\s+waived: netdata\.ebpf", proc.stdout, re.M)
    assert "until 2099-12-31" in proc.stdout  # the waiver itself is listed, never hidden
    assert proc.stderr == ""


def test_an_expired_waiver_fails_loudly_and_the_failure_counts(
    lab6: lab.LabInfo, tmp_path: Path
) -> None:
    waivers = write_waivers(
        tmp_path / "w.yml",
        ("clean-*", "netdata.ebpf", "2099-12-31"),
        ("half-fixed-*", "netdata.ebpf", "2020-01-01"),
    )
    proc = report(tmp_path / "state", *quick(lab6, "lab_half_fixed"), "--waivers", waivers)
    assert proc.returncode == 1, proc.stderr
    (warning,) = proc.stderr.splitlines()
    assert warning == (
        f"fleet: warning: {waivers}:7: waiver of netdata.ebpf on 'half-fixed-*' (owner "
        f"ops@example.com) expired on 2020-01-01: the failure on {lab6.hosts[2]} counts again"
    )
    assert re.search(
        rf"^{lab6.hosts[2]}\s+non-compliant\s+-\s+netdata\.ebpf \(waiver expired\)",
        proc.stdout,
        re.M,
    )


def test_prometheus_file_is_replaced_atomically_for_the_textfile_collector(
    lab6: lab.LabInfo, tmp_path: Path
) -> None:
    textfile = tmp_path / "textfile"
    textfile.mkdir()
    prom = textfile / "fleet.prom"
    for _ in range(2):
        proc = report(tmp_path / "state", *quick(lab6), "--format", f"prometheus:{prom}")
        assert proc.returncode == 5, proc.stderr
    assert [p.name for p in textfile.iterdir()] == ["fleet.prom"]  # no temp file left
    fams = {f.name: f for f in text_string_to_metric_families(prom.read_text())}
    up = {s.labels["host"]: s.value for s in fams["fleet_host_up"].samples}
    assert up[lab6.hosts[5]] == 0 and up[lab6.hosts[0]] == 1
    failing = {
        (s.labels["host"], s.labels["check"])
        for s in fams["fleet_check_status"].samples
        if s.labels["status"] == "fail" and s.value == 1
    }
    assert (lab6.hosts[0], "kprobes.registered") in failing


def test_webhook_is_posted_when_drift_changed_and_not_when_nothing_moved(
    lab6: lab.LabInfo, tmp_path: Path, hook: Hook
) -> None:
    args = quick(lab6, "lab_incident,lab_clean")
    first = report(tmp_path / "state", *args, "--notify-webhook", hook.url)
    assert first.returncode == 1, first.stderr
    assert len(hook.bodies) == 1  # first run: every failure is new
    body = hook.bodies[0]
    assert body["drift"]["changed"] and body["summary"]["non-compliant"] == 1
    assert body["text"].startswith("fleet report: 4 new failure(s)")

    second = report(tmp_path / "state", *args, "--notify-webhook", hook.url)
    assert second.returncode == 1 and len(hook.bodies) == 1  # nothing moved: no POST


def test_an_unreachable_webhook_is_a_warning_not_a_different_exit_code(
    lab6: lab.LabInfo, tmp_path: Path, hook: Hook
) -> None:
    hook.replies = [500, 500, 500]
    proc = report(tmp_path / "state", *quick(lab6, "lab_incident"), "--notify-webhook", hook.url)
    assert proc.returncode == 1  # the audit's, whatever became of the webhook
    assert "fleet: warning: notify: http://127.0.0.1:" in proc.stderr
    assert "HTTP 500" in proc.stderr and "after 3 attempts" in proc.stderr


def test_the_webhook_secret_appears_in_no_output_history_or_state_file(
    lab6: lab.LabInfo, tmp_path: Path, hook: Hook
) -> None:
    # The URL's path is the secret (Slack/Mattermost style): delivered, failing, and every
    # format written, it must never be printed or stored.
    state = tmp_path / "state"
    secret = hook.url.rsplit("/", 1)[1]
    out = tmp_path / "out"
    formats = ["table", "json", "markdown", "html", "junit", "prometheus"]
    runs = [
        report(state, *quick(lab6), "--notify-webhook", hook.url,
               *(a for f in formats for a in ("--format", f"{f}:{out}.{f}"))),
    ]  # fmt: skip
    hook.replies = [500, 500, 500]
    # Fresh histories: every failure is new, so each run has something to send.
    runs.append(report(tmp_path / "s2", *quick(lab6, "lab_incident"), "--notify-webhook", hook.url))
    hook.stop()  # now nothing answers at all
    runs.append(report(tmp_path / "s3", *quick(lab6, "lab_incident"), "--notify-webhook", hook.url))
    assert runs[0].returncode in (1, 5), runs[0].stderr
    assert len(hook.bodies) == 4 and any("notify" in r.stderr for r in runs[1:])
    for proc in runs:
        assert secret not in proc.stdout + proc.stderr
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.suffix == ".html" for p in written)
    for path in written:
        assert secret.encode() not in path.read_bytes(), path
