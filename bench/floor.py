"""The floor: a bare paramiko thread pool doing fleet audit's one exec per host, and no more.

Per host: TCP connect (TCP_NODELAY), SSH handshake, host key checked against a known_hosts
loaded once, public-key auth with a key loaded once, ONE session running
fleet's own remote command (`sh -s` under the host's `timeout`) with the same stdin (the
probe's arguments, then the probe script: fleet.remote.probe), stdout/stderr/exit status
read, close. Nothing is parsed or judged: whatever a real tool does beyond this is overhead.

    python bench/floor.py --targets targets.tsv --forks 50

`--targets` is a TSV file, one host a line: name, address, port, user, key file, known_hosts
file, root (bench/run.py writes it from the lab inventory). It prints one summary line and
exits 0 only if every host ran the probe to its end (its `done` frame), else 1; 2 on bad
arguments.
"""

from __future__ import annotations

import argparse
import json
import secrets
import socket
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

FIELDS = ("name", "address", "port", "user", "key", "known_hosts", "root")


@dataclass(frozen=True)
class Target:
    name: str
    address: str
    port: int
    user: str
    key: str
    known_hosts: str
    root: str


class TargetsError(ValueError):
    """The targets file cannot be used (bad line, missing file)."""


def read_targets(path: Path) -> list[Target]:
    """Parse the TSV targets file; blank lines and '#' comments are skipped."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise TargetsError(f"{path}: {exc.strerror or exc}") from None
    targets = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        cols = line.split("\t")
        if len(cols) != len(FIELDS):
            raise TargetsError(
                f"{path}:{lineno}: expected {len(FIELDS)} tab-separated fields "
                f"({', '.join(FIELDS)}), got {len(cols)}"
            )
        name, address, port, user, key, known_hosts, root = cols
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise TargetsError(f"{path}:{lineno}: port {port!r} is not a TCP port")
        targets.append(Target(name, address, int(port), user, key, known_hosts, root))
    if not targets:
        raise TargetsError(f"{path}: no targets")
    return targets


def write_targets(path: Path, targets: list[Target]) -> None:
    lines = ["#" + "\t".join(FIELDS)]
    for t in targets:
        cols = (t.name, t.address, str(t.port), t.user, t.key, t.known_hosts, t.root)
        if any("\t" in c or "\n" in c for c in cols):
            raise TargetsError(f"{t.name}: a field holds a tab or newline")
        lines.append("\t".join(cols))
    path.write_text("\n".join(lines) + "\n")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="floor", description=__doc__.split("\n\n")[0])
    p.add_argument("--targets", type=Path, required=True, help="TSV file of hosts")
    p.add_argument("--forks", type=int, default=50, help="hosts at once (default 50)")
    p.add_argument("--timeout", type=float, default=30.0, help="per-host seconds (default 30)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument(
        "--ciphers",
        default="",
        help="comma-separated ciphers to prefer (default: paramiko's own order)",
    )
    args = p.parse_args(argv)
    if args.forks < 1:
        p.error("--forks must be at least 1")
    if args.timeout <= 0:
        p.error("--timeout must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        targets = read_targets(args.targets)
    except TargetsError as exc:
        print(f"floor: {exc}", file=sys.stderr)
        return 2

    import paramiko  # after argument checks: --help and usage errors stay cheap

    from fleet.remote.probe import probe_stdin
    from fleet.remote.shell import shell_command

    keys: dict[str, paramiko.PKey] = {}
    known: dict[str, paramiko.HostKeys] = {}
    for t in targets:  # loaded once per file, before any thread starts
        if t.key not in keys:
            keys[t.key] = paramiko.PKey.from_path(t.key)
        if t.known_hosts not in known:
            known[t.known_hosts] = paramiko.HostKeys(t.known_hosts)
    nonce = secrets.token_hex(12)
    prefer = tuple(c for c in args.ciphers.split(",") if c)
    done_frame = f"{nonce} done".encode()

    def one(t: Target) -> str | None:
        """None when the probe ran to its end, else why not."""
        deadline = time.monotonic() + args.timeout
        try:
            sock = socket.create_connection((t.address, t.port), timeout=args.timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            tr = paramiko.Transport(sock)
            if prefer:
                opts = tr.get_security_options()
                opts.ciphers = prefer + tuple(c for c in opts.ciphers if c not in prefer)
            try:
                tr.start_client(timeout=args.timeout)
                name = t.address if t.port == 22 else f"[{t.address}]:{t.port}"
                server_key = tr.get_remote_server_key()
                if known[t.known_hosts].check(name, server_key) is not True:
                    return f"host key for {name} not in {t.known_hosts}"
                tr.auth_publickey(t.user, keys[t.key])
                chan = tr.open_session(timeout=args.timeout)
                chan.exec_command(shell_command(deadline))
                chan.sendall(probe_stdin(nonce, t.root, 0))
                chan.shutdown_write()
                chan.settimeout(max(0.1, deadline - time.monotonic()))
                out = []
                while data := chan.recv(65536):
                    out.append(data)
                while chan.recv_stderr(65536):
                    pass
                rc = chan.recv_exit_status()
                chan.close()
            finally:
                tr.close()
        except Exception as exc:
            return f"{type(exc).__name__}: {exc}"
        if done_frame not in b"".join(out):
            return f"probe did not finish (rc {rc})"
        return None

    start = time.monotonic()
    with ThreadPoolExecutor(max_workers=min(args.forks, len(targets))) as pool:
        errors = list(pool.map(one, targets))
    wall = time.monotonic() - start
    failed = {t.name: e for t, e in zip(targets, errors, strict=True) if e is not None}
    summary = {"hosts": len(targets), "ok": len(targets) - len(failed), "failed": failed}
    summary["wall_s"] = round(wall, 3)
    if args.json:
        print(json.dumps(summary, sort_keys=True))
    else:
        print(f"{summary['ok']}/{len(targets)} hosts ran the probe in {wall:.2f} s")
        for name, why in list(failed.items())[:10]:
            print(f"  {name}: {why}", file=sys.stderr)
    return 0 if not failed else 1


if __name__ == "__main__":
    sys.exit(main())
