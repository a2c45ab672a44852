"""Which netdata.conf decides, on hosts with a static and a distro netdata side by side, a
daemon started with -c, and configs that disagree (real probe runs over host trees)."""

from __future__ import annotations

from pathlib import Path

import pytest

from fleet.audit.checks import run_checks
from fleet.audit.facts import HostFacts, host_facts
from fleet.config.playbook import default_playbook_path, load_playbook
from fleet.model import Finding
from fleet.remediate.plan import PlanInput, plan_step
from tests.helpers import run_probe, write

PLAYBOOK = load_playbook(default_playbook_path())
DISTRO = "/etc/netdata/netdata.conf"
STATIC = "/opt/netdata/etc/netdata/netdata.conf"
OFF = "[plugins]\n\tebpf = no\n"
ON = "[plugins]\n\tebpf = yes\n"
STOCK = "[global]\n\trun as user = netdata\n[plugins]\n\t# ebpf = yes\n"


def _host(tmp_path: Path) -> Path:
    root = tmp_path / "h"
    write(root, "/proc/mounts", "proc /proc proc rw 0 0\n")
    return root


def _daemon(root: Path, pid: int, *argv: str) -> None:
    write(root, f"/proc/{pid}/comm", "netdata\n")
    write(root, f"/proc/{pid}/cmdline", "".join(f"{a}\0" for a in argv))


def _plugin(root: Path, base: str) -> None:
    write(root, f"{base}/usr/libexec/netdata/plugins.d/ebpf.plugin", "#!/bin/sh\n").chmod(0o755)


def _audit(root: Path) -> tuple[HostFacts, Finding]:
    out, _ = run_probe(root, extra=PLAYBOOK.extra_files)
    facts = host_facts(out)
    found = {f.id: f for f in run_checks(facts, PLAYBOOK, 0)}
    return facts, found["netdata.ebpf"]


def _plan(root: Path, facts: HostFacts, finding: Finding):  # type: ignore[no-untyped-def]
    confs = {
        p: ((root / p.lstrip("/")).read_text(), None)
        for p in facts.netdata_texts
        if (root / p.lstrip("/")).exists()
    }
    inp = PlanInput("true", confs, {"netdata.ebpf": finding.status})
    return plan_step("netdata.ebpf_off", facts, inp)


def test_a_running_static_netdata_is_judged_by_its_config_not_a_stale_distro_one(
    tmp_path: Path,
) -> None:
    root = _host(tmp_path)
    _plugin(root, "/opt/netdata")
    write(root, STATIC, STOCK)  # commented default: the installed plugin runs
    write(root, DISTRO, OFF)  # left behind by an old distro package
    _daemon(root, 801, "/opt/netdata/bin/srv/netdata", "-P", "/run/netdata.pid", "-D")
    facts, f = _audit(root)
    assert f.status == "fail"
    assert "running netdata pid 801" in f.summary and STATIC in str(f.evidence["configs"])
    step = _plan(root, facts, f)
    assert step is not None and step.blocked is None
    assert [o.path for o in step.ops if o.mode == "file"] == [STATIC]


def test_a_daemon_started_with_c_is_judged_by_that_file(tmp_path: Path) -> None:
    root = _host(tmp_path)
    _plugin(root, "")
    write(root, DISTRO, OFF)
    write(root, "/srv/netdata/custom.conf", ON)
    _daemon(root, 802, "/usr/sbin/netdata", "-D", "-c", "/srv/netdata/custom.conf")
    facts, f = _audit(root)
    assert f.status == "fail" and "/srv/netdata/custom.conf line 2" in f.summary
    step = _plan(root, facts, f)
    assert step is not None and [o.path for o in step.ops if o.mode == "file"] == [
        "/srv/netdata/custom.conf"
    ]


def test_configs_that_disagree_never_pass(tmp_path: Path) -> None:
    # The running static netdata reads "off"; the distro config that a restart of the distro
    # package would read says "on": not a pass, and the fix turns that one off too.
    root = _host(tmp_path)
    _plugin(root, "/opt/netdata")
    _plugin(root, "")
    write(root, STATIC, OFF)
    write(root, DISTRO, ON)
    _daemon(root, 803, "/opt/netdata/bin/srv/netdata", "-D")
    facts, f = _audit(root)
    assert f.status == "fail" and "distro netdata at its next start" in f.summary
    step = _plan(root, facts, f)
    assert step is not None and [o.path for o in step.ops if o.mode == "file"] == [DISTRO]


def test_a_c_file_that_cannot_be_read_is_an_error_not_a_pass(tmp_path: Path) -> None:
    root = _host(tmp_path)
    _plugin(root, "")
    write(root, DISTRO, OFF)
    _daemon(root, 804, "/usr/sbin/netdata", "-c", "/srv/gone.conf")
    _facts, f = _audit(root)
    assert f.status == "error" and "/srv/gone.conf" in f.summary


@pytest.mark.parametrize("value, status", [("yes", "fail"), ("no", "pass")])
def test_w_set_on_the_command_line_counts_and_no_file_edit_can_undo_it(
    tmp_path: Path, value: str, status: str
) -> None:
    root = _host(tmp_path)
    _plugin(root, "")
    write(root, DISTRO, "[global]\n\thostname = x\n")
    _daemon(root, 805, "/usr/sbin/netdata", "-W", "set", "plugins", "ebpf", value, "-D")
    facts, f = _audit(root)
    assert f.status == status
    if status == "fail":
        step = _plan(root, facts, f)
        assert step is not None and step.blocked and "command line" in step.blocked


def test_the_spawn_server_is_not_a_second_daemon(tmp_path: Path) -> None:
    root = _host(tmp_path)
    _plugin(root, "")
    write(root, DISTRO, OFF)
    _daemon(root, 806, "/usr/sbin/netdata", "-D")
    _daemon(root, 807, "/usr/sbin/netdata", "--special-spawn-server")
    facts, f = _audit(root)
    assert f.status == "pass"
    assert [d.pid for d in facts.netdata_sources.daemons] == [806]
