"""`make bench`: fleet audit against the SSH floor and the tools people use, in ONE run.

For each lab size it brings up `fleet lab up --hosts N` (one real sshd on 127.0.0.1, a file
tree per host, no CPU or kernel model so sshd's cost stays pure), then runs every tool over
every host, interleaved (A B C, B C A, C A B, ...) for --rounds rounds:

  fleet          `fleet audit --cpu-window 0 --forks F` (table output)
  floor          bench/floor.py: a bare paramiko thread pool, F threads, the same one exec
  ansible-raw    `ansible all -m raw -f F`   (OpenSSH client, ControlPersist, as shipped)
  ansible-raw-x25519  the same with `-o KexAlgorithms=curve25519-sha256`, the key exchange
                 paramiko uses: OpenSSH's default post-quantum kex costs the client far more
  ansible-shell  `ansible all -m shell -f F` (module run by Python on the target)
  pyinfra        `pyinfra INVENTORY exec --parallel F`

Every tool runs the same probe script (fleet/remote/probe.sh, window 0) once per host, reading the
same files under that host's fleet_root: fleet and the floor send it on stdin of
`sh -s -- NONCE ROOT 0`, the others as `sh -c SCRIPT sh NONCE ROOT 0`. A run counts only if
every host's probe reached its `done` frame.

Measured per run: wall time, client CPU (user + system of the tool's process and every process
it started, including ssh ControlPersist masters, which this process adopts as a child
subreaper and reaps), peak RSS of the largest of those processes, hosts per second.
Writes bench/results.json and prints a table with the ratios to the floor.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import platform
import re
import secrets
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

from floor import Target, write_targets  # noqa: E402

from fleet.remote.probe import probe_args, probe_script  # noqa: E402

TOOLS = ("fleet", "floor", "ansible-raw", "ansible-raw-x25519", "ansible-shell", "pyinfra")
SCHEMA = 1
X25519 = "curve25519-sha256,curve25519-sha256@libssh.org"
PR_SET_CHILD_SUBREAPER = 36

# Targets of issue 6, checked against the medians of one run.
FLEET_WALL_MAX = 1.2  # x floor
FLEET_CPU_MAX = 1.3  # x floor, per host
ANSIBLE_RAW_MIN = 5.0  # ansible -m raw wall / fleet wall
ANSIBLE_SHELL_MIN = 10.0
RSS_MAX_MB = 150.0
STARTUP_MAX_MS = 150.0
LINEAR_MAX = 1.2  # slope of the largest step / slope of the step before


@dataclass
class Run:
    tool: str
    hosts: int
    round: int
    wall_s: float
    user_s: float
    sys_s: float
    maxrss_kb: int
    ok: bool
    note: str = ""
    adopted: int = 0  # orphans (ssh ControlPersist masters) reaped after the tool exited
    server_s: float | None = None  # CPU of sshd's sessions and what they ran (the targets)

    @property
    def cpu_s(self) -> float:
        return self.user_s + self.sys_s


@dataclass
class Summary:
    tool: str
    hosts: int
    runs: int
    wall_median_s: float
    wall_min_s: float
    wall_max_s: float
    cpu_median_s: float
    cpu_per_host_ms: float
    maxrss_mb: float
    hosts_per_s: float
    server_per_host_ms: float | None = None  # sshd + remote commands, per host
    wall_ratio: float | None = None  # to the floor at the same N
    cpu_ratio: float | None = None


@dataclass
class Lab:
    hosts: int
    state: Path
    inventory: Path
    targets: Path
    warmup_targets: Path
    ansible_inventory: Path
    pyinfra_inventory: Path
    known_hosts: Path
    sshd_pid: int
    names: list[str] = field(default_factory=list)


# ---------------------------------------------------------------- pure parts (tested)


def summarise(runs: list[Run]) -> list[Summary]:
    """Median and spread per (tool, N) over the runs that succeeded; ratios to the floor."""
    groups: dict[tuple[str, int], list[Run]] = {}
    for r in runs:
        if r.ok:
            groups.setdefault((r.tool, r.hosts), []).append(r)
    out = []
    for (tool, n), rs in groups.items():
        walls = [r.wall_s for r in rs]
        cpu = statistics.median(r.cpu_s for r in rs)
        wall = statistics.median(walls)
        server = [r.server_s for r in rs if r.server_s is not None]
        out.append(
            Summary(
                tool=tool,
                hosts=n,
                runs=len(rs),
                wall_median_s=round(wall, 3),
                wall_min_s=round(min(walls), 3),
                wall_max_s=round(max(walls), 3),
                cpu_median_s=round(cpu, 3),
                cpu_per_host_ms=round(1000 * cpu / n, 2),
                maxrss_mb=round(max(r.maxrss_kb for r in rs) / 1024, 1),
                hosts_per_s=round(n / wall, 1) if wall > 0 else 0.0,
                server_per_host_ms=round(1000 * statistics.median(server) / n, 1)
                if server
                else None,
            )
        )
    floor = {s.hosts: s for s in out if s.tool == "floor"}
    for s in out:
        f = floor.get(s.hosts)
        if f is not None and f.wall_median_s > 0 and f.cpu_median_s > 0:
            s.wall_ratio = round(s.wall_median_s / f.wall_median_s, 2)
            s.cpu_ratio = round(s.cpu_median_s / f.cpu_median_s, 2)
    order = {t: i for i, t in enumerate(TOOLS)}
    out.sort(key=lambda s: (s.hosts, order.get(s.tool, 99)))
    return out


def _find(summary: list[Summary], tool: str, n: int) -> Summary | None:
    return next((s for s in summary if s.tool == tool and s.hosts == n), None)


def check_targets(summary: list[Summary], startup_ms: float | None) -> list[dict[str, object]]:
    """Each target of issue 6 that this run measured: value, limit, met."""
    targets: list[dict[str, object]] = []

    def add(name: str, value: float | None, limit: float, at_most: bool) -> None:
        if value is None:
            return
        met = value <= limit if at_most else value >= limit
        op = "<=" if at_most else ">="
        targets.append({"target": f"{name} {op} {limit:g}", "value": value, "met": met})

    sizes = sorted({s.hosts for s in summary if s.tool == "fleet"})
    for n in sizes:
        f = _find(summary, "fleet", n)
        if f is None or f.wall_ratio is None or n < 200:
            continue
        add(f"fleet wall / floor wall at N={n}", f.wall_ratio, FLEET_WALL_MAX, True)
        add(f"fleet CPU per host / floor's at N={n}", f.cpu_ratio, FLEET_CPU_MAX, True)
    for n in sizes:
        f = _find(summary, "fleet", n)
        assert f is not None
        for tool, limit in (
            ("ansible-raw", ANSIBLE_RAW_MIN),
            ("ansible-raw-x25519", ANSIBLE_RAW_MIN),
            ("ansible-shell", ANSIBLE_SHELL_MIN),
        ):
            other = _find(summary, tool, n)
            if other is not None:
                ratio = round(other.wall_median_s / f.wall_median_s, 1)
                add(f"{tool} wall / fleet wall at N={n}", ratio, limit, False)
        py = _find(summary, "pyinfra", n)
        if py is not None:
            add(
                f"pyinfra wall / fleet wall at N={n}",
                round(py.wall_median_s / f.wall_median_s, 2),
                1.0,
                False,
            )
    if sizes:
        big = _find(summary, "fleet", sizes[-1])
        assert big is not None
        if big.hosts >= 1000:
            add(f"fleet peak RSS MB at N={big.hosts}", big.maxrss_mb, RSS_MAX_MB, True)
    if len(sizes) >= 3:
        w = {n: _find(summary, "fleet", n).wall_median_s for n in sizes}  # type: ignore[union-attr]
        a, b, c = sizes[-3:]
        slope_ab = (w[b] - w[a]) / (b - a)
        slope_bc = (w[c] - w[b]) / (c - b)
        if slope_ab > 0:
            add(
                f"fleet wall slope {b}->{c} / slope {a}->{b} (linear in N)",
                round(slope_bc / slope_ab, 2),
                LINEAR_MAX,
                True,
            )
    if startup_ms is not None:
        add("`fleet --help` start-up ms", round(startup_ms, 1), STARTUP_MAX_MS, True)
    return targets


def render_table(summary: list[Summary]) -> str:
    head = (
        "N",
        "tool",
        "wall median",
        "wall min-max",
        "CPU",
        "CPU/host",
        "peak RSS",
        "hosts/s",
        "wall x floor",
        "CPU x floor",
        "sshd CPU/host",
    )
    rows = [head]
    for s in summary:
        rows.append(
            (
                str(s.hosts),
                s.tool,
                f"{s.wall_median_s:.2f} s",
                f"{s.wall_min_s:.2f}-{s.wall_max_s:.2f}",
                f"{s.cpu_median_s:.2f} s",
                f"{s.cpu_per_host_ms:.2f} ms",
                f"{s.maxrss_mb:.0f} MB",
                f"{s.hosts_per_s:.0f}",
                "-" if s.wall_ratio is None else f"{s.wall_ratio:.2f}",
                "-" if s.cpu_ratio is None else f"{s.cpu_ratio:.2f}",
                "-" if s.server_per_host_ms is None else f"{s.server_per_host_ms:.1f} ms",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = []
    for j, r in enumerate(rows):
        cells = [c.ljust(widths[i]) if i < 2 else c.rjust(widths[i]) for i, c in enumerate(r)]
        lines.append("  ".join(cells).rstrip())
        if j == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines) + "\n"


def render_targets(targets: list[dict[str, object]]) -> str:
    return "".join(
        f"{'met    ' if t['met'] else 'NOT MET'}  {t['target']}: {t['value']}\n" for t in targets
    )


def interleave(tools: list[str], rounds: int) -> list[tuple[int, str]]:
    """(round, tool) in run order: A B C, B C A, C A B, ... so no tool always goes first."""
    order = []
    for r in range(rounds):
        k = r % len(tools) if tools else 0
        order += [(r + 1, t) for t in tools[k:] + tools[:k]]
    return order


# ---------------------------------------------------------------- processes


def _set_subreaper(on: bool) -> None:
    """Orphans (ssh ControlPersist masters) re-parent to us, so their CPU can be reaped."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, int(on), 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")


