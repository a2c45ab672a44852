"""Checks: facts + playbook parameters -> Findings. Pure functions, one per contract check id."""

from __future__ import annotations

from collections.abc import Callable
from fnmatch import fnmatchcase
from typing import Any

from fleet.audit.facts import EBPF_PLUGINS, HostFacts, Parsed, event_fires, parse_ini
from fleet.config.playbook import CheckSpec, Playbook
from fleet.model import (
    CHECK_IDS,
    CPU_THRESHOLD_PCT,
    ERROR,
    FAIL,
    PASS,
    SKIP,
    WARN,
    Finding,
    Registry,
)
from fleet.remote.probe import FileRead

CheckFn = Callable[[HostFacts, CheckSpec, dict[str, Any]], Finding]
CHECKS: Registry[CheckFn] = Registry(CHECK_IDS, "check")
check = CHECKS.register


def _finding(
    spec: CheckSpec, status: str, summary: str, evidence: dict[str, Any] | None = None
) -> Finding:
    fix = spec.remediation.strip() if spec.remediation and status in (FAIL, WARN) else None
    return Finding(spec.id, status, spec.severity, summary, evidence or {}, fix)


def _unreadable(read: FileRead, facts: HostFacts) -> str:
    """Why a read failed, with the lockdown state when it explains EPERM."""
    why = read.describe_error()
    mode = facts.lockdown
    if read.errno == "EPERM" and mode and mode != "none":
        why += f"; kernel lockdown is '{mode}'"
    elif read.errno == "EACCES" and facts.uid not in (0, None):
        why += f"; running as uid {facts.uid} (set ansible_become for sudo -n)"
    return why


def _why_not(fact: Parsed[Any], facts: HostFacts) -> str:
    """Why a parsed fact has no value: not in its owner's form, or unreadable (and why)."""
    return fact.problem or _unreadable(fact.read, facts)


def _instance_label(instance: str) -> str:
    return "." if instance == "" else f"instances/{instance}"


@check("tracing.set_event")
def check_set_event(facts: HostFacts, spec: CheckSpec, ctx: dict[str, Any]) -> Finding:
    if not facts.tracefs:
        return _finding(spec, SKIP, "tracefs is not mounted (no /sys/kernel/tracing, no debugfs)")
    allow = [str(a) for a in spec.params.get("allow", [])]
    # Only the exact names of defined dynamic events are left to tracing.probe_events: a
    # `p:sched/mine` definition must not hide sched:sched_switch.
    dynamic = {f"{e.group}:{e.event}" for e in facts.probe_events}
    enabled: dict[str, list[str]] = {}
    allowed: dict[str, list[str]] = {}
    errors: list[str] = []
    for instance, fact in sorted(facts.set_event.items()):
        if fact.value is None:
            if fact.problem:
                errors.append(f"{_instance_label(instance)}: {fact.problem}")
            elif not fact.read.absent:
                errors.append(_unreadable(fact.read, facts))
            continue
        label = _instance_label(instance)
        for ev in fact.value:
            if ev in dynamic:
                continue  # left to tracing.probe_events
            if any(fnmatchcase(ev, pat) for pat in allow):
                allowed.setdefault(label, []).append(ev)
            else:
                enabled.setdefault(label, []).append(ev)
    evidence: dict[str, Any] = {"tracefs": facts.tracefs, "enabled": enabled}
    if allowed:
        evidence["allowed"] = allowed
    if errors:
        evidence["errors"] = errors
    total = sum(len(v) for v in enabled.values())
    if total:
        where = ", ".join(f"{k}: {len(v)}" for k, v in enabled.items())
        first = next(iter(enabled.values()))[:3]
        return _finding(
            spec,
            FAIL,
            f"{total} tracepoint event(s) enabled ({where}), e.g. {', '.join(first)}",
            evidence,
        )
    if errors:
        return _finding(spec, ERROR, f"set_event unreadable: {errors[0]}", evidence)
    return _finding(spec, PASS, "no tracepoint events enabled", evidence)


