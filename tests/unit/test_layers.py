"""The house's layers: the model and everything that only reads results load no SSH."""

from __future__ import annotations

import ast
import pkgutil
import subprocess
import sys
from pathlib import Path

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
    "fleet.profile.stacks",
    "fleet.profile.counters",
    "fleet.profile.judge",
    "fleet.profile.checks",
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

    assert sorted(checks.CHECKS.by_id) == sorted(CHECK_IDS)
    with pytest.raises(ValueError, match="not a check id"):
        checks.check("tracing.typo")


def test_every_fix_id_has_one_planner_in_the_kernels_order() -> None:
    from fleet.model import FIX_IDS
    from fleet.remediate import plan as fixes

    assert list(fixes.PLANNERS.by_id) == list(FIX_IDS)
    with pytest.raises(ValueError, match="not a fix id"):
        fixes.planner("kprobes.typo")


# The flow, bottom first: a module may import its own folder and the layers below it, never
# a layer above or beside it (transport and remote, remediate and report stand side by side).
LAYERS: list[set[str]] = [
    {"fleet", "fleet.model", "fleet.errors"},
    {"fleet.config"},
    {"fleet.transport", "fleet.remote"},
    {"fleet.audit"},
    {"fleet.profile"},
    {"fleet.remediate", "fleet.report"},
    {"fleet.render"},
    {"fleet.cli"},
    {"fleet.__main__"},
]
# The lab fleet is a tool beside the product: it may use the bottom layers only.
BESIDE = {"fleet.lab": 1}
FLEET = Path(fleet.render.__path__[0]).parent


def _home(module: str) -> str:
    """The layer entry a module belongs to: fleet.audit.facts -> fleet.audit."""
    parts = module.split(".")
    return ".".join(parts[:2]) if len(parts) > 1 else module


def _rank(module: str) -> int:
    home = _home(module)
    if home in BESIDE:
        return BESIDE[home]
    return next(i for i, layer in enumerate(LAYERS) if home in layer)


def _imports(path: Path, module: str) -> set[str]:
    """Every fleet module `path` imports, at the top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolved against this module's package
                base = module.rsplit(".", node.level)[0]
                name = f"{base}.{node.module}" if node.module else base
            else:
                name = node.module or ""
            found.add(name)
            found |= {f"{name}.{a.name}" for a in node.names if (FLEET / f"{a.name}").is_dir()}
    return {m for m in found if m == "fleet" or m.startswith("fleet.")}


def _modules() -> list[tuple[str, Path]]:
    out = []
    for path in sorted(FLEET.rglob("*.py")):
        rel = path.relative_to(FLEET.parent).with_suffix("")
        parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
        out.append((".".join(parts), path))
    return out


def _wrong_way(module: str, targets: set[str]) -> list[str]:
    """The imports of `module` that go up or sideways."""
    rank, home = _rank(module), _home(module)
    return sorted(
        f"{module} imports {t}"
        for t in targets
        if t != "fleet" and _home(t) != home and _rank(t) >= rank
    )


def test_imports_flow_one_way_from_the_model_up_to_the_cli() -> None:
    wrong = [w for module, path in _modules() for w in _wrong_way(module, _imports(path, module))]
    assert not wrong, "\n".join(wrong)


def test_the_direction_rule_refuses_upward_and_sideways_imports() -> None:
    assert _wrong_way("fleet.model", {"fleet.render.html"}) == [
        "fleet.model imports fleet.render.html"
    ]
    assert _wrong_way("fleet.report.run", {"fleet.remediate.host"})  # side by side
    assert _wrong_way("fleet.lab.trees", {"fleet.audit.facts"})  # the lab stays low
    assert not _wrong_way("fleet.audit.facts", {"fleet.audit.cpu", "fleet.remote.probe"})
    assert not _wrong_way("fleet.cli", {"fleet.render.table", "fleet.model"})
