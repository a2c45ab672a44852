"""`make bench` plumbing that needs no lab: the floor's inputs, summaries, targets, run order."""

from __future__ import annotations

import importlib.util
import json
import sys
from dataclasses import asdict
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


floor = _load("floor")
run = _load("run")


def target(i: int) -> object:
    return floor.Target(f"h{i}", "127.0.0.1", 2222, "root", "/k", "/kh", f"/roots/h {i}")


def test_targets_file_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "t.tsv"
    targets = [target(i) for i in range(3)]
    floor.write_targets(path, targets)
    assert floor.read_targets(path) == targets


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("h1\t127.0.0.1\t22\n", "t.tsv:1: expected 7 tab-separated fields"),
        ("# comment\nh1\t127.0.0.1\tssh\troot\t/k\t/kh\t/\n", "t.tsv:2: port 'ssh'"),
        ("h1\t127.0.0.1\t70000\troot\t/k\t/kh\t/\n", "port '70000' is not a TCP port"),
        ("# only a comment\n\n", "no targets"),
    ],
)
def test_bad_targets_file_names_the_line(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "t.tsv"
    path.write_text(text)
    with pytest.raises(floor.TargetsError, match=message):
        floor.read_targets(path)


def test_floor_rejects_bad_arguments_before_any_connection(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        floor.parse_args(["--targets", "t", "--forks", "0"])
    assert exc.value.code == 2
    with pytest.raises(SystemExit):
        floor.parse_args(["--forks", "2"])  # --targets is required
    assert floor.main(["--targets", str(tmp_path / "missing")]) == 2
    assert "missing" in capsys.readouterr().err


def runs(tool: str, n: int, walls: list[float], cpus: list[float], ok: bool = True) -> list:
    return [
        run.Run(tool, n, i + 1, w, c * 0.75, c * 0.25, 50_000 + i, ok)
        for i, (w, c) in enumerate(zip(walls, cpus, strict=True))
    ]


def test_summary_takes_medians_of_good_runs_and_ratios_to_the_floor() -> None:
    rs = (
        runs("floor", 200, [3.0, 3.2, 3.1], [1.0, 1.2, 1.1])
        + runs("fleet", 200, [3.3, 3.6, 3.4], [1.2, 1.4, 1.3])
        + runs("fleet", 200, [99.0], [99.0], ok=False)
    )
    by_tool = {s.tool: s for s in run.summarise(rs)}
    fleet = by_tool["fleet"]
    assert fleet.runs == 3 and fleet.wall_median_s == 3.4
    assert (fleet.wall_min_s, fleet.wall_max_s) == (3.3, 3.6)
    assert fleet.cpu_per_host_ms == 6.5
    assert fleet.hosts_per_s == round(200 / 3.4, 1)
    assert fleet.wall_ratio == round(3.4 / 3.1, 2) and fleet.cpu_ratio == round(1.3 / 1.1, 2)
    assert by_tool["floor"].wall_ratio == 1.0
    json.dumps([asdict(s) for s in run.summarise(rs)])  # results.json stays serialisable


def test_targets_are_judged_from_the_summary() -> None:
    rs = []
    for n, floor_wall, fleet_wall in ((50, 1.0, 1.1), (200, 3.0, 3.3), (1000, 15.0, 16.0)):
        rs += runs("floor", n, [floor_wall], [n * 0.005])
        rs += runs("fleet", n, [fleet_wall], [n * 0.007])  # CPU 1.4x the floor: not met
    rs += runs("ansible-raw", 200, [20.0], [15.0]) + runs("ansible-shell", 200, [30.0], [20.0])
    rs += runs("pyinfra", 200, [4.0], [2.0])
    targets = {t["target"]: t for t in run.check_targets(run.summarise(rs), 42.0)}
    assert targets["fleet wall / floor wall at N=200 <= 1.2"]["met"]
    assert not targets["fleet CPU per host / floor's at N=1000 <= 1.3"]["met"]
    assert targets["ansible-raw wall / fleet wall at N=200 >= 5"]["met"]  # 20 / 3.3
    assert not targets["ansible-shell wall / fleet wall at N=200 >= 10"]["met"]  # 30 / 3.3
    assert targets["pyinfra wall / fleet wall at N=200 >= 1"]["value"] == 1.21
    assert targets["fleet peak RSS MB at N=1000 <= 150"]["met"]
    assert targets["`fleet --help` start-up ms <= 150"]["met"]
    linear = next(t for name, t in targets.items() if "linear" in name)
    assert linear["value"] == round((16.0 - 3.3) / 800 / ((3.3 - 1.1) / 150), 2)
    assert not any("N=50" in name for name in targets)  # too small to judge


def test_rounds_interleave_and_rotate_so_no_tool_always_goes_first() -> None:
    order = run.interleave(["a", "b", "c"], 3)
    assert order == [
        (1, "a"), (1, "b"), (1, "c"),
        (2, "b"), (2, "c"), (2, "a"),
        (3, "c"), (3, "a"), (3, "b"),
    ]  # fmt: skip


def test_table_has_one_row_per_tool_and_size() -> None:
    rs = runs("floor", 200, [3.0], [1.0]) + runs("fleet", 200, [3.3], [1.2])
    text = run.render_table(run.summarise(rs))
    lines = text.splitlines()
    assert lines[0].split()[:2] == ["N", "tool"] and len(lines) == 4
    assert lines[2].split()[1] == "fleet" and lines[3].split()[1] == "floor"
    assert lines[2].split()[-3:] == ["1.10", "1.20", "-"]  # wall and CPU x floor, sshd


def test_bench_arguments_add_the_all_tools_size_to_the_scale() -> None:
    args = run.parse_args(["--hosts", "300", "--scale", "50 1000", "--tools", "fleet,floor"])
    assert args.sizes == [50, 300, 1000] and args.tool_list == ["fleet", "floor"]
    with pytest.raises(SystemExit):
        run.parse_args(["--tools", "fleet,chef"])