@check("tracing.probe_events")
def check_probe_events(facts: HostFacts, spec: CheckSpec, ctx: dict[str, Any]) -> Finding:
    if not facts.tracefs:
        return _finding(spec, SKIP, "tracefs is not mounted")
    reads = facts.probe_defs
    if reads and all(r.absent for r in reads.values()):
        return _finding(spec, SKIP, "no kprobe/uprobe/dynamic_events files (not built in)")
    errors = [_unreadable(r, facts) for r in reads.values() if not r.ok and not r.absent]
    events = []
    enabled_names = []
    unknown = []
    for ev in facts.probe_events:
        states = facts.event_enable.get(ev.name, {})
        on = sorted(_instance_label(i) for i, v in states.items() if event_fires(v))
        if on:
            enabled_names.append(ev.name)
        elif not states or any(v is None for v in states.values()):
            unknown.append(ev.name)
        event: dict[str, Any] = {
            "name": ev.name,
            "kind": ev.kind,
            "target": ev.target,
            "defined_in": ev.source,
            "enabled_in": on,
        }
        # Triggers (hist, stacktrace, ...) keep a probe armed even with enable = 0 ("0*").
        triggered = sorted(_instance_label(i) for i, v in states.items() if v and "*" in v)
        if triggered:
            event["triggers_in"] = triggered
        events.append(event)
    evidence: dict[str, Any] = {"events": events}
    if errors:
        evidence["errors"] = errors
    if enabled_names:
        return _finding(
            spec,
            FAIL,
            f"{len(enabled_names)} probe event(s) enabled: {', '.join(enabled_names[:5])}",
            evidence,
        )
    if errors and not events:
        return _finding(spec, ERROR, f"probe event files unreadable: {errors[0]}", evidence)
    if unknown:
        evidence["enable_unknown"] = unknown
    if events:
        return _finding(
            spec,
            WARN,
            f"{len(events)} probe event(s) defined but disabled: "
            f"{', '.join(e['name'] for e in events[:5])}",
            evidence,
        )
    return _finding(spec, PASS, "no dynamic probe events defined", evidence)


@check("kprobes.registered")
def check_kprobes(facts: HostFacts, spec: CheckSpec, ctx: dict[str, Any]) -> Finding:
    hot = {str(h) for h in spec.params.get("hot_functions", [])}
    lst = facts.kprobes_list
    if lst is None or lst.read.absent:
        if not facts.debugfs:
            return _finding(
                spec,
                SKIP,
                "debugfs is not mounted: kprobes/list is not visible "
                "(registered kprobes still cost CPU; the audit never mounts)",
            )
        return _finding(spec, SKIP, "no kprobes/list under debugfs (kernel without CONFIG_KPROBES)")
    if not lst.read.ok:
        return _finding(spec, ERROR, f"kprobes/list unreadable: {_unreadable(lst.read, facts)}")
    if lst.value is None:
        return _finding(spec, ERROR, f"kprobes/list not understood: {lst.problem}")
    entries = lst.value
    en = facts.kprobes_enabled
    armed = en.value if en is not None else None
    evidence: dict[str, Any] = {
        "enabled": armed,
        "entries": [
            {
                "type": e.type,
                "symbol": e.symbol,
                "offset": e.offset,
                "module": e.module,
                "flags": list(e.flags),
                "hot": e.symbol in hot,
            }
            for e in entries
        ],
    }
    live = [e for e in entries if e.armed_candidate]
    hot_live = sorted({e.symbol for e in live if e.symbol in hot})
    if not entries:
        return _finding(spec, PASS, "no kprobes registered", evidence)
    if armed is None and live:
        why = _why_not(en, facts) if en is not None else "kprobes/enabled missing"
        evidence["enabled_error"] = why
        return _finding(
            spec, ERROR, f"{len(live)} kprobe(s) registered, armed state unknown: {why}", evidence
        )
    if armed and live:
        n_ret = sum(e.type == "r" for e in live)
        kinds = f"{n_ret} kretprobe(s), {len(live) - n_ret} kprobe(s)"
        hot_text = f"; on hot paths: {', '.join(hot_live)}" if hot_live else ""
        return _finding(spec, FAIL, f"{len(live)} armed: {kinds}{hot_text}", evidence)
    if armed is False:
        return _finding(
            spec,
            WARN,
            f"kprobes globally disarmed but {len(entries)} still registered "
            "(re-arming brings them back)",
            evidence,
        )
    return _finding(
        spec, PASS, f"{len(entries)} kprobe(s) registered, all disabled or gone", evidence
    )


