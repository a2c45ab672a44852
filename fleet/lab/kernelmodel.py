"""Lab kernel model: what a real kernel does to the other tracing files when one is written.

A lab host is a tree of plain files, so a write to one of them changes only that file. A
kernel couples them: disabling an event drops it from ``set_event`` and flips its group's
``enable``; a truncating write to ``set_event`` disables every event of that instance; a
kprobe event that is no longer enabled anywhere shows ``[DISABLED]`` in ``kprobes/list``;
``kprobes/enabled = 0`` empties the kprobe entries of ``enabled_functions`` but leaves the list
as it was; a netdata whose ebpf.plugin has exited has released its kprobes and trampolines.
(tests/fixtures/captured-qemu holds those behaviours as read on a Debian 6.1 kernel.)

The lab's sshd runs every client command through ``lab/exec.sh``, which calls
:func:`reconcile_all` once the command has finished. Each host tree carries the static
``SPEC`` (which events, kprobes and ftrace entries exist) written at tree creation, and the
model's ``STATE`` (what is enabled, what the model last wrote). A control file whose content
differs from what the model last wrote was written by a client; its new content is read
with the kernel's rules and every derived file is rendered again.

Not modelled (a real kernel refuses at write time, a file cannot): EBUSY, EINVAL on unknown
events, defining or deleting probes through ``kprobe_events``.
"""

from __future__ import annotations

import argparse
import fcntl
import fnmatch
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SPEC = "var/lib/fleet-lab/kernel.json"
STATE = "var/lib/fleet-lab/kernel-state.json"
LOCK = "var/lib/fleet-lab/kernel.lock"

# Groups of probe events the lab defines all of; tracepoint groups have more than it lists.
DYNAMIC_GROUPS = ("kprobes", "uprobes")
TRUE_WORDS = ("1", "y", "yes", "on", "true")
FALSE_WORDS = ("0", "n", "no", "off", "false")


@dataclass
class KprobeSpec:
    """One kprobes/list entry: its text without flags, who keeps it registered, its function."""

    base: str  # "ffffffff81a8bf40  k  tcp_sendmsg+0x0    "
    flags: str  # "[FTRACE]"
    func: str
    addr: int
    # "event:<group>:<name>" (a tracefs kprobe event), "netdata" (ebpf.plugin's), "static"
    owner: str


