"""Remediation steps (pure): from a host's facts to the remote writes that fix it and undo it.

Each step is planned from facts read just before it runs, so it is idempotent: a fixed host
plans nothing. Steps run in the order the kernel requires (fleet.model.FIXES):

1. ``netdata.ebpf_off``: ``[plugins] ebpf = no`` in netdata.conf (the rest of the file kept
   byte for byte), then netdata's restart command; ebpf.plugin exits and its kprobes,
   trampolines and BPF programs go with it. Never the all-``[ebpf programs] = no`` trick:
   netdata 1.36-1.40 then enables every program.
2. ``tracing.probe_events_off``: each enabled dynamic probe event gets ``0`` in its
   ``events/<group>/<event>/enable``, in every trace instance; definitions are kept (deleting
   an event that is still in use fails with EBUSY).
3. ``tracing.set_event_clear``: a truncating write clears an instance's set_event; when the
   playbook allows some events (rasdaemon's ``ras:*``), each other one is disabled with its
   own ``!event`` append instead, so the allowed ones stay.
4. ``kprobes.disarm``: ``kprobes/enabled`` = 0, only while armed entries remain after 1-3
   (it is host-wide: security agents' kprobes stop too).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass, field
from fnmatch import fnmatchcase

from fleet.audit.facts import DEBUGFS, EBPF_GO_PLUGIN, HostFacts
from fleet.audit.netdataconf import PLUGINS, set_netdata_value
from fleet.model import FAIL, FIX_IDS, WARN, Registry
from fleet.remote.apply import Op


@dataclass(frozen=True)
class Change:
    """A file as it is and as the step leaves it (the plan's diff, the journal's record)."""

    path: str
    before: str
    after: str


@dataclass
class Step:
    id: str
    ops: list[Op] = field(default_factory=list)
    undo: list[Op] = field(default_factory=list)
    changes: list[Change] = field(default_factory=list)
    # Why the step cannot be applied on this host (it is reported skipped, nothing written).
    blocked: str | None = None
    restarts_netdata: bool = False


def _lines_text(lines: list[str]) -> str:
    return "".join(f"{line}\n" for line in lines)


# ---------------------------------------------------------------- planning
@dataclass(frozen=True)
class PlanInput:
    """What a step is planned from besides the facts."""

    restart_command: str
    # netdata.conf path -> (exact bytes, None) or (None, why it could not be read)
    netdata_confs: dict[str, tuple[str | None, str | None]] = field(default_factory=dict)
    check_status: dict[str, str] = field(default_factory=dict)  # check id -> status
    set_event_allow: tuple[str, ...] = ()


Planner = Callable[[HostFacts, "PlanInput"], "Step | None"]
PLANNERS: Registry[Planner] = Registry(FIX_IDS, "fix")
planner = PLANNERS.register


@planner("netdata.ebpf_off")
def plan_netdata(facts: HostFacts, inp: PlanInput) -> Step | None:
    status = inp.check_status.get("netdata.ebpf")
    if status not in (FAIL, WARN):
        return None
    step = Step("netdata.ebpf_off", restarts_netdata=True)
    restart = Op("run", "-", "-", inp.restart_command)
    if status == WARN:
        # Configured off, but ebpf.plugin still runs: the restart alone finishes the job.
        step.ops = [restart]
        step.changes = [Change("netdata", "ebpf.plugin running", "restarted")]
        return step
    verdicts = [v for v in facts.netdata_verdicts() if v.on]
    stuck = next((v for v in verdicts if v.edit is None), None)
    if stuck is not None:
        step.blocked = f"{stuck.describe()}: no file turns it off; change netdata's command line"
        return step
    go = any(p.endswith("/" + EBPF_GO_PLUGIN) for p in facts.netdata_plugins)
    for path in dict.fromkeys(v.edit for v in verdicts if v.edit):
        if path not in facts.netdata_texts:
            step.blocked = (
                f"ebpf.plugin is installed but {path} does not exist; create it with "
                "'[plugins]' and 'ebpf = no'"
            )
            return step
        old, error = inp.netdata_confs.get(path, (None, "not read"))
        if error or old is None:
            step.blocked = f"{path}: {error or 'not read'}"
            return step
        if "\ufffd" in old or "\0" in old:
            step.blocked = f"{path} is not UTF-8 text; edit it by hand"
            return step
        new = set_netdata_value(old, PLUGINS, "ebpf", "no")
        if go:
            new = set_netdata_value(new, PLUGINS, "ebpf-go", "no")
        step.ops.append(Op("file", path, old, new))
        step.undo.insert(0, Op("restore", path, new, old))
        step.changes.append(Change(path, old, new))
    step.ops.append(restart)
    step.undo.append(restart)
    return step


def _instance_dir(tracefs: str, instance: str) -> str:
    return tracefs if instance == "" else f"{tracefs}/instances/{instance}"


@planner("tracing.probe_events_off")
def plan_probe_events(facts: HostFacts, inp: PlanInput) -> Step | None:
    if not facts.tracefs:
        return None
    step = Step("tracing.probe_events_off")
    for event, per_instance in sorted(facts.event_enable.items()):
        for instance, state in sorted(per_instance.items()):
            # "1*": triggers attached; writing 0 stops the tracing but leaves "0*", the probe
            # still armed for the triggers, which are left to people (the re-audit says so).
            if state not in ("1", "1*"):
                continue
            path = f"{_instance_dir(facts.tracefs, instance)}/events/{event}/enable"
            before, after = f"{state}\n", "0*\n" if state == "1*" else "0\n"
            step.ops.append(Op("set", path, before, "0\n"))
            step.undo.insert(0, Op("set", path, after, "1\n"))
            step.changes.append(Change(path, before, after))
    return step if step.ops else None


@planner("tracing.set_event_clear")
def plan_set_event(facts: HostFacts, inp: PlanInput) -> Step | None:
    if not facts.tracefs:
        return None
    step = Step("tracing.set_event_clear")
    problems = []
    for instance, fact in sorted(facts.set_event.items()):
        path = f"{_instance_dir(facts.tracefs, instance)}/set_event"
        events = fact.value
        if events is None:
            if fact.problem:
                problems.append(f"{path}: {fact.problem}")
            elif not fact.read.absent:
                problems.append(fact.read.describe_error())
            continue
        keep = [e for e in events if any(fnmatchcase(e, p) for p in inp.set_event_allow)]
        drop = [e for e in events if e not in keep]
        if not drop:
            continue
        before = fact.read.text or ""  # the exact bytes the write compares against
        after = _lines_text(keep)
        if keep:
            step.ops.append(Op("append", path, before, "\n".join(f"!{e}" for e in drop)))
        else:
            step.ops.append(Op("trunc", path, before, "-"))
        step.undo.insert(0, Op("append", path, after, "\n".join(drop)))
        step.changes.append(Change(path, before, after))
    if problems and not step.ops:
        step.blocked = "set_event unreadable: " + "; ".join(problems)
        return step
    return step if step.ops else None


@planner("kprobes.disarm")
def plan_kprobes(facts: HostFacts, inp: PlanInput) -> Step | None:
    lst = facts.kprobes_list
    if lst is None or not lst.read.ok:
        return None
    path = f"{facts.debugfs or DEBUGFS}/kprobes/enabled"
    step = Step("kprobes.disarm")
    if lst.value is None:
        step.blocked = f"kprobes/list not understood ({lst.problem}): check it by hand"
        return step
    if not any(e.armed_candidate for e in lst.value):
        return None
    en = facts.kprobes_enabled
    if en is None or not en.read.ok:
        why = en.read.describe_error() if en is not None else f"{path}: not read"
        mode = facts.lockdown
        lockdown = f" (lockdown={mode})" if mode not in (None, "none") else ""
        step.blocked = f"cannot read or write kprobes/enabled: {why}{lockdown}"
        return step
    if en.value is not True:
        return None
    text = en.read.text or ""  # the exact bytes the write compares against
    step.ops = [Op("set", path, text, "0\n")]
    step.undo = [Op("set", path, "0\n", text)]
    step.changes = [Change(path, text, "0\n")]
    return step


def plan_step(step_id: str, facts: HostFacts, inp: PlanInput) -> Step | None:
    """The step as it would run now, or None when the host needs nothing from it."""
    return PLANNERS[step_id](facts, inp)


def render_diff(step: Step) -> list[str]:
    """A readable diff of what the step changes, one line each."""
    out: list[str] = []
    for c in step.changes:
        if c.path == "netdata":
            out.append(f"  netdata: {c.before} -> {c.after}")
            continue
        before = c.before.splitlines(keepends=True)
        after = c.after.splitlines(keepends=True)
        if len(before) <= 1 and len(after) <= 1 and c.before.count("\n") <= 1:
            out.append(
                f"  {c.path}: {c.before.strip() or '(empty)'} -> {c.after.strip() or '(empty)'}"
            )
            continue
        diff = difflib.unified_diff(before, after, f"a{c.path}", f"b{c.path}", n=1)
        out += [f"  {line.rstrip(chr(10))}" for line in diff]
    return out
