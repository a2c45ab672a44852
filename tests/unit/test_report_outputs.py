"""Where each format goes (--format FMT[:PATH], -o), atomic writes, and --from files."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from fleet.config.outfile import write_atomic
from fleet.errors import UsageError
from fleet.render.json_out import audit_document, render_json
from fleet.render.report_files import Output, plan_outputs
from fleet.report.saved_audit import AuditFileError, load_audit_file
from tests.reportkit import host, run


def test_default_is_a_table_on_stdout_or_the_format_the_suffix_names() -> None:
    assert plan_outputs(None, None) == [Output("table", None)]
    assert plan_outputs(None, Path("report.html")) == [Output("html", Path("report.html"))]
    assert plan_outputs(None, Path("out.prom")) == [Output("prometheus", Path("out.prom"))]
    assert plan_outputs(None, Path("report")) == [Output("table", Path("report"))]


def test_one_format_goes_to_o_several_go_into_the_o_directory() -> None:
    assert plan_outputs(["json"], Path("r.json")) == [Output("json", Path("r.json"))]
    assert plan_outputs(["html", "junit", "prom"], Path("out")) == [
        Output("html", Path("out/report.html")),
        Output("junit", Path("out/report.xml")),
        Output("prometheus", Path("out/report.prom")),
    ]


def test_a_format_may_name_its_own_path_and_one_other_goes_to_stdout() -> None:
    plan = plan_outputs(["table", "prometheus:/var/lib/node/fleet.prom", "md:r.md"], None)
    assert plan == [
        Output("prometheus", Path("/var/lib/node/fleet.prom")),
        Output("markdown", Path("r.md")),
        Output("table", None),
    ]


@pytest.mark.parametrize(
    ("formats", "output", "message"),
    [
        (["pdf"], None, "unknown report format 'pdf'"),
        (["html", "json"], None, "only one format can go to stdout"),
        (["json", "json"], Path("d"), "the same format twice"),
        (["html:"], None, "empty path"),
        (["html:a.out", "json:a.out"], None, "same file"),
    ],
)
def test_impossible_plans_are_usage_errors(
    formats: list[str], output: Path | None, message: str
) -> None:
    with pytest.raises(UsageError, match=message):
        plan_outputs(formats, output)


def test_several_formats_refuse_an_existing_file_as_directory(tmp_path: Path) -> None:
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(UsageError, match="directory"):
        plan_outputs(["html", "json"], f)


def test_atomic_write_replaces_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "fleet.prom"
    target.write_text("old\n")
    inode = target.stat().st_ino
    write_atomic(target, "new\n")
    assert target.read_text() == "new\n"
    assert target.stat().st_ino != inode  # a new file renamed over, never rewritten in place
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fleet.prom"]
    assert target.stat().st_mode & 0o777 == 0o644 & ~_umask()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_a_device_or_fifo_is_written_in_place_never_replaced(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        write_atomic(fifo, "through the pipe\n")
        assert os.read(reader, 100) == b"through the pipe\n"
    finally:
        os.close(reader)
    assert fifo.is_fifo() and sorted(p.name for p in tmp_path.iterdir()) == ["pipe"]


def test_atomic_write_into_a_missing_directory_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="cannot write"):
        write_atomic(tmp_path / "no" / "such" / "r.html", "x")


def test_from_reads_back_exactly_what_audit_json_writes(tmp_path: Path) -> None:
    r = run([host("a", failing=("netdata.ebpf",), system_pct=71.5), host("b", unreachable="x")])
    path = tmp_path / "audit.json"
    path.write_text(render_json(audit_document(r, "audit", "pb.yml")))
    loaded, playbook = load_audit_file(path)
    assert playbook == "pb.yml"
    assert audit_document(loaded, "audit", playbook) == audit_document(r, "audit", "pb.yml")


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.update(schema=2), "schema 2"),
        (lambda d: d.update(command="remediate"), "written by 'fleet remediate'"),
        (lambda d: d["hosts"][0].pop("status"), "hosts[0]: missing 'status'"),
        (lambda d: d["hosts"][0]["checks"][0].update(status="meh"), "unknown check status 'meh'"),
        (lambda d: d["hosts"][0].update(port="22"), "hosts[0].port: unexpected str"),
        (lambda d: d["hosts"][0].update(port=True), "hosts[0].port: unexpected bool"),
        (lambda d: d.update(started_at="yesterday"), "not an ISO 8601 UTC time"),
        (lambda d: d["hosts"].append(d["hosts"][0]), "listed twice"),
    ],
)
def test_a_bad_from_file_is_one_line_naming_the_file(
    tmp_path: Path, mutate: object, message: str
) -> None:
    doc = audit_document(run([host("a", failing=("netdata.ebpf",))]), "audit", "pb.yml")
    mutate(doc)  # type: ignore[operator]
    path = tmp_path / "audit.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(AuditFileError) as exc:
        load_audit_file(path)
    text = str(exc.value)
    assert text.startswith(f"{path}: ") and "\n" not in text and message in text, text


def test_from_file_that_is_not_json_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "audit.json"
    path.write_text('{\n  "schema": 1,\n  oops\n}\n')
    with pytest.raises(AuditFileError, match=rf"^{path}:3: not JSON"):
        load_audit_file(path)
    with pytest.raises(AuditFileError, match="no such file"):
        load_audit_file(tmp_path / "missing.json")