@dataclass
class Spec:
    """What exists on one host: set at tree creation, never changed by the model."""

    instances: dict[str, str]  # instance name ("" = top) -> tracing dir, relative to the root
    # instance -> every "group:event" it has, in the kernel's list order: set_event lists the
    # enabled ones in this order (trees._kernel_order; every instance has every probe event)
    events: dict[str, list[str]]
    kprobes: list[KprobeSpec] = field(default_factory=list)
    kprobe_ftrace: dict[str, str] = field(default_factory=dict)  # func -> enabled_functions line
    direct_ftrace: list[dict[str, Any]] = field(default_factory=list)  # {addr, lines, owner}
    kprobes_dir: str | None = None  # "sys/kernel/debug/kprobes" when debugfs is mounted
    netdata_proc: str | None = None  # "proc/<ebpf.plugin pid>": present while it runs
    enabled_functions: str = "sys/kernel/tracing/enabled_functions"

    def to_json(self) -> dict[str, Any]:
        return {
            "instances": self.instances,
            "events": self.events,
            "kprobes": [vars(k) for k in self.kprobes],
            "kprobe_ftrace": self.kprobe_ftrace,
            "direct_ftrace": self.direct_ftrace,
            "kprobes_dir": self.kprobes_dir,
            "netdata_proc": self.netdata_proc,
            "enabled_functions": self.enabled_functions,
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Spec:
        return cls(
            instances=doc["instances"],
            events=doc["events"],
            kprobes=[KprobeSpec(**k) for k in doc["kprobes"]],
            kprobe_ftrace=doc["kprobe_ftrace"],
            direct_ftrace=doc["direct_ftrace"],
            kprobes_dir=doc["kprobes_dir"],
            netdata_proc=doc["netdata_proc"],
            enabled_functions=doc["enabled_functions"],
        )


@dataclass
class State:
    enabled: dict[str, list[str]]  # instance -> enabled "group:event", in spec order
    armed: bool
    written: dict[str, str] = field(default_factory=dict)  # rel path -> what the model wrote


# --- the kernel's rules (pure) ------------------------------------------------------------


def _matches(token: str, event: str) -> bool:
    """set_event syntax: "group:event" with globs, or a bare name matching a group or event."""
    group, _, name = event.partition(":")
    if ":" in token:
        tg, _, tn = token.partition(":")
        return fnmatch.fnmatchcase(group, tg or "*") and fnmatch.fnmatchcase(name, tn or "*")
    return fnmatch.fnmatchcase(group, token) or fnmatch.fnmatchcase(name, token)


def apply_set_event(enabled: set[str], events: list[str], old: str, new: str) -> set[str]:
    """A client changed set_event from `old` (what the kernel showed) to `new`. A file that
    no longer starts with `old` was opened with O_TRUNC: that alone disables every event.
    Each following line is one token: `x` enables, `!x` disables."""
    if new.startswith(old):
        tokens = new[len(old) :]
    else:
        enabled = set()
        tokens = new
    for raw in tokens.splitlines():
        token = raw.strip()
        if not token:
            continue
        off = token.startswith("!")
        token = token.lstrip("!")
        for event in events:
            if _matches(token, event):
                if off:
                    enabled.discard(event)
                else:
                    enabled.add(event)
    return enabled


def parse_bool(text: str) -> bool | None:
    """kstrtobool as the enable files take it; None when the kernel would refuse (EINVAL)."""
    word = text.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    return None


def _tri(states: list[bool], complete: bool) -> str:
    """An enable file over several events: 1, 0 or X (mixed). A tracepoint group or the whole
    instance holds more events than the lab lists (`complete` False), so "on" there is mixed."""
    if complete and states and all(states):
        return "1\n"
    if any(states):
        return "X\n"
    return "0\n"


def render(spec: Spec, state: State, netdata_running: bool) -> dict[str, str]:
    """Every derived file, by path relative to the host root."""
    out: dict[str, str] = {}
    enabled_anywhere: set[str] = set()
    for inst, base in spec.instances.items():
        events = spec.events.get(inst, [])
        on = set(state.enabled.get(inst, []))
        enabled_anywhere |= on
        out[f"{base}/set_event"] = "".join(f"{e}\n" for e in events if e in on)
        groups: dict[str, list[bool]] = {}
        for event in events:
            group, _, name = event.partition(":")
            out[f"{base}/events/{group}/{name}/enable"] = "1\n" if event in on else "0\n"
            groups.setdefault(group, []).append(event in on)
        for group, states in groups.items():
            out[f"{base}/events/{group}/enable"] = _tri(states, group in DYNAMIC_GROUPS)
        out[f"{base}/events/enable"] = _tri([e in on for e in events], False)

    listed: list[KprobeSpec] = []
    active: list[KprobeSpec] = []
    for kp in spec.kprobes:
        if kp.owner == "netdata" and not netdata_running:
            continue
        listed.append(kp)
        disabled = kp.owner.startswith("event:") and kp.owner[6:] not in enabled_anywhere
        if not disabled:
            active.append(kp)
    if spec.kprobes_dir:
        out[f"{spec.kprobes_dir}/list"] = "".join(
            f"{kp.base}{'[DISABLED]' if kp not in active else ''}{kp.flags}\n" for kp in listed
        )
        out[f"{spec.kprobes_dir}/enabled"] = "1\n" if state.armed else "0\n"

    hooked: dict[str, tuple[int, list[str]]] = {}
    if state.armed:  # a global disarm takes every kprobe off ftrace; the list stays
        for kp in active:
            if "[FTRACE]" in kp.flags and kp.func in spec.kprobe_ftrace:
                hooked[kp.func] = (kp.addr, [spec.kprobe_ftrace[kp.func]])
    for entry in spec.direct_ftrace:
        if entry["owner"] != "netdata" or netdata_running:
            hooked.setdefault(entry["func"], (entry["addr"], entry["lines"]))
    ordered = sorted(hooked.values(), key=lambda item: item[0])
    out[spec.enabled_functions] = "".join(f"{line}\n" for _, lines in ordered for line in lines)
    return out


def absorb(spec: Spec, state: State, current: dict[str, str | None]) -> State:
    """Read what clients wrote since the model last rendered (`current` = what is on disk)."""
    enabled = {inst: set(state.enabled.get(inst, [])) for inst in spec.instances}
    armed = state.armed

    def changed(rel: str) -> str | None:
        now = current.get(rel)
        if now is None or now == state.written.get(rel):
            return None
        return now

    for inst, base in spec.instances.items():
        events = spec.events.get(inst, [])
        text = changed(f"{base}/set_event")
        if text is not None:
            old = state.written.get(f"{base}/set_event", "")
            enabled[inst] = apply_set_event(enabled[inst], events, old, text)
        value = changed(f"{base}/events/enable")
        if value is not None and parse_bool(value) is not None:
            enabled[inst] = set(events) if parse_bool(value) else set()
        groups = sorted({e.partition(":")[0] for e in events})
        for group in groups:
            value = changed(f"{base}/events/{group}/enable")
            on = parse_bool(value) if value is not None else None
            if on is None:
                continue
            members = {e for e in events if e.partition(":")[0] == group}
            enabled[inst] = enabled[inst] | members if on else enabled[inst] - members
        for event in events:
            group, _, name = event.partition(":")
            value = changed(f"{base}/events/{group}/{name}/enable")
            on = parse_bool(value) if value is not None else None
            if on is True:
                enabled[inst].add(event)
            elif on is False:
                enabled[inst].discard(event)
    if spec.kprobes_dir:
        value = changed(f"{spec.kprobes_dir}/enabled")
        on = parse_bool(value) if value is not None else None
        if on is not None:
            armed = on
    return State(
        enabled={
            inst: [e for e in spec.events.get(inst, []) if e in on_set]
            for inst, on_set in enabled.items()
        },
        armed=armed,
        written=state.written,
    )


# --- the tree (I/O) -------------------------------------------------------------------------


def _read(path: Path) -> str | None:
    """A regular file's text; None for anything else: a FIFO planted by a fault test would
    block the model (and the lab host's session) forever."""
    try:
        if not path.is_file():
            return None
        return path.read_text()
    except (OSError, UnicodeDecodeError):
        return None


def _write(path: Path, text: str) -> bool:
    """Rewrite a derived file in place (a reader holding it open sees the new text, as with
    a kernel file). The lab's refusals are never written: a socket node (lockdown: no open
    succeeds), an immutable file (a test's read-only target: EPERM), a symlink."""
    if path.is_symlink() or (path.exists() and not path.is_file()):
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with open(path, "w") as f:
            f.write(text)
    except PermissionError:
        return False
    return True


def install(root: Path, spec: Spec, enabled: dict[str, list[str]], armed: bool) -> None:
    """Give a new tree its spec and initial state, and render every derived file."""
    (root / SPEC).parent.mkdir(parents=True, exist_ok=True)
    (root / SPEC).write_text(json.dumps(spec.to_json(), indent=1) + "\n")
    (root / LOCK).touch()
    state = State(enabled=enabled, armed=armed)
    _render_and_save(root, spec, state)


def _netdata_running(root: Path, spec: Spec) -> bool:
    return bool(spec.netdata_proc) and (root / str(spec.netdata_proc)).is_dir()


def _render_and_save(root: Path, spec: Spec, state: State) -> None:
    files = render(spec, state, _netdata_running(root, spec))
    written: dict[str, str] = {}
    for rel, text in files.items():
        path = root / rel
        if _read(path) != text and not _write(path, text):
            continue
        written[rel] = text
    doc = {"enabled": state.enabled, "armed": state.armed, "written": written}
    tmp = root / (STATE + ".tmp")
    tmp.write_text(json.dumps(doc) + "\n")
    os.replace(tmp, root / STATE)


def reconcile(root: Path) -> bool:
    """Apply what clients wrote to one host tree; False if the tree has no model."""
    spec_path = root / SPEC
    if not spec_path.exists():
        return False
    with open(root / LOCK, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        spec = Spec.from_json(json.loads(spec_path.read_text()))
        doc = json.loads((root / STATE).read_text())
        state = State(doc["enabled"], doc["armed"], doc["written"])
        current = {rel: _read(root / rel) for rel in state.written}
        _render_and_save(root, spec, absorb(spec, state, current))
    return True


def reconcile_all(hosts_dir: Path, command: str | None = None) -> int:
    """Reconcile the hosts a client command named (its fleet_root is on the command line or
    its stdin: one tree, not the whole lab, per command); every host when none is named."""
    entries = sorted(hosts_dir.iterdir()) if hosts_dir.is_dir() else []
    roots = [(e, e.resolve()) for e in entries]
    if command:
        named = [r for e, r in roots if str(e) in command or str(r) in command]
        roots = [(r, r) for r in named] or roots
    return sum(reconcile(r) for _e, r in roots)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fleet.lab.kernelmodel")
    parser.add_argument("hosts_dir", type=Path, help="the lab's hosts/ directory")
    parser.add_argument("--command", help="the client command that just ran")
    parser.add_argument("--stdin-file", type=Path, help="what the client sent on its stdin")
    args = parser.parse_args(argv)
    try:
        said = args.command or ""
        if args.stdin_file is not None and args.stdin_file.is_file():
            said += "\n" + args.stdin_file.read_text("utf-8", "replace")
        reconcile_all(args.hosts_dir, said or None)
    except (OSError, ValueError, KeyError) as exc:
        print(f"fleet lab kernel model: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