@check("netdata.ebpf")
def check_netdata_ebpf(facts: HostFacts, spec: CheckSpec, ctx: dict[str, Any]) -> Finding:
    running = sorted(pid for pid, comm in facts.processes.items() if comm in EBPF_PLUGINS)
    if not facts.netdata_installed() and not running and not facts.netdata_sources.daemons:
        return _finding(spec, SKIP, "netdata is not installed")
    verdicts = facts.netdata_verdicts()
    evidence: dict[str, Any] = {
        "netdata_conf": facts.netdata_conf_path,
        "setting": verdicts[0].how if verdicts else None,  # the file in use (docs/json.md)
        "configs": [
            {"reader": v.reader, "files": list(v.files), "ebpf": v.on, "setting": v.how}
            for v in verdicts
        ],
        "plugins": facts.netdata_plugins,
        "ebpf_plugin_pids": running,
        "version": facts.netdata_version_text,
    }
    if facts.ebpf_programs_on is not None:
        evidence["ebpf_d_conf"] = facts.ebpf_conf_path
        evidence["programs_on"] = facts.ebpf_programs_on
    on = [v for v in verdicts if v.on]
    unknown = [v for v in verdicts if v.on is None]
    if on:
        state = f"running (pid {', '.join(map(str, running))})" if running else "not running now"
        extra = f"; {len(verdicts) - len(on)} other config(s) say off" if len(verdicts) > 1 else ""
        if len(on) == 1 and len(verdicts) == 1:
            what = f"eBPF plugin configured on ({on[0].how})"
        else:
            what = "eBPF plugin configured on for " + "; ".join(v.describe() for v in on)
        return _finding(spec, FAIL, f"{what}{extra}; ebpf.plugin {state}", evidence)
    if unknown:
        reasons = []
        for v in unknown:
            reads = [facts.files.get(p) for p in v.files]
            bad = [r for r in reads if r is not None and not r.ok and not r.absent]
            reasons.append(
                f"netdata.conf unreadable: {_unreadable(bad[0], facts)}" if bad else v.describe()
            )
        return _finding(spec, ERROR, "; ".join(reasons), evidence)
    if running:
        return _finding(
            spec,
            WARN,
            f"eBPF configured off but ebpf.plugin still running "
            f"(pid {', '.join(map(str, running))}): restart netdata",
            evidence,
        )
    how = "; ".join(v.how for v in verdicts) or "no netdata.conf and no eBPF plugin"
    return _finding(spec, PASS, f"eBPF plugin off ({how})", evidence)


def _version_tuple(text: str) -> tuple[int, int, int]:
    parts = [int(p) for p in str(text).split(".")] + [0, 0, 0]
    return parts[0], parts[1], parts[2]


@check("netdata.version")
def check_netdata_version(facts: HostFacts, spec: CheckSpec, ctx: dict[str, Any]) -> Finding:
    if not facts.netdata_installed():
        return _finding(spec, SKIP, "netdata is not installed")
    minimum = _version_tuple(spec.params.get("min_version", "1.37.0"))
    version = facts.netdata_version
    evidence: dict[str, Any] = {
        "version": facts.netdata_version_text,
        "binary": facts.netdata_binary,
        "min_version": ".".join(map(str, minimum)),
    }
    if version is None:
        return _finding(spec, SKIP, "netdata version unknown (netdata -v not available)", evidence)
    on = any(v.on is not False for v in facts.netdata_verdicts())
    vtext = ".".join(map(str, version))
    if on and version < minimum:
        return _finding(
            spec,
            WARN,
            f"netdata {vtext} with eBPF on is older than {evidence['min_version']}",
            evidence,
        )
    return _finding(spec, PASS, f"netdata {vtext}" + ("" if on else " (eBPF off)"), evidence)


@check("bpf.tracing_programs")
def check_bpf(facts: HostFacts, spec: CheckSpec, ctx: dict[str, Any]) -> Finding:
    allow = {str(a) for a in spec.params.get("allow_owners", [])}
    evidence: dict[str, Any] = {"source": facts.bpf_source}
    trampolines: list[str] = []
    ef = facts.enabled_functions
    if ef is not None and ef.value is not None:
        trampolines = sorted(f.name for f in ef.value if f.owner == "bpf-trampoline")
        if trampolines:
            evidence["fentry_trampolines"] = trampolines
    elif ef is not None and not ef.read.absent:
        evidence["enabled_functions_error"] = _why_not(ef, facts)
    if facts.bpf_source is None:
        if trampolines:
            return _finding(
                spec,
                WARN,
                f"BPF trampolines on {', '.join(trampolines[:5])} "
                f"(programs not listable: {facts.bpf_error})",
                evidence,
            )
        # A bpftool that answered garbage is an unreadable fact; only absence is "skip".
        status = ERROR if facts.bpf_unreadable else SKIP
        return _finding(spec, status, facts.bpf_error or "no bpftool and no /proc fdinfo", evidence)
    tracing = [p for p in facts.bpf_programs if p.tracing]
    shown = [p for p in tracing if not p.owners or not all(c in allow for _, c in p.owners)]
    evidence["programs"] = [
        {
            "id": p.id,
            "type": p.type,
            "name": p.name,
            "owners": [{"pid": pid, "comm": comm} for pid, comm in p.owners],
        }
        for p in tracing
    ]
    stats_on = ""
    if facts.bpf_stats_enabled:
        # Timing every run costs each program two clock reads; fleet profile switches it on
        # for its window only, so 1 here was left by someone (or a profile that was killed).
        evidence["bpf_stats_enabled"] = True
        stats_on = (
            "; kernel.bpf_stats_enabled is 1 (every BPF run timed: "
            "sysctl -w kernel.bpf_stats_enabled=0)"
        )
    if shown:
        owners = sorted({f"{comm or '?'}({pid})" for p in shown for pid, comm in p.owners})
        types = sorted({p.type for p in shown})
        return _finding(
            spec,
            WARN,
            f"{len(shown)} tracing program(s) ({', '.join(types)}) loaded"
            f"{' by ' + ', '.join(owners[:4]) if owners else ''}{stats_on}",
            evidence,
        )
    if trampolines:
        text = f"BPF trampolines on {', '.join(trampolines[:5])}{stats_on}"
        return _finding(spec, WARN, text, evidence)
    if stats_on:
        return _finding(spec, WARN, f"no BPF tracing programs loaded{stats_on}", evidence)
    return _finding(
        spec,
        PASS,
        "no BPF tracing programs loaded" + (" (allowed owners only)" if tracing else ""),
        evidence,
    )


