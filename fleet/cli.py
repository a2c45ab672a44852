"""Command line: argument parsing and exit codes only; the work happens in the modules."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import shlex
import signal
import sys
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn

from fleet import __version__
from fleet.errors import UsageError

EXIT_USAGE = 2
# A bug in fleet itself (sysexits' EX_SOFTWARE): never 1, which means "non-compliant".
EXIT_INTERNAL = 70
EXIT_INTERRUPTED = 130  # SIGINT (128 + 2)
EXIT_TERMINATED = 143  # SIGTERM (128 + 15)


class _Parser(argparse.ArgumentParser):
    """One line for a usage mistake, like every other user error (exit 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _number(kind: type[int] | type[float], minimum: float, what: str) -> Callable[[str], Any]:
    """An argparse type: a number of `kind` that is at least `minimum` (else exit 2)."""

    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{text!r} must be at least {minimum:g}")
        return value

    return parse


_positive_int = _number(int, 1, "a whole number")
# 0 skips the CPU sample; a window is whole seconds because `sleep` on busybox takes no fraction.
_cpu_window = _number(int, 0, "a whole number of seconds")
_seconds = _number(float, 0.1, "a number of seconds")


def _add_target_options(
    p: argparse.ArgumentParser, target: str = "--limit", window: str = "--cpu-window"
) -> None:
    """Inventory, targets, playbook, fan-out and SSH options. Changing commands name their
    targets with a required --host; the audit narrows with an optional --limit."""
    p.add_argument(
        "-i",
        "--inventory",
        type=Path,
        help="Ansible inventory: YAML, INI, a directory, or anything ansible-inventory reads "
        "($FLEET_INVENTORY, else inventory/hosts.yml)",
    )
    p.add_argument(
        target,
        dest="limit",
        action="append",
        required=target == "--host",
        metavar="PATTERN",
        help="Ansible host pattern: names, wildcards, '~regex', 'g[0]'/'g[1:3]' subscripts; "
        "',' or ':' to join, '!x' exclude, '&x' intersect"
        + ("; repeatable" if target == "--host" else ""),
    )
    p.add_argument(
        "--playbook", type=Path, help="checks to run (default playbooks/kernel-tracing.yml)"
    )
    p.add_argument(
        "-f",
        "--forks",
        type=_positive_int,
        default=20,
        help="hosts connecting or starting their probe at once (default 20)",
    )
    if target == "--limit":  # reading commands; a remediation stays on one process
        p.add_argument(
            "--procs",
            type=_positive_int,
            metavar="N",
            help="worker processes, each with its own threads (default: one per 500 hosts, "
            "at most one per core)",
        )
        p.add_argument(
            "--scheduler",
            metavar="ADDRESS",
            help="run the hosts on the workers of this Dask scheduler (tcp://HOST:8786; "
            "needs pip install 'fleet[dask]')",
        )
        p.add_argument(
            "--shard-by",
            default="fleet_site",
            metavar="VAR",
            help="with --scheduler: a host's VAR value picks the Dask workers holding the "
            "resource VAR:VALUE (default fleet_site)",
        )
    else:
        p.set_defaults(procs=1, scheduler=None, shard_by="fleet_site")
    p.add_argument(
        "--max-open",
        type=_positive_int,
        default=256,
        help="connections held open while probes sample CPU (default 256)",
    )
    p.add_argument(
        window,
        dest="cpu_window",
        type=_cpu_window if window == "--cpu-window" else _positive_int,
        default=5,
        metavar="SECONDS",
        help="seconds between the two /proc/stat samples (default 5; 0 skips)"
        if window == "--cpu-window"
        else "seconds of samples and counters (default 5)",
    )
    p.add_argument(
        "--connect-timeout",
        type=_seconds,
        default=10.0,
        metavar="SECONDS",
        help="TCP connect + SSH handshake + auth, per attempt (default 10)",
    )
    p.add_argument(
        "--timeout",
        type=_seconds,
        metavar="SECONDS",
        help="audit: per-host deadline for everything (default connect timeout + window + "
        "60); remediate/rollback: the bound of each remote command (default 60) plus its waits",
    )
    p.add_argument(
        "--known-hosts",
        type=Path,
        metavar="FILE",
        help="known_hosts file checked before fleet_known_hosts and ~/.ssh/known_hosts",
    )
    p.add_argument(
        "--accept-new-host-keys",
        action="store_true",
        help="record unknown host keys (like StrictHostKeyChecking=accept-new); "
        "a changed key is always refused",
    )
    p.add_argument(
        "-K",
        "--ask-become-pass",
        action="store_true",
        help="ask once, on the terminal, for the sudo password of ansible_become hosts "
        "that have no ansible_become_password",
    )
    p.set_defaults(become_password=None)  # main() asks for it when -K is given


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="fleet",
        description="Find, fix and prove the fix of kernel-tracing overhead, fleet-wide, over SSH.",
    )
    parser.add_argument("--version", action="version", version=f"fleet {__version__}")
    parser.add_argument(
        "--debug", action="store_true", help="tracebacks and SSH library logs on stderr"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    audit = sub.add_parser(
        "audit",
        help="read-only audit of every host, one SSH exec per host",
        description="Read-only audit: tracepoints, kprobes, probe events, "
        "netdata eBPF, BPF programs and system CPU, every host in one round trip.",
    )
    _add_target_options(audit)
    audit.add_argument("-v", "--verbose", action="store_true", help="each check's evidence and fix")
    audit.add_argument("--json", action="store_true", help="machine-readable output (schema 1)")
    audit.add_argument("-o", "--output", type=Path, metavar="FILE", help="write the output to FILE")
    group = audit.add_mutually_exclusive_group()
    group.add_argument(
        "--group",
        dest="group",
        action="store_true",
        default=None,
        help="one row per group of hosts with identical findings",
    )
    group.add_argument("--no-group", dest="group", action="store_false", help="one row per host")
    audit.add_argument("--no-color", action="store_true", help="no ANSI colors (also NO_COLOR=1)")
    audit.add_argument(
        "--profile",
        action="store_true",
        help="also profile each host over the CPU window (perf, BPF run time; docs/profile.md) "
        "and judge profile.probe_share and profile.lock_spin",
    )

    prof = sub.add_parser(
        "profile",
        help="read-only: where each host's CPU goes (perf, BPF run time, probe hit rates)",
        description="Where each host's CPU goes over a window, best source first: perf "
        "samples with kernel call chains (share in kprobe, BPF and spin-lock frames, the "
        "hooked functions), BPF programs' run time, kprobe hit rates. One SSH exec per host.",
    )
    _add_target_options(prof, window="--window")
    prof.add_argument(
        "--frequency",
        type=_positive_int,
        default=99,
        metavar="HZ",
        help="perf samples a second per CPU (default 99)",
    )
    prof.add_argument("-v", "--verbose", action="store_true", help="top stacks, programs, hooks")
    prof.add_argument(
        "--json", action="store_true", help="machine-readable output (docs/profile.md)"
    )
    prof.add_argument("-o", "--output", type=Path, metavar="FILE", help="write the output to FILE")
    prof.add_argument(
        "--folded",
        type=Path,
        metavar="DIR",
        help="write each host's folded stacks to DIR/HOST.folded (flamegraph.pl, speedscope)",
    )
    prof.add_argument(
        "--html", type=Path, metavar="FILE", help="write a page with one flame graph per host"
    )

    rem = sub.add_parser(
        "remediate",
        help="plan (default) or apply the playbook's fixes, journaled, then verify",
        description="Plan the playbook's fixes per host as a diff; with --apply, lock each "
        "host, journal and apply the steps in the kernel's order, then prove the fix: CPU "
        "before vs after and a re-audit. Undo with fleet rollback.",
    )
    _add_target_options(rem, target="--host")
    rem.add_argument("--apply", action="store_true", help="change the hosts (asks on a TTY)")
    rem.add_argument("--yes", action="store_true", help="do not ask (needed without a TTY)")
    rem.add_argument(
        "--verify",
        choices=("cpu", "profile"),
        default="cpu",
        help="cpu (default): CPU before vs after and a re-audit; profile: also fleet's "
        "profile before and after, 'proven' when no kprobe/BPF frame remains",
    )
    rem.add_argument(
        "--html",
        type=Path,
        metavar="FILE",
        help="with --verify profile: each host's flame graphs before and after",
    )
    rem.add_argument(
        "--settle",
        type=_number(float, 0, "a number of seconds"),
        metavar="SECONDS",
        help="wait between the last step and the after sample (default: playbook, 5)",
    )
    rem.add_argument(
        "--batch",
        type=_positive_int,
        default=5,
        help="hosts remediated at once after the canary (default 5)",
    )
    rem.add_argument(
        "--max-fail",
        type=_number(int, 0, "a whole number"),
        default=0,
        help="failed hosts tolerated over the whole run before no new host starts (default 0)",
    )
    rem.add_argument(
        "--lock-ttl",
        type=_seconds,
        default=3600.0,
        metavar="SECONDS",
        help="a host lock older than this is stale and taken over (default 3600)",
    )
    _add_output_options(rem)

    back = sub.add_parser(
        "rollback",
        help="undo a remediation from its journal, last step first",
        description="Restore what a remediation changed, byte for byte, in reverse order, "
        "restarting netdata when its config changes; completes a run that was killed.",
    )
    _add_target_options(back, target="--host")
    back.add_argument("--run", metavar="ID", help="run id (default: the newest with changes)")
    back.add_argument(
        "--lock-ttl", type=_seconds, default=3600.0, metavar="SECONDS", help=argparse.SUPPRESS
    )
    _add_output_options(back)

    _add_report_parser(sub)

    hosts = sub.add_parser(
        "hosts",
        help="where and as whom each host is reached (ssh_config applied); connects to nothing",
        description="List the targeted hosts as fleet would connect to them: address, port, "
        "user, keys, jump hosts or proxy command, from the inventory and OpenSSH's own "
        "reading of ssh_config (ssh -G). Nothing is contacted.",
    )
    hosts.add_argument("-i", "--inventory", type=Path, help="Ansible inventory (as for audit)")
    hosts.add_argument(
        "--limit", action="append", metavar="PATTERN", help="hosts or groups, as for audit"
    )
    hosts.add_argument("-v", "--verbose", action="store_true", help="each setting's source")
    hosts.add_argument("--json", action="store_true", help="machine-readable (docs/json.md)")

    lab = sub.add_parser("lab", help="local lab fleet: one real sshd on loopback + host trees")
    lab.add_argument("action", choices=["up", "down", "status"])
    lab.add_argument("--hosts", type=_positive_int, default=6, help="number of hosts (default 6)")
    lab.add_argument(
        "--scenario",
        default="mixed",
        help="mixed (one of each, cycling) or one scenario for every host",
    )
    lab.add_argument("--state-dir", type=Path, help="lab state ($FLEET_LAB_DIR, else .lab)")
    lab.add_argument(
        "--inventory-out",
        type=Path,
        default=Path("inventory/lab.yml"),
        help="where to write the lab inventory (default inventory/lab.yml)",
    )
    lab.add_argument("--no-cpu-model", action="store_true", help="static /proc/stat files")
    lab.add_argument(
        "--no-kernel-model",
        action="store_true",
        help="passive host trees: writes do not ripple like a kernel's (for benchmarks)",
    )
    return parser


def _add_output_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="machine-readable output (schema 1)")
    p.add_argument("-o", "--output", type=Path, metavar="FILE", help="write the output to FILE")


