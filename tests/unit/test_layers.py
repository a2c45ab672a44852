"""The house's layers: the model and everything that only reads results load no SSH."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import pytest

import fleet.render

# Everything that turns results into text or files, and what it reads them from.
READERS_OF_RESULTS = [
    "fleet.model",
    "fleet.report.drift",
    "fleet.report.history",
    "fleet.report.waivers",
    "fleet.report.data",
    "fleet.report.saved_audit",
    *(f"fleet.render.{m.name}" for m in pkgutil.iter_modules(fleet.render.__path__)),
]


@pytest.mark.parametrize("module", READERS_OF_RESULTS)
def test_reading_results_does_not_load_ssh(module: str) -> None:
    # A fresh interpreter: this test process has paramiko loaded by other tests.
    code = (
        f"import sys, {module}\n"
        "ssh = ('paramiko', 'fabric', 'fleet.transport.ssh', 'fleet.audit.run')\n"
        "loaded = sorted(m for m in ssh if m in sys.modules)\n"
        "print(','.join(loaded))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == "", f"importing {module} loads {out}"


def test_every_built_in_check_id_has_one_function_and_nothing_else_registers() -> None:
    from fleet.audit import checks
    from fleet.model import CHECK_IDS

    assert sorted(checks._REGISTRY) == sorted(CHECK_IDS)
    with pytest.raises(ValueError, match="not a check id"):
        checks.check("tracing.typo")


def test_every_fix_id_has_one_planner_in_the_kernels_order() -> None:
    from fleet.remediate import plan as fixes
    from fleet.model import FIX_IDS

    assert list(fixes._PLANNERS) == list(FIX_IDS)
    with pytest.raises(ValueError, match="not a fix id"):
        fixes.planner("kprobes.typo")
