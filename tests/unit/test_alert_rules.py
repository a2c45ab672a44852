"""docs/alerts.yml as Prometheus reads it (promtool, from Debian's prometheus package), and
its lines in step with the default playbook's profile limits."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from fleet.config.playbook import default_playbook_path, load_playbook

DOCS = Path(__file__).parents[2] / "docs"


def promtool() -> str:
    found = shutil.which("promtool") or shutil.which(
        "promtool", path=str(Path(sys.executable).parent)
    )
    if found is None:
        message = "promtool not installed: make promtool (make test does)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return found


def test_promtool_accepts_the_rules_and_their_unit_tests_pass() -> None:
    tool = promtool()
    check = subprocess.run([tool, "check", "rules", "alerts.yml"], cwd=DOCS, capture_output=True)
    assert check.returncode == 0, check.stdout.decode() + check.stderr.decode()
    assert b"SUCCESS: 6 rules found" in check.stdout
    test = subprocess.run([tool, "test", "rules", "alerts.test.yml"], cwd=DOCS, capture_output=True)
    assert test.returncode == 0, test.stdout.decode() + test.stderr.decode()


def test_a_rule_that_stops_firing_fails_promtools_unit_test(tmp_path: Path) -> None:
    # The unit tests can fail: with the probe line moved above the incident's share, the
    # expected alert does not fire.
    tool = promtool()
    rules = (DOCS / "alerts.yml").read_text().replace('kind="hooks"} > 0.02', 'kind="hooks"} > 0.5')
    (tmp_path / "alerts.yml").write_text(rules)
    (tmp_path / "alerts.test.yml").write_text((DOCS / "alerts.test.yml").read_text())
    test = subprocess.run(
        [tool, "test", "rules", "alerts.test.yml"], cwd=tmp_path, capture_output=True
    )
    assert test.returncode != 0 and b"FleetProbeShareHigh" in test.stdout + test.stderr


def test_the_rules_lines_are_the_playbooks_profile_limits() -> None:
    limits = load_playbook(default_playbook_path()).profile
    rules = {
        r["alert"]: r["expr"]
        for g in yaml.safe_load((DOCS / "alerts.yml").read_text())["groups"]
        for r in g["rules"]
    }

    def line(alert: str) -> float:
        return float(re.findall(r">\s*([0-9.]+)\s*$", rules[alert])[0])

    assert line("FleetProbeShareHigh") == pytest.approx(limits.probe_share_pct / 100)
    assert line("FleetSpinLockShareHigh") == pytest.approx(limits.lock_spin_pct / 100)
    assert line("FleetBpfProgramCpuHigh") == pytest.approx(limits.bpf_program_cpu_pct / 100)
