"""The remediation state machine without sshd: fleet.remediate.host over a LocalRemote (`sh`
on a lab tree, the lab kernel model after each script). Every failure path: a step's write
refused, the journal failing, the state changing between read and write, netdata never
stopping, the link dropping, a signal between steps; and rollback from the journal."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from fleet.audit.run import AuditContext
from fleet.config.playbook import FixSpec, Playbook, default_playbook_path, load_playbook
from fleet.lab.trees import make_host_tree
from fleet.model import COMPLIANT, ERROR, NON_COMPLIANT
from fleet.remediate.context import RemediateContext
from fleet.remediate.host import plan_on, remediate_on, rollback_on
from fleet.remediate.journal import Journal, find_run, new_run_id
from fleet.remediate.results import FAILED, PLANNED, ROLLED_BACK, HostRemediation
from fleet.remediate.session import HostSession
from fleet.transport.ssh import ConnectionLost, SSHOptions
from tests.helpers import immutable, snapshot
from tests.local_remote import LocalRemote, tree_host

PLAYBOOK = load_playbook(default_playbook_path())
ALL_STEPS = ["netdata.ebpf_off", "tracing.probe_events_off", "tracing.set_event_clear",
             "kprobes.disarm"]  # fmt: skip
# On the lab's incident host the kprobes leave with ebpf.plugin: no disarm is needed then.
APPLIED_STEPS = ALL_STEPS[:3]


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "hosts" / "incident-01"
    make_host_tree(root, "incident", 1)
    return root


def _context(tmp_path: Path, playbook: Playbook = PLAYBOOK) -> RemediateContext:
    state = tmp_path / "state"
    state.mkdir(mode=0o700, exist_ok=True)
    run_id = new_run_id()
    return RemediateContext(
        audit=AuditContext(playbook=playbook, ssh=SSHOptions(command_timeout=20), cpu_window=0),
        run_id=run_id,
        state_dir=state,
        journal=Journal.start(state, run_id, ["fleet", "remediate"], str(playbook.path)),
        settle_s=0,
    )


def _remediate(tree: Path, ctx: RemediateContext, **remote: object) -> HostRemediation:
    return remediate_on(HostSession(LocalRemote(tree_host(tree), **remote), ctx))  # type: ignore[arg-type]


def _rollback(tree: Path, ctx: RemediateContext) -> HostRemediation:
    run = find_run(ctx.state_dir, ctx.run_id, [tree.name])
    assert run is not None
    return rollback_on(HostSession(LocalRemote(tree_host(tree)), ctx), run)


def _steps(rem: HostRemediation) -> list[tuple[str, str]]:
    return [(s.id, s.status) for s in rem.steps]


def _with_wait(seconds: float) -> Playbook:
    fixes = tuple(
        FixSpec(f.id, {**f.params, "wait_s": seconds}) if f.id == "netdata.ebpf_off" else f
        for f in PLAYBOOK.fixes
    )
    return dataclasses.replace(PLAYBOOK, fixes=fixes)


def test_a_plan_lists_every_step_and_writes_nothing(tree: Path, tmp_path: Path) -> None:
    before = snapshot(tree)
    rem = plan_on(HostSession(LocalRemote(tree_host(tree)), _context(tmp_path)))
    assert [(s.id, s.status) for s in rem.steps] == [(s, PLANNED) for s in ALL_STEPS]
    assert rem.status == NON_COMPLIANT and not rem.failed
    assert snapshot(tree) == before


def test_every_step_applied_leaves_the_host_compliant_and_unlocked(
    tree: Path, tmp_path: Path
) -> None:
    rem = _remediate(tree, _context(tmp_path))
    assert _steps(rem) == [(s, "applied") for s in APPLIED_STEPS], rem.result.error
    assert rem.status == COMPLIANT and not rem.failed
    assert not (tree / "run/fleet-remediate.lock").exists()


def test_a_refused_write_undoes_the_steps_before_it(tree: Path, tmp_path: Path) -> None:
    before = snapshot(tree)
    with immutable(tree / "sys/kernel/tracing/set_event"):
        rem = _remediate(tree, _context(tmp_path))
    assert rem.failed
    assert ("tracing.set_event_clear", FAILED) in _steps(rem)
    assert _steps(rem)[:2] == [("netdata.ebpf_off", ROLLED_BACK),
                               ("tracing.probe_events_off", ROLLED_BACK)]  # fmt: skip
    assert "earlier steps rolled back" in (rem.result.error or "")
    after = snapshot(tree)
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    assert all(".fleet-" in k for k in changed), changed  # only the config backup is new


def test_a_journal_that_cannot_be_written_stops_all_writes(tree: Path, tmp_path: Path) -> None:
    ctx = _context(tmp_path)
    before = snapshot(tree)

    def full_disk(record: dict[str, object]) -> None:
        raise OSError(28, "No space left on device")

    ctx.journal.write = full_disk  # type: ignore[method-assign,union-attr]
    rem = _remediate(tree, ctx)
    assert rem.status == ERROR and rem.failed
    assert (rem.result.error or "").startswith("journal write failed: No space left on device")
    assert snapshot(tree) == before  # nothing written; the lock released


def test_state_changed_between_read_and_write_is_not_overwritten(
    tree: Path, tmp_path: Path
) -> None:
    set_event = tree / "sys/kernel/tracing/set_event"

    def someone_writes(n: int, stdin: bytes) -> None:
        if b"set_event" in stdin and b"trunc" in stdin:  # just before the clearing step
            set_event.write_text(set_event.read_text() + "sched:sched_wakeup\n")

    rem = _remediate(tree, _context(tmp_path), before_run=someone_writes)
    assert rem.failed
    failed = next(s for s in rem.steps if s.id == "tracing.set_event_clear")
    assert failed.status == FAILED
    assert (failed.error or "").startswith("state changed since it was read")
    assert "sched:sched_wakeup" in set_event.read_text()  # the other writer's change stands


def test_netdata_that_never_stops_fails_its_step_and_restores_the_config(
    tree: Path, tmp_path: Path
) -> None:
    conf = tree / "etc/netdata/netdata.conf"
    original = conf.read_bytes()
    restart = tree / "usr/sbin/netdata-restart"
    restart.write_text("#!/bin/sh\nexit 0\n")  # says it restarted; ebpf.plugin runs on
    rem = _remediate(tree, _context(tmp_path, _with_wait(1)))
    assert _steps(rem) == [("netdata.ebpf_off", FAILED)]
    assert "ebpf.plugin still running 1 s after the restart" in (rem.result.error or "")
    assert conf.read_bytes() == original


def test_a_link_lost_mid_run_is_the_hosts_error_and_the_journal_keeps_what_was_applied(
    tree: Path, tmp_path: Path
) -> None:
    def drop(n: int, stdin: bytes) -> None:
        if n == 6:
            raise ConnectionLost("connection lost: reset by peer")

    ctx = _context(tmp_path)
    rem = _remediate(tree, ctx, before_run=drop)
    assert rem.status == ERROR and rem.failed
    assert "connection lost: reset by peer" in (rem.result.error or "")
    assert "fleet rollback undoes it" in (rem.result.error or "")
    back = _rollback(tree, ctx)
    assert not back.failed, back.result.error


def test_a_signal_between_steps_undoes_what_was_applied(tree: Path, tmp_path: Path) -> None:
    ctx = _context(tmp_path)
    before = snapshot(tree)

    def signal_after_first_step(n: int, stdin: bytes) -> None:
        if b"netdata-restart" in stdin:
            ctx.stop.request("SIGTERM")

    rem = _remediate(tree, ctx, before_run=signal_after_first_step)
    assert rem.failed
    assert _steps(rem) == [("netdata.ebpf_off", ROLLED_BACK)]
    assert "SIGTERM before step tracing.probe_events_off" in (rem.result.error or "")
    after = snapshot(tree)
    assert {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)} <= {
        k for k in after if ".fleet-" in k
    }


def test_rollback_from_the_journal_restores_the_tree_byte_for_byte(
    tree: Path, tmp_path: Path
) -> None:
    before = snapshot(tree)
    ctx = _context(tmp_path)
    assert not _remediate(tree, ctx).failed
    back = _rollback(tree, ctx)
    assert [s.status for s in back.steps] == [ROLLED_BACK] * len(APPLIED_STEPS)
    assert back.status == NON_COMPLIANT and not back.failed
    assert snapshot(tree) == before