def _write_output(text: str, path: Path | None, private: bool = False) -> None:
    """stdout, or PATH written atomically; `private` (0600) for output that carries file
    contents from hosts, such as a remediation's before/after netdata.conf."""
    if path is None:
        sys.stdout.write(text)
        return
    from fleet.config.outfile import write_atomic

    write_atomic(path, text, 0o600 if private else 0o644)  # never replaces a FIFO with a file
    print(f"fleet: wrote {path}", file=sys.stderr)


def _prepare(args: argparse.Namespace) -> tuple[Any, Any, Path]:
    from fleet.audit.run import prepare
    from fleet.config.targets import AuditRequest

    hosts, ctx, playbook_path = prepare(AuditRequest.from_namespace(args))
    _warn(ctx.warnings)
    return hosts, ctx, playbook_path


def _warn(warnings: list[str]) -> None:
    for warning in warnings:
        print(f"fleet: warning: {warning}", file=sys.stderr)


def cmd_hosts(args: argparse.Namespace) -> int:
    from fleet.render import hosts as render
    from fleet.transport.hosts import list_hosts

    listed = list_hosts(args.inventory, args.limit)
    _warn(listed.warnings)
    if args.json:
        from fleet.render.json_out import render_json

        sys.stdout.write(render_json(render.hosts_document(listed.hosts)))
    else:
        text = render.render_hosts_verbose(listed.hosts) if args.verbose else ""
        sys.stdout.write(text + render.render_hosts_table(listed.hosts))
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    from fleet.audit.run import audit_fleet
    from fleet.model import exit_code
    from fleet.render.progress import ProgressBar

    hosts, ctx, playbook_path = _prepare(args)
    if args.profile:
        from fleet.profile.run import probe_beside_profile

        if not args.cpu_window:
            raise UsageError("--profile samples over the CPU window: give --cpu-window 1 or more")
        run = audit_fleet(hosts, ctx, ProgressBar, probe_beside_profile())
    else:
        run = audit_fleet(hosts, ctx, ProgressBar)
    if args.json:
        from fleet.render.json_out import audit_document, render_json

        text = render_json(audit_document(run, "audit", str(playbook_path)))
    else:
        from fleet.render.table import render_table, render_verbose

        color = (
            args.output is None
            and sys.stdout.isatty()
            and not args.no_color
            and not os.environ.get("NO_COLOR")
        )
        text = render_verbose(run.hosts, color) if args.verbose else ""
        text += render_table(run.hosts, group=args.group, color=color)
    _write_output(text, args.output)
    return exit_code([h.status for h in run.hosts])