def _our_children() -> list[int]:
    me = os.getpid()
    kids = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            stat = Path(f"/proc/{d}/stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == me:
            kids.append(int(d))
    return kids


def children_cpu_s(pid: int) -> float | None:
    """CPU of the processes `pid` has reaped (cutime + cstime): for sshd's listener, every
    session it served and, through them, every command they ran."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[13]) + int(fields[14])) / os.sysconf("SC_CLK_TCK")


def wait_no_children(pid: int, timeout: float = 3.0) -> None:
    """Until sshd's last session of a run has exited (its CPU counts only once reaped)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(_ppid(int(d)) == pid for d in os.listdir("/proc") if d.isdigit()):
            return
        time.sleep(0.05)


def _ppid(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def measure(
    argv: list[str], env: dict[str, str], out_path: Path, timeout: float
) -> tuple[int, float, float, float, int, int]:
    """Run argv to its end; (rc, wall, user, sys, maxrss_kb, orphans reaped) of it and of
    every process it started."""
    before = set(_our_children())
    _set_subreaper(True)
    try:
        with open(out_path, "wb") as out:
            t0 = time.monotonic()
            proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env
            )
            killer = threading.Timer(timeout, proc.kill)
            killer.start()
            try:
                _, st, ru = os.wait4(proc.pid, 0)  # blocks: the bench costs no CPU meanwhile
            finally:
                killer.cancel()
            wall = time.monotonic() - t0
        proc.returncode = os.waitstatus_to_exitcode(st)
        user, sys_, rss = ru.ru_utime, ru.ru_stime, ru.ru_maxrss
        adopted = 0
        # Adopted orphans (ControlPersist masters): stop them and count what they used.
        for _ in range(3):
            orphans = [p for p in _our_children() if p not in before]
            if not orphans:
                break
            for p in orphans:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p, signal.SIGTERM)
            for p in orphans:
                with contextlib.suppress(ChildProcessError):
                    _, _, ru = os.wait4(p, 0)
                    user += ru.ru_utime
                    sys_ += ru.ru_stime
                    rss = max(rss, ru.ru_maxrss)
                    adopted += 1
    finally:
        _set_subreaper(False)
    return proc.returncode, wall, user, sys_, rss, adopted