@check("cpu.system")
def check_cpu(facts: HostFacts, spec: CheckSpec, ctx: dict[str, Any]) -> Finding:
    window = ctx.get("cpu_window", 0)
    if not window:
        return _finding(spec, SKIP, "CPU not sampled (--cpu-window 0)")
    if facts.cpu is None:
        return _finding(spec, ERROR, f"CPU sample failed: {facts.cpu_error or 'no /proc/stat'}")
    threshold = float(spec.params.get("threshold_pct", CPU_THRESHOLD_PCT))
    c = facts.cpu
    evidence = {
        "system_pct": c.system_pct,
        "user_pct": c.user_pct,
        "busy_pct": c.busy_pct,
        "cpus": c.cpus,
        "window_s": window,
        "threshold_pct": threshold,
    }
    hottest = sorted(c.per_cpu, key=lambda s: s.system_pct, reverse=True)[:3]
    if hottest:
        evidence["hottest_cpus"] = [{"cpu": s.cpu, "system_pct": s.system_pct} for s in hottest]
    text = f"system {c.system_pct:.1f}% / user {c.user_pct:.1f}% of {c.cpus} CPU(s) over {window}s"
    if c.system_pct > threshold:
        return _finding(spec, FAIL, f"{text} (threshold {threshold:g}%)", evidence)
    return _finding(spec, PASS, text, evidence)


def check_file(facts: HostFacts, spec: CheckSpec, ctx: dict[str, Any]) -> Finding:
    """A playbook-defined check on one remote file: equals / empty / ini key equals."""
    assert spec.path is not None and spec.test is not None
    read = facts.files.get(spec.path) or FileRead(spec.path, errno="ENOENT", message="not read")
    evidence: dict[str, Any] = {"path": spec.path, "test": spec.test}
    if read.absent:
        st = spec.when_absent
        return _finding(spec, st, f"{spec.path} does not exist", evidence)
    if not read.ok:
        return _finding(spec, ERROR, f"unreadable: {_unreadable(read, facts)}", evidence)
    text = read.text or ""
    if "equals" in spec.test:
        want = str(spec.test["equals"]).strip()
        got = text.strip()
        evidence["value"] = got
        ok = got == want
        msg = f"{spec.path} = {got!r}" + ("" if ok else f", expected {want!r}")
    elif "empty" in spec.test:
        # Lines as C splits them (on "\n" only); a line of \r or U+2028 is not empty.
        got_lines = [line for line in text.split("\n") if line.strip(" \t")]
        evidence["lines"] = got_lines[:20]
        ok = not got_lines if spec.test["empty"] else bool(got_lines)
        msg = f"{spec.path} has {len(got_lines)} non-empty line(s)"
    else:
        ini = spec.test["ini"]
        section, key = str(ini["section"]).lower(), str(ini["key"]).lower()
        value = parse_ini(text).get(section, {}).get(key)
        evidence["value"] = value
        want = str(ini["equals"]).strip()
        ok = value is not None and value.strip().lower() == want.lower()
        msg = f"[{section}] {key} = {value!r}" + ("" if ok else f", expected {want!r}")
    return _finding(spec, PASS if ok else FAIL, msg, evidence)


def run_checks(facts: HostFacts, playbook: Playbook, cpu_window: int) -> list[Finding]:
    """Every check of the playbook on one host's facts; a crashing check becomes an error."""
    ctx = {"cpu_window": cpu_window}
    unknown = facts.unknown_root
    findings = []
    for spec in playbook.checks:
        fn = check_file if spec.path else CHECKS[spec.id]
        try:
            finding = fn(facts, spec, ctx)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            finding = _finding(spec, ERROR, f"could not evaluate: {exc}")
        chosen_skip = spec.id == "cpu.system" and not cpu_window  # --cpu-window 0
        if unknown and finding.status == SKIP and not chosen_skip:
            # "Not there" is only known on a host whose /proc could be read: a fleet_root
            # typo or an empty tree must not come out compliant.
            finding = _finding(spec, ERROR, f"{finding.summary}, but {unknown}")
        findings.append(finding)
    return findings