def cmd_profile(args: argparse.Namespace) -> int:
    from fleet.model import exit_code, utc_now
    from fleet.profile.run import profile_fleet
    from fleet.render import profile as render
    from fleet.render.progress import ProgressBar

    hosts, ctx, _playbook_path = _prepare(args)
    started = utc_now()
    profiles = profile_fleet(hosts, ctx, args.frequency, ProgressBar)
    finished = utc_now()
    if args.folded is not None:
        from fleet.render.profile_files import write_folded

        for path in write_folded(profiles, args.folded):
            print(f"fleet: wrote {path}", file=sys.stderr)
    if args.html is not None:
        from fleet.render.flamegraph import profile_page

        _write_output(profile_page(profiles, ctx.playbook.profile, finished), args.html)
    if args.json:
        from fleet.render.json_out import render_json

        doc = render.profile_document(profiles, started, finished, args.cpu_window, args.frequency)
        text = render_json(doc)
    else:
        text = render.render_profile_verbose(profiles) if args.verbose else ""
        text += render.render_profile_table(profiles)
    _write_output(text, args.output)
    return exit_code([p.verdict for p in profiles])


def _remediate_context(args: argparse.Namespace, command: str) -> tuple[Any, list[Any], Path]:
    from fleet.config.statedir import state_dir
    from fleet.remediate.context import RemediateContext
    from fleet.remediate.journal import new_run_id

    hosts, audit, playbook_path = _prepare(args)
    if not audit.playbook.fixes:
        raise UsageError(f"{playbook_path}: the playbook has no `fixes:` to {command}")
    ctx = RemediateContext(
        audit=audit,
        run_id=new_run_id(),
        state_dir=state_dir(),
        settle_s=getattr(args, "settle", None),
        lock_ttl_s=args.lock_ttl,
        verify_profile=getattr(args, "verify", "cpu") == "profile",
    )
    return ctx, hosts, playbook_path


