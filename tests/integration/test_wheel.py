"""fleet as users install it: a wheel built from the checkout, in a fresh venv outside it.

Every other test imports fleet from the checkout (`pip install -e`), which hides files that
only exist next to it (the default playbook once did). Here the wheel is built from the
tracked files alone, installed with its dependencies into a new venv, and the installed
`fleet` runs the lab, audits it, remediates a host and rolls it back from a directory that
has no checkout in it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleet import __version__
from tests.integration.conftest import fleet_env

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def _tracked_copy(dest: Path) -> Path:
    """The files git knows (committed or not, never ignored ones), symlinks kept as links:
    what a clean clone would build from."""
    listing = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout
    for name in filter(None, listing.decode().split("\0")):
        src, dst = REPO / name, dest / name
        if not src.is_symlink() and not src.exists():
            continue  # deleted in the work tree, not yet in the index
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_symlink():
            dst.symlink_to(os.readlink(src))
        else:
            shutil.copy2(src, dst)
    return dest


def _run(argv: list[str | Path], cwd: Path, env: dict[str, str], timeout: float = 300):  # type: ignore[no-untyped-def]
    return subprocess.run(
        [str(a) for a in argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, str]]]:
    """(bin dir of a fresh venv holding the fleet wheel, environment to run it with)."""
    work = tmp_path_factory.mktemp("wheel")
    src = _tracked_copy(work / "src")
    dist = work / "dist"
    built = _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", dist, src],
                 cwd=work, env=dict(os.environ))
    assert built.returncode == 0, built.stderr
    wheels = list(dist.glob("fleet-*.whl"))
    assert len(wheels) == 1, wheels
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", venv], check=True)
    pip = _run([venv / "bin" / "pip", "install", "-q", wheels[0]], cwd=work, env=dict(os.environ))
    assert pip.returncode == 0, pip.stderr
    env = fleet_env()
    env.pop("PYTHONPATH", None)
    env.pop("FLEET_PLAYBOOK", None)
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env['PATH']}"
    env["FLEET_STATE_DIR"] = str(work / "state")
    yield venv / "bin", env


def test_installed_fleet_is_the_wheel_not_the_checkout(
    installed: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    bindir, env = installed
    where = _run([bindir / "python", "-c", "import fleet; print(fleet.__file__)"], tmp_path, env)
    assert "site-packages" in where.stdout and str(REPO) not in where.stdout, where
    for argv in ([bindir / "fleet", "--version"], [bindir / "python", "-m", "fleet", "--version"]):
        out = _run(argv, tmp_path, env)
        assert (out.returncode, out.stdout.strip()) == (0, f"fleet {__version__}"), out


def test_installed_fleet_audits_remediates_and_rolls_back_the_lab(
    installed: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    bindir, env = installed
    fleet = bindir / "fleet"
    state, inventory = tmp_path / "lab", tmp_path / "inventory.yml"
    up = _run([fleet, "lab", "up", "--hosts", "2", "--scenario", "incident",
               "--state-dir", state, "--inventory-out", inventory], tmp_path, env)
    try:
        assert up.returncode == 0, up.stderr
        audit = _run([fleet, "audit", "-i", inventory, "--cpu-window", "1", "--json"],
                     tmp_path, env)
        assert audit.returncode == 1, audit.stderr  # the contract's "non-compliant"
        doc = json.loads(audit.stdout)
        # The packaged default playbook ran: every built-in check reported on every host.
        assert "site-packages" in doc["playbook"]
        assert {h["status"] for h in doc["hosts"]} == {"non-compliant"}
        assert len(doc["hosts"][0]["checks"]) == 7

        # Dask is an extra: without it --scheduler is a usage error before any host is touched.
        nodask = _run([fleet, "audit", "-i", inventory, "--scheduler", "tcp://127.0.0.1:9"],
                      tmp_path, env)
        assert nodask.returncode == 2 and nodask.stdout == "", nodask
        assert nodask.stderr.strip().splitlines() == [
            "fleet: error: --scheduler tcp://127.0.0.1:9: Dask is not installed: "
            "pip install 'fleet[dask]'"
        ]

        # fold.awk and the lab's captured perf samples ship in the wheel: perf's samples are
        # folded on the host and charged to the incident's probes.
        prof = _run([fleet, "profile", "-i", inventory, "--window", "1", "--json"], tmp_path, env)
        assert prof.returncode == 1, prof.stderr
        profiled = json.loads(prof.stdout)["hosts"]
        assert all(h["samples"] and h["shares_pct"]["probe"] > 10 for h in profiled), profiled

        host = doc["hosts"][0]["name"]
        fixed = _run([fleet, "remediate", "-i", inventory, "--host", host, "--apply", "--yes",
                      "--cpu-window", "1", "--settle", "0", "--json"], tmp_path, env)
        assert fixed.returncode == 0, fixed.stderr
        assert json.loads(fixed.stdout)["hosts"][0]["status"] == "compliant"

        back = _run([fleet, "rollback", "-i", inventory, "--host", host], tmp_path, env)
        assert back.returncode == 0, back.stderr
        again = _run([fleet, "audit", "-i", inventory, "--cpu-window", "0", "--json",
                      "--limit", host], tmp_path, env)
        assert json.loads(again.stdout)["hosts"][0]["status"] == "non-compliant"
    finally:
        down = _run([fleet, "lab", "down", "--state-dir", state], tmp_path, env)
        assert down.returncode == 0, down.stderr
