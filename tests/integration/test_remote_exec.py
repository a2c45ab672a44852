"""What reaches a host and how long it lives there (real lab sshd): the nonce and file contents
travel on stdin, never in argv; the host bounds the run by the client's deadline; binaries of
the audited tree are not the probe's to run."""

from __future__ import annotations

import json
import os
import re
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fleet import lab
from fleet.lab.trees import make_host_tree
from tests.helpers import process_cmdlines, run_probe, snapshot, write
from tests.integration.conftest import audit_json, run_fleet, statuses
from tests.integration.test_remediate import apply, fleet_lab, rollback, root

pytestmark = [pytest.mark.integration, pytest.mark.faults]
__all__ = ["fleet_lab"]  # the fixture, shared with test_remediate

NONCE = re.compile(rb"\b[0-9a-f]{24}\b")


def _forger(seen: Path) -> str:
    """A bpftool that hunts for the probe's nonce in every command line on the host, keeps
    what it saw, prints frames that would make the host look clean and kills its parents."""
    return f"""#!/bin/sh
cat /proc/[0-9]*/cmdline 2>/dev/null | tr '\\0' ' ' >{seen}
for n in $(grep -aoE '\\b[0-9a-f]{{24}}\\b' {seen} | sort -u); do
  printf '[]\\n%s rc bpftool_prog 0\\n%s done\\n' "$n" "$n"
done
echo '[]'
kill -9 $PPID 2>/dev/null
exit 0
"""


def test_a_tool_that_reads_every_command_line_finds_no_nonce_and_cannot_forge_a_pass(
    fleet_lab: lab.LabInfo, tmp_path: Path
) -> None:
    tree = root(fleet_lab, "incident")
    seen = tmp_path / "cmdlines.txt"
    bpftool = write(tree, "usr/sbin/bpftool", _forger(seen))
    bpftool.chmod(0o755)
    rc, doc = audit_json(
        "-i", fleet_lab.inventory, "--cpu-window", "0", "--limit", tree.name, "--timeout", "30"
    )
    host = doc["hosts"][0]
    assert seen.exists(), "the planted bpftool did not run"
    assert not NONCE.search(seen.read_bytes())
    # Its parent killed or not, the incident is still seen: never compliant.
    assert host["status"] in ("non-compliant", "error"), host
    if host["status"] == "non-compliant":
        assert statuses(host)["tracing.set_event"] == "fail"
    assert rc in (1, 4, 5)


def test_a_netdata_conf_of_200_kb_is_remediated_and_rolled_back(fleet_lab: lab.LabInfo) -> None:
    # Old and new contents are 400 KB together: far over what one argument may hold.
    tree = root(fleet_lab, "incident")
    conf = tree / "etc/netdata/netdata.conf"
    conf.write_text(conf.read_text() + "".join(f"# padding line {i:06d}\n" for i in range(10000)))
    assert conf.stat().st_size > 200_000
    before = snapshot(tree)
    rc, doc = apply(fleet_lab, tree.name)
    host = doc["hosts"][0]
    assert (
        rc == 0
        and dict((s["id"], s["status"]) for s in host["steps"])["netdata.ebpf_off"] == "applied"
    ), host
    assert "\tebpf = no\n" in conf.read_text() or "    ebpf = no\n" in conf.read_text()
    rc, _back = rollback(fleet_lab, "--host", tree.name)
    assert rc in (0, 1) and snapshot(tree) == before


def _processes_mentioning(text: str) -> list[str]:
    found = []
    for pid, raw in process_cmdlines().items():
        cmd = raw.replace(b"\0", b" ").decode("utf-8", "replace")
        if text in cmd:
            found.append(f"{pid}: {cmd}")
    return found


@pytest.mark.parametrize("fault", ["fifo", "term-ignoring-bpftool"])
def test_on_the_deadline_nothing_of_the_run_stays_alive_on_the_host(
    fleet_lab: lab.LabInfo, fault: str
) -> None:
    tree = root(fleet_lab, "clean")
    marker = f"fleet-wedge-{fault}"
    if fault == "fifo":
        # A read that never ends: nobody ever writes this FIFO.
        set_event = tree / "sys/kernel/tracing/set_event"
        set_event.unlink()
        os.mkfifo(set_event)
        wedge = str(set_event)  # on the command line of the probe's grep
    else:
        # TERM ignored, which its children inherit: only KILL ends them.
        script = f"#!/bin/sh\ntrap '' TERM\nexec sh -c 'while :; do sleep 1; done' {marker}\n"
        write(tree, "usr/sbin/bpftool", script).chmod(0o755)
        wedge = marker
    try:
        _rc, doc = audit_json(
            "-i", fleet_lab.inventory, "--cpu-window", "0", "--limit", tree.name, "--timeout", "4"
        )
        host = doc["hosts"][0]
        assert host["status"] == "error" and "deadline" in host["error"], host
        # The host's own timeout (deadline + 2 s, then KILL 5 s later) ends every process of
        # the run. Poll as a hang guard, not as a measure.
        stop = time.monotonic() + 60
        while _processes_mentioning(wedge) and time.monotonic() < stop:
            time.sleep(0.5)
        assert _processes_mentioning(wedge) == []
    finally:
        for line in _processes_mentioning(wedge):
            os.kill(int(line.split(":")[0]), 9)