def _ask_become_pass() -> str | None:
    """-K: asked once, without echo, on the terminal only. Never read from stdin: it may be
    piped data or the --apply confirmation. An empty answer means no password (sudo -n)."""
    try:
        os.close(os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY))
    except OSError:
        raise UsageError(
            "--ask-become-pass needs a terminal; without one set ansible_become_password, "
            "e.g. \"{{ lookup('env', 'FLEET_BECOME_PASS') }}\""
        ) from None
    import getpass

    try:
        return getpass.getpass("BECOME password: ") or None
    except EOFError:
        raise UsageError("--ask-become-pass: no password given") from None


def _confirm(question: str) -> bool:
    print(question + " [y/N] ", end="", file=sys.stderr, flush=True)
    return sys.stdin.readline().strip().lower() in ("y", "yes")


def cmd_remediate(args: argparse.Namespace) -> int:
    from fleet.remediate.results import remediation_exit_code
    from fleet.remediate.rollout import plan_fleet, remediate_fleet
    from fleet.render.json_out import render_json
    from fleet.render.progress import ProgressBar
    from fleet.render.remediation import remediation_document, render_plan, render_results

    if args.apply and not args.yes and not sys.stdin.isatty():
        raise UsageError("--apply without a terminal to confirm on: add --yes")
    if args.html is not None and args.verify != "profile":
        raise UsageError("--html draws the profiles of --verify profile: add --verify profile")
    ctx, hosts, playbook_path = _remediate_context(args, "remediate")
    if not args.apply or not args.yes:
        plan = plan_fleet(hosts, ctx, ProgressBar)
        planned = any(s.status == "planned" for h in plan.hosts for s in h.steps)
        if not args.apply:
            if args.json:
                text = render_json(remediation_document(plan, "remediate", str(playbook_path)))
            else:
                text = render_plan(plan)
            _write_output(text, args.output, private=True)
            return remediation_exit_code(plan.hosts) | (1 if planned else 0)
        sys.stderr.write(render_plan(plan))
        if not planned:
            return remediation_exit_code(plan.hosts)
        if not _confirm(f"Apply these steps to {len(hosts)} host(s)?"):
            print("fleet: nothing was changed", file=sys.stderr)
            return 1
    stopped: list[int] = []
    with _stop_on_signals(ctx, stopped):
        record = (sys.argv, str(playbook_path))
        run = remediate_fleet(hosts, ctx, args.batch, args.max_fail, record)
    if args.json:
        text = render_json(remediation_document(run, "remediate", str(playbook_path)))
    else:
        text = render_results(run)
    _write_output(text, args.output, private=True)
    if args.html is not None:
        from fleet.render.flamegraph import before_after_page

        _write_output(before_after_page(run.hosts, run.finished_at), args.html)
    targets = " ".join(f"--host {shlex.quote(p)}" for p in args.limit)
    # "undo with" only when the journal holds writes of this run not undone yet.
    undo = f"; undo with: fleet rollback {targets} --run {run.run_id}" if run.undo_pending else ""
    print(f"fleet: run {run.run_id}; journal {run.journal}{undo}", file=sys.stderr)
    if stopped:
        return EXIT_TERMINATED if stopped[0] == signal.SIGTERM else EXIT_INTERRUPTED
    return remediation_exit_code(run.hosts)