# ---------------------------------------------------------------- the lab and the tools


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.work = Path(tempfile.mkdtemp(prefix="fleet-bench-"))
        self.labs: list[Path] = []
        venv = Path(args.venv)
        self.py = str(venv / "bin" / "python")
        self.fleet = str(venv / "bin" / "fleet")
        self.ansible = str(venv / "bin" / "ansible")
        self.pyinfra = str(Path(args.pyinfra_venv) / "bin" / "pyinfra")
        # What fleet runs on each host: the probe script whole (fleet/remote/inside_root.sh
        # first), and its arguments after the nonce, root and window (netdata's files).
        self.script = probe_script()
        self.files = " ".join(shlex.quote(f) for f in probe_args("-", "-", 0)[3:])
        self.nonce = secrets.token_hex(8)
        self.runs: list[Run] = []
        self.log = open(self.work / "bench.log", "a")  # noqa: SIM115
        # Tools run as installed: their .pyc written (pip compiles what it installs; fleet is
        # an editable install here, so compile it), whatever this shell says.
        self.env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        subprocess.run(
            [self.py, "-m", "compileall", "-q", str(REPO / "fleet"), str(HERE / "floor.py")],
            check=True,
            stdout=self.log,
            env=self.env,
        )
        self._lab_flags: list[str] | None = None

    # -- lab
    def lab_flags(self) -> list[str]:
        """No CPU model, no kernel model (an sshd ForceCommand wrapper): sshd's cost stays pure."""
        if self._lab_flags is None:
            helptext = subprocess.run(
                [self.fleet, "lab", "--help"], capture_output=True, text=True, check=True
            ).stdout
            self._lab_flags = ["--no-cpu-model"]
            if "--no-kernel-model" in helptext:
                self._lab_flags.append("--no-kernel-model")
        return self._lab_flags

    def warm_up(self, lab: Lab) -> None:
        """One untimed floor pass over the first hosts: page cache, sshd's first forks."""
        measure(
            [
                self.py,
                str(HERE / "floor.py"),
                "--targets",
                str(lab.warmup_targets),
                "--forks",
                str(self.args.forks),
            ],
            self.env,
            self.work / "warmup.txt",
            self.args.timeout,
        )

    def lab_up(self, n: int) -> Lab:
        state = self.work / f"lab-{n}"
        inv_out = self.work / f"lab-{n}.yml"
        self.labs.append(state)
        cmd = [
            self.fleet,
            "lab",
            "up",
            "--hosts",
            str(n),
            "--scenario",
            "incident",
            *self.lab_flags(),
            "--state-dir",
            str(state),
            "--inventory-out",
            str(inv_out),
        ]
        subprocess.run(cmd, check=True, stdout=self.log, stderr=self.log)
        return self.describe_lab(n, state, inv_out)

    def lab_down(self, state: Path) -> None:
        subprocess.run(
            [self.fleet, "lab", "down", "--state-dir", str(state)],
            stdout=self.log,
            stderr=self.log,
            check=False,
        )

    def describe_lab(self, n: int, state: Path, inv_out: Path) -> Lab:
        """The lab inventory, rewritten for the floor (TSV), ansible and pyinfra."""
        import yaml

        doc = yaml.safe_load(inv_out.read_text())["all"]
        gv = doc["vars"]
        hosts: list[tuple[str, dict[str, object]]] = []
        for group in doc.get("children", {}).values():
            for name, hv in (group.get("hosts") or {}).items():
                hosts.append((name, {**gv, **(hv or {})}))
        known = Path(str(gv["fleet_known_hosts"]))
        targets = [
            Target(
                name,
                str(v["ansible_host"]),
                int(v["ansible_port"]),  # type: ignore[call-overload]
                str(v["ansible_user"]),
                str(v["ansible_ssh_private_key_file"]),
                str(v["fleet_known_hosts"]),
                str(v["fleet_root"]),
            )
            for name, v in hosts
        ]
        tsv = self.work / f"targets-{n}.tsv"
        write_targets(tsv, targets)
        warm = self.work / f"warmup-{n}.tsv"
        write_targets(warm, targets[:50])
        # Ansible: the same hosts; each its own ControlPersist master, as on a real fleet
        # (all lab hosts share one address, so ssh would otherwise multiplex them all over
        # ONE connection).
        a_hosts = {}
        for t in targets:
            a_hosts[t.name] = {
                "ansible_host": t.address,
                "ansible_port": t.port,
                "ansible_user": t.user,
                "ansible_ssh_private_key_file": t.key,
                "ansible_control_path": f"%(directory)s/{t.name}",
                "fleet_root": t.root,
            }
        a_inv = self.work / f"ansible-{n}.yml"
        a_inv.write_text(yaml.safe_dump({"all": {"hosts": a_hosts}}, sort_keys=False))
        p_hosts = [
            (
                t.name,
                {
                    "ssh_hostname": t.address,
                    "ssh_port": t.port,
                    "ssh_user": t.user,
                    "ssh_key": t.key,
                    "ssh_known_hosts_file": t.known_hosts,
                    "ssh_strict_host_key_checking": "yes",
                    # exec runs one command line on every host: the root comes by environment.
                    "_env": {"FLEET_ROOT": t.root},
                },
            )
            for t in targets
        ]
        p_inv = self.work / f"pyinfra_{n}.py"
        p_inv.write_text(f"hosts = {p_hosts!r}\n")
        sshd_pid = int((state / "sshd.pid").read_text().strip())
        names = [t.name for t in targets]
        return Lab(n, state, inv_out, tsv, warm, a_inv, p_inv, known, sshd_pid, names)

    # -- tools
    def command(self, tool: str, lab: Lab, run_dir: Path) -> tuple[list[str], dict[str, str]]:
        env = dict(self.env)
        forks = str(self.args.forks)
        nonce = self.nonce
        if tool == "fleet":
            return [
                self.fleet,
                "audit",
                "-i",
                str(lab.inventory),
                "--cpu-window",
                "0",
                "--forks",
                forks,
            ], env
        if tool == "floor":
            return [
                self.py,
                str(HERE / "floor.py"),
                "--targets",
                str(lab.targets),
                "--forks",
                forks,
            ], env
        if tool.startswith("ansible"):
            # As shipped, but: the lab's known_hosts with strict checking, the same forks,
            # a control path dir per run, no "discovered interpreter" warnings.
            kex = f"-o KexAlgorithms={X25519}" if tool.endswith("-x25519") else ""
            cfg = run_dir / "ansible.cfg"
            cfg.write_text(
                "[defaults]\n"
                f"forks = {forks}\n"
                "host_key_checking = True\n"
                "retry_files_enabled = False\n"
                "interpreter_python = auto_silent\n"
                "[ssh_connection]\n"
                f"ssh_common_args = -o UserKnownHostsFile={lab.known_hosts} "
                f"-o GlobalKnownHostsFile=/dev/null -o StrictHostKeyChecking=yes {kex}\n"
                f"control_path_dir = {run_dir / 'cp'}\n"
            )
            (run_dir / "vars.json").write_text(json.dumps({"probe_script": self.script}))
            env.update(
                ANSIBLE_CONFIG=str(cfg),
                ANSIBLE_HOME=str(run_dir / "home"),
                ANSIBLE_LOCAL_TEMP=str(run_dir / "tmp"),
                ANSIBLE_NOCOLOR="1",
            )
            module = tool.split("-")[1]
            cmd = (
                f"sh -c {{{{ probe_script | quote }}}} sh {nonce} {{{{ fleet_root | quote }}}} 0 "
                + self.files
            )
            return [
                self.ansible,
                "all",
                "-i",
                str(lab.ansible_inventory),
                "-e",
                f"@{run_dir / 'vars.json'}",
                "-m",
                module,
                "-a",
                cmd,
                "-f",
                forks,
            ], env
        if tool == "pyinfra":
            env["HOME"] = str(run_dir)  # no ~/.ssh/config or pyinfra state of the user's
            cmd = f'sh -c {shlex.quote(self.script)} sh {nonce} "$FLEET_ROOT" 0 {self.files}'
            return [
                self.pyinfra,
                str(lab.pyinfra_inventory),
                "exec",
                "--parallel",
                forks,
                "--",
                cmd,
            ], env
        raise ValueError(tool)

    def check(self, tool: str, n: int, rc: int, text: str) -> tuple[bool, str]:
        """Did every host run the probe to its end?"""
        if tool == "fleet":
            m = re.search(
                r"^(\d+) host\(s\): (\d+) compliant, (\d+) non-compliant, "
                r"(\d+) error, (\d+) unreachable",
                text,
                re.M,
            )
            if not m:
                return False, f"rc {rc}, no summary line"
            total, _, noncompliant, _err, _unreachable = map(int, m.groups())
            ok = total == n and noncompliant == n and rc == 1
            return ok, "" if ok else f"rc {rc}: {m.group(0)}"
        done = text.count(f"{self.nonce} done")
        ok = rc == 0 and (f"{n}/{n} hosts" in text if tool == "floor" else done >= n)
        return ok, "" if ok else f"rc {rc}, {done}/{n} probes finished"

    def run_tool(self, tool: str, lab: Lab, rnd: int) -> Run:
        run_dir = self.work / f"{tool}-{lab.hosts}-{rnd}"
        run_dir.mkdir()
        argv, env = self.command(tool, lab, run_dir)
        out = run_dir / "output.txt"
        server0 = children_cpu_s(lab.sshd_pid)
        rc, wall, user, sys_, rss, adopted = measure(argv, env, out, self.args.timeout)
        wait_no_children(lab.sshd_pid)
        server1 = children_cpu_s(lab.sshd_pid)
        server = None if server0 is None or server1 is None else round(server1 - server0, 2)
        ok, note = self.check(tool, lab.hosts, rc, out.read_text(errors="replace"))
        run = Run(
            tool,
            lab.hosts,
            rnd,
            round(wall, 3),
            round(user, 3),
            round(sys_, 3),
            rss,
            ok,
            note,
            adopted,
            server,
        )
        self.runs.append(run)
        status = "" if ok else f"  FAILED: {note} (see {out})"
        extra = f"  ({adopted} orphaned ssh processes reaped)" if adopted else ""
        print(
            f"  round {rnd}  {tool:<18} N={lab.hosts:<5} wall {wall:6.2f} s  "
            f"cpu {user + sys_:6.2f} s  rss {rss / 1024:5.0f} MB  server cpu {server} s"
            f"{extra}{status}",
            flush=True,
        )
        if ok:
            shutil.rmtree(run_dir, ignore_errors=True)
        return run

    def startup_ms(self, runs: int = 15) -> dict[str, float]:
        def wall(argv: list[str]) -> float:
            times = []
            for _ in range(runs):
                t = time.perf_counter()
                subprocess.run(
                    argv,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    check=True,
                    env=self.env,
                )
                times.append(1000 * (time.perf_counter() - t))
            return round(statistics.median(times), 1)

        return {
            "python -c pass": wall([self.py, "-c", "pass"]),
            "fleet --help": wall([self.fleet, "--help"]),
            "fleet audit --help": wall([self.fleet, "audit", "--help"]),
            "python -c 'import paramiko'": wall([self.py, "-c", "import paramiko"]),
        }

    def close(self) -> None:
        for state in self.labs:
            self.lab_down(state)
        self.log.close()
        if not self.args.keep:
            shutil.rmtree(self.work, ignore_errors=True)