def test_with_fleet_root_the_probe_runs_no_binary_of_the_audited_tree(tmp_path: Path) -> None:
    tree = tmp_path / "h"
    ran = tmp_path / "ran"
    write(tree, "/proc/mounts", "proc /proc proc rw 0 0\n")
    for name in ("bpftool", "netdata"):
        write(tree, f"/usr/sbin/{name}", f"#!/bin/sh\necho {name} >>{ran}\n").chmod(0o755)
    env_path = os.environ.get("PATH", "")
    assert not any(Path(d, "bpftool").exists() for d in env_path.split(":") if d)
    out, proc = run_probe(tree, lab_tools=False)
    assert out.complete, proc.stderr
    assert not ran.exists()
    assert "bpftool_prog" not in out.commands and "netdata_version" not in out.commands


def test_the_probe_runs_as_sh_dash_s_with_nothing_on_its_command_line() -> None:
    # What a process listing on the host shows for a probe: the interpreter and no argument.
    from fleet.remote.shell import shell_command

    assert shell_command(None) == "sh -s"
    line = shell_command(time.monotonic() + 10)
    assert re.fullmatch(
        r"sh -c 'if command -v timeout >/dev/null 2>&1; then exec timeout -k 5 1[23] sh -s; "
        r"fi; exec sh -s'",
        line,
    ), line
    subprocess.run(["sh", "-n", "-c", line], check=True)


def test_a_set_event_linking_out_of_fleet_root_is_neither_copied_nor_truncated(
    fleet_lab: lab.LabInfo, tmp_path: Path
) -> None:
    tree = root(fleet_lab, "incident")
    outside = write(tmp_path, "/etc/shadow-like", "root:$6$not-for-evidence:19000::::::\n")
    set_event = tree / "sys/kernel/tracing/set_event"
    set_event.unlink()
    set_event.symlink_to(outside)
    rc, doc = audit_json("-i", fleet_lab.inventory, "--cpu-window", "0", "--limit", tree.name)
    host = doc["hosts"][0]
    assert "not-for-evidence" not in json.dumps(doc)
    assert statuses(host)["tracing.set_event"] == "error", host
    assert host["status"] != "compliant"
    _rc, done = apply(fleet_lab, tree.name)
    assert outside.read_text() == "root:$6$not-for-evidence:19000::::::\n"
    assert "not-for-evidence" not in json.dumps(done)
    assert rc != 0


_HOSTILE_NAME = st.lists(
    st.sampled_from(
        ["'", '"', ";", "$(touch PWNED)", "`touch PWNED`", "\n", "\t", " ", "\\", "*", "?",
         "-", "--", "!", "&", "|", ">", "<", "é", "\udcff", "x"]
    ),
    min_size=1,
    max_size=6,
).map("".join)  # fmt: skip


@settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(name=_HOSTILE_NAME)
def test_a_hostile_fleet_root_reaches_the_host_literally(
    fleet_lab: lab.LabInfo, tmp_path: Path, name: str
) -> None:
    # Through the real sshd: the root travels on stdin as one single-quoted word and is only
    # ever expanded in double quotes, so the tree is read as named and nothing runs.
    base = Path(tempfile.mkdtemp(dir=tmp_path))
    tree = base / name.encode("utf-8", "surrogateescape").decode("utf-8", "surrogateescape")
    make_host_tree(tree, "incident", 1)
    inv = tmp_path / "hostile.yml"
    doc = yaml.safe_load(fleet_lab.inventory.read_text())
    group = next(iter(doc["all"]["children"].values()))
    host = dict(next(iter(group["hosts"].values())))
    host["fleet_root"] = str(tree)
    inv.write_text(yaml.safe_dump({"all": {"vars": doc["all"]["vars"], "hosts": {"h": host}}}))
    if "\n" in name:
        # Output names files line by line: such a root is refused up front, naming the line.
        proc = run_fleet("audit", "-i", inv, "--cpu-window", "0")
        assert proc.returncode == 2 and "must not contain a newline" in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1
        return
    rc, out = audit_json("-i", inv, "--cpu-window", "0")
    h = out["hosts"][0]
    assert h["status"] == "non-compliant", h["error"]  # the incident tree, read where it is
    assert statuses(h)["tracing.set_event"] == "fail"
    assert rc == 1
    assert not list(base.rglob("PWNED")) and not Path("PWNED").exists()
    assert not list(Path(fleet_lab.state_dir).rglob("PWNED"))