@contextlib.contextmanager
def _stop_on_signals(ctx: Any, stopped: list[int]) -> Iterator[None]:
    """SIGINT/SIGTERM while a remediation writes: no new step and no new host; the hosts in
    hand undo what they applied (or finish, when every step is in), release their locks, and
    the run ends with its run id printed. A second signal abandons at once (its locks are
    taken over by the next run from this controller, whose pid check finds the owner gone, or
    after --lock-ttl elsewhere; `fleet rollback` completes the run from its journal)."""

    def say(text: str) -> None:
        os.write(2, text.encode())  # not print(): the main thread may be inside one

    def handler(signum: int, _frame: Any) -> None:
        name = signal.Signals(signum).name
        if stopped:
            say(f"\nfleet: {name} again: abandoning run {ctx.run_id} now\n")
            os._exit(128 + signum)
        stopped.append(signum)
        ctx.stop.request(f"interrupted ({name})")
        say(
            f"\nfleet: {name}: stopping run {ctx.run_id}: hosts in hand undo what they "
            "applied and release their locks (again to abandon at once)\n"
        )

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def cmd_rollback(args: argparse.Namespace) -> int:
    from fleet.remediate.results import rollback_exit_code
    from fleet.remediate.rollout import rollback_fleet
    from fleet.render.json_out import render_json
    from fleet.render.progress import ProgressBar
    from fleet.render.remediation import remediation_document, render_results

    ctx, hosts, playbook_path = _remediate_context(args, "roll back")
    result = rollback_fleet(hosts, ctx, args.run, ProgressBar)
    if result is None:
        print("fleet: nothing to roll back on these hosts", file=sys.stderr)
        return 0
    if args.json:
        text = render_json(remediation_document(result, "rollback", str(playbook_path)))
    else:
        text = render_results(result, rollback=True)
    _write_output(text, args.output, private=True)
    return rollback_exit_code(result.hosts)