def ssh_default_kex() -> str:
    """The key exchange OpenSSH's client offers first when nothing is configured."""
    try:
        out = subprocess.run(
            ["ssh", "-G", "-F", "/dev/null", "127.0.0.1"], capture_output=True, text=True
        ).stdout
    except OSError:
        return "unknown"
    for line in out.splitlines():
        if line.startswith("kexalgorithms "):
            return line.split()[1].split(",")[0]
    return "unknown"


def machine(args: argparse.Namespace) -> dict[str, object]:
    def version(argv: list[str]) -> str:
        try:
            p = subprocess.run(argv, capture_output=True, text=True, timeout=30)
        except OSError:
            return "absent"
        return (p.stdout + p.stderr).strip().splitlines()[0] if (p.stdout + p.stderr) else ""

    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    venv = Path(args.venv) / "bin"
    pyinfra_py = Path(args.pyinfra_venv) / "bin" / "python"
    pver = "import paramiko, sys; print(paramiko.__version__)"
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "mem_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "openssh": version(["ssh", "-V"]),
        "paramiko": version([str(venv / "python"), "-c", pver]),
        "paramiko_pyinfra": version([str(pyinfra_py), "-c", pver]),
        "ansible_core": version([str(venv / "ansible"), "--version"]),
        "pyinfra": version([str(Path(args.pyinfra_venv) / "bin" / "pyinfra"), "--version"]),
        "ssh_kex_default": ssh_default_kex(),
        "ssh_kex_ansible_x25519": X25519,
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    env = os.environ
    p = argparse.ArgumentParser(prog="bench", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--hosts",
        type=int,
        default=int(env.get("BENCH_HOSTS", 200)),
        help="N at which every tool runs (default $BENCH_HOSTS or 200)",
    )
    p.add_argument(
        "--scale",
        default=env.get("BENCH_SCALE", "50,200,1000"),
        help="more N for fleet and the floor only (default 50,200,1000)",
    )
    p.add_argument("--rounds", type=int, default=int(env.get("BENCH_ROUNDS", 3)))
    p.add_argument(
        "--pair-rounds",
        type=int,
        default=int(env.get("BENCH_PAIR_ROUNDS", 6)),
        help="rounds of fleet vs the floor where N <= 200 (cheap, and the ratios that matter "
        "are close to 1, where this machine's noise shows most; default 6)",
    )
    p.add_argument("--forks", type=int, default=int(env.get("BENCH_FORKS", 50)))
    p.add_argument("--tools", default=env.get("BENCH_TOOLS", ",".join(TOOLS)))
    p.add_argument("--venv", default=str(REPO / ".venv-bench"))
    p.add_argument("--pyinfra-venv", default=str(REPO / ".venv-bench" / "pyinfra"))
    p.add_argument("--out", type=Path, default=HERE / "results.json")
    p.add_argument("--timeout", type=float, default=900.0, help="per tool run, seconds")
    p.add_argument("--keep", action="store_true", help="keep the work dir (outputs, configs)")
    args = p.parse_args(argv)
    args.tool_list = [t.strip() for t in args.tools.split(",") if t.strip()]
    bad = [t for t in args.tool_list if t not in TOOLS]
    if bad:
        p.error(f"unknown tools {bad}; choose from {', '.join(TOOLS)}")
    try:
        scale = {int(x) for x in re.split(r"[,\s]+", args.scale.strip()) if x}
    except ValueError:
        p.error(f"--scale {args.scale!r}: give whole numbers like 50,200,1000")
    args.sizes = sorted(scale | {args.hosts})
    if args.rounds < 1 or args.forks < 1 or min(args.sizes) < 1:
        p.error("--rounds, --forks and every N must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    started = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    bench = Bench(args)
    print(
        f"bench: work dir {bench.work}; sizes {args.sizes}; every tool at N={args.hosts}; "
        f"{args.rounds} rounds; forks {args.forks}",
        flush=True,
    )
    try:
        startup = bench.startup_ms()
        print(f"start-up (median of 15, ms): {startup}", flush=True)
        for n in args.sizes:
            tools = [t for t in args.tool_list if n == args.hosts or t in ("fleet", "floor")]
            lab = bench.lab_up(n)
            print(f"lab up: {n} hosts; tools {', '.join(tools)}", flush=True)
            bench.warm_up(lab)
            order = interleave(tools, args.rounds)
            pair = [t for t in tools if t in ("fleet", "floor")]
            if n <= 200 and args.pair_rounds > args.rounds:
                more = interleave(pair, args.pair_rounds)[len(pair) * args.rounds :]
                order += more
            for rnd, tool in order:
                bench.run_tool(tool, lab, rnd)
            bench.lab_down(lab.state)
            bench.labs.remove(lab.state)
    finally:
        bench.close()
    summary = summarise(bench.runs)
    targets = check_targets(summary, startup.get("fleet --help"))
    m = machine(args)
    doc = {
        "schema": SCHEMA,
        "started_at": started,
        "finished_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": m,
        "config": {
            "forks": args.forks,
            "rounds": args.rounds,
            "sizes": args.sizes,
            "all_tools_at": args.hosts,
            "tools": args.tool_list,
            "lab": "fleet lab up --scenario incident " + " ".join(bench.lab_flags()),
            "ciphers": "fleet prefers aes128-gcm@openssh.com; the floor and pyinfra take "
            "paramiko's default order (aes128-ctr + hmac-sha2-256); ansible takes OpenSSH's",
        },
        "startup_ms": startup,
        "runs": [asdict(r) | {"cpu_s": round(r.cpu_s, 3)} for r in bench.runs],
        "summary": [asdict(s) for s in summary],
        "targets": targets,
    }
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    print()
    print(render_table(summary))
    print(render_targets(targets))
    print(f"start-up, median of 15 runs (ms): {startup}")
    print(
        f"machine: {m['cpus']} x {m['cpu_model']}, {m['mem_gb']} GB, Linux {m['kernel']}, "
        f"Python {m['python']}, {m['openssh']}; paramiko {m['paramiko']} (fleet, floor), "
        f"{m['paramiko_pyinfra']} (pyinfra); {m['ansible_core']}; {m['pyinfra']}; "
        f"ssh kex: {m['ssh_kex_default']} by default, {X25519} for ansible-raw-x25519"
    )
    print(f"wrote {args.out}")
    failed = [r for r in bench.runs if not r.ok]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