def _add_report_parser(sub: Any) -> None:
    report = sub.add_parser(
        "report",
        help="audit (or --from a saved audit), record it in the history, show drift, "
        "write table/markdown/json/html/junit/prometheus",
        description="The scheduled compliance report: audit, store the run in the history "
        "(SQLite), compare with the previous run (drift), apply waivers, render. Exit codes "
        "as audit's, over the hosts' states once waivers are applied.",
    )
    _add_target_options(report)
    report.add_argument(
        "--from",
        dest="from_file",
        type=Path,
        metavar="AUDIT.json",
        help="report on a saved 'fleet audit --json' instead of auditing",
    )
    report.add_argument(
        "--format",
        dest="formats",
        action="append",
        metavar="FMT[:PATH]",
        help="table (default), markdown, json, html, junit, prometheus; repeat for several, "
        "each to its PATH or into -o DIR",
    )
    report.add_argument(
        "-o", "--output", type=Path, metavar="PATH", help="file (one format) or directory"
    )
    report.add_argument(
        "--history",
        type=Path,
        metavar="PATH",
        help="SQLite history (default $FLEET_STATE_DIR or ~/.local/state/fleet, history.sqlite)",
    )
    report.add_argument(
        "--keep-days",
        type=_number(int, 0, "a whole number of days"),
        default=90,
        metavar="DAYS",
        help="drop runs older than this from the history (default 90; 0 keeps all)",
    )
    report.add_argument("--waivers", type=Path, metavar="FILE", help="waiver file (YAML)")
    report.add_argument(
        "--profile",
        action="store_true",
        help="profile each host over the CPU window: the profile checks, a flame graph per "
        "host in the HTML, the shares in Prometheus (docs/profile.md)",
    )
    report.add_argument(
        "--notify-webhook", dest="webhook", metavar="URL", help="POST a JSON summary on drift"
    )
    report.add_argument(
        "--notify-timeout",
        dest="webhook_timeout",
        type=_seconds,
        default=10.0,
        metavar="SECONDS",
        help="per attempt (default 10; 3 attempts)",
    )


def cmd_report(args: argparse.Namespace) -> int:
    from fleet.render.progress import ProgressBar
    from fleet.render.report_files import check_writable, plan_outputs, write_outputs
    from fleet.report.run import ReportRequest, notify_drift, run_report

    req = ReportRequest.from_namespace(args)
    plan = plan_outputs(req.formats, req.output)
    check_writable(plan, req.output)  # before the audit: a report nobody can write is exit 2
    result = run_report(req, progress=ProgressBar)
    stdout, written = write_outputs(plan, result.data)
    _warn(result.warnings + notify_drift(req, result.data))
    if stdout:
        sys.stdout.write(stdout)
    if sys.stderr.isatty():  # silent on success under cron and timers
        for path in written:
            print(f"fleet: wrote {path}", file=sys.stderr)
    return result.exit_code


def _lab_dir(args: argparse.Namespace) -> Path:
    return args.state_dir or Path(os.environ.get("FLEET_LAB_DIR") or ".lab")


def cmd_lab(args: argparse.Namespace) -> int:
    from fleet import lab

    state = _lab_dir(args)
    if args.action == "up":
        info = lab.up(
            state,
            hosts=args.hosts,
            scenario=args.scenario,
            inventory_out=args.inventory_out,
            cpu_model=not args.no_cpu_model,
            kernel_model=not args.no_kernel_model,
        )
        print(
            f"lab up: {len(info.hosts)} hosts behind sshd pid {info.sshd_pid} on "
            f"{info.address}:{info.port}"
        )
        print(f"inventory: {args.inventory_out}")
        print(f"try: fleet audit -i {args.inventory_out}")
        return 0
    if args.action == "down":
        stopped = lab.down(state)
        print("lab down" if stopped else f"no lab running in {state}")
        return 0
    st = lab.status(state)
    for key, value in st.items():
        print(f"{key}: {value}")
    return 0 if st.get("running") else 3


def _quiet_libraries(debug: bool) -> None:
    """paramiko logs handshake failures with tracebacks; fleet reports each host's problem in
    one line, so library logs reach stderr only under --debug."""
    if debug:
        logging.basicConfig(level=logging.DEBUG, format="%(name)s: %(message)s")
        return
    for name in ("paramiko", "invoke", "fabric"):
        log = logging.getLogger(name)
        log.addHandler(logging.NullHandler())
        log.propagate = False


def usage_line(exc: UsageError) -> str:
    """The one line a usage error gets: a pattern or a file's bytes quoted in it cannot break
    it into several or drive the terminal."""
    from fleet.render.table import one_line

    return f"fleet: error: {one_line(str(exc))}"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handlers = {
        "audit": cmd_audit,
        "profile": cmd_profile,
        "remediate": cmd_remediate,
        "rollback": cmd_rollback,
        "report": cmd_report,
        "hosts": cmd_hosts,
        "lab": cmd_lab,
    }
    debug = args.debug or bool(os.environ.get("FLEET_DEBUG"))
    _quiet_libraries(debug)
    try:
        if getattr(args, "ask_become_pass", False):
            args.become_password = _ask_become_pass()
        return handlers[args.command](args)
    except UsageError as exc:
        print(usage_line(exc), file=sys.stderr)
        return EXIT_USAGE
    except Exception as exc:  # a bug in fleet: say so in one line, keep the code distinct
        if debug:
            traceback.print_exc()
        print(
            f"fleet: internal error: {type(exc).__name__}: {exc} "
            "(a bug in fleet; --debug shows the traceback)",
            file=sys.stderr,
        )
        return EXIT_INTERNAL
    except KeyboardInterrupt:
        # Worker threads may sit in a connect or a remote CPU window for many seconds and
        # cannot be killed; an audit only reads, so leave without waiting for them.
        print("\nfleet: interrupted", file=sys.stderr)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(EXIT_INTERRUPTED)


if __name__ == "__main__":
    sys.exit(main())
