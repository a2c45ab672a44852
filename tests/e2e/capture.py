"""Capture the e2e guest's real tracing files, byte for byte, as parser and lab fixtures.

    python -m tests.e2e.capture [--out DIR]   # default tests/fixtures/captured-qemu/e2e

Boots its own VM (state .e2e-vm/capture, stopped at the end whatever happens), walks the
incident through the states below and stores each remote `cat FILE`'s stdout as
`<name>.<state>.txt`; stderr and exit status only when the status is not 0
(`<name>.<state>.stderr.txt`, `<name>.<state>.rc.txt`, as in captured-qemu/). The files are
described in OUT/SOURCES.md.

The load is stopped before any step that re-enables probes or toggles many events: under TCG
doing that under load has soft-locked this guest.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from tests.e2e import vm as e2e

OUT = e2e.REPO / "tests/fixtures/captured-qemu/e2e"
T = "/sys/kernel/tracing"
D = "/sys/kernel/debug"
K = f"{D}/kprobes"
SSH_TIMEOUT_S = 180.0
# A loaded state lets the load run this long before sampling: `pace` waits 1 s to start.
LOAD_RAMP_S = 2

# What every tracing state stores: fixture name -> guest file.
TRACING = {
    "kprobes_list": f"{K}/list",
    "set_event": f"{T}/set_event",
    "instances_rasdaemon_set_event": f"{T}/instances/rasdaemon/set_event",
    "kprobe_events": f"{T}/kprobe_events",
    "dynamic_events": f"{T}/dynamic_events",
    "enabled_functions": f"{T}/enabled_functions",
    "kprobe_profile": f"{T}/kprobe_profile",
    "proc_mounts": "/proc/mounts",
    "events_netdata_tcp_sendmsg_enable": f"{T}/events/netdata/tcp_sendmsg/enable",
    "events_netdata_tcp_sendmsg_trigger": f"{T}/events/netdata/tcp_sendmsg/trigger",
    "events_netdata_enable": f"{T}/events/netdata/enable",
    "events_kprobes_ip_rcv_enable": f"{T}/events/kprobes/ip_rcv/enable",
    "events_kprobes_ip_rcv_trigger": f"{T}/events/kprobes/ip_rcv/trigger",
    "events_kprobes_enable": f"{T}/events/kprobes/enable",
    "events_enable": f"{T}/events/enable",
    "instances_rasdaemon_events_kprobes_ip_rcv_enable": (
        f"{T}/instances/rasdaemon/events/kprobes/ip_rcv/enable"
    ),
}


class Capture:
    def __init__(self, vm: e2e.Vm, out: Path) -> None:
        self.vm = vm
        self.out = out

    def run(self, command: str) -> subprocess.CompletedProcess[bytes]:
        """One command through the guest's login shell (busybox sh), bytes untouched."""
        proc = subprocess.run(self.vm.ssh_argv(command), capture_output=True, timeout=SSH_TIMEOUT_S)
        if proc.returncode == 255:  # ssh's own failure, not the command's
            raise e2e.VmError(f"ssh {command!r}: {proc.stderr.decode(errors='replace')}")
        return proc

    def sh(self, command: str) -> None:
        """A state-changing step: it must succeed, or the states after it mean nothing."""
        proc = self.run(command)
        if proc.returncode != 0 or proc.stderr:
            raise e2e.VmError(
                f"{command!r} -> rc {proc.returncode}: {proc.stderr.decode(errors='replace')}"
            )

    def save(self, name: str, state: str, command: str) -> None:
        proc = self.run(command)
        stem = self.out / f"{name}.{state}"
        # As in captured-qemu/: a failed read with no output has no stdout file.
        if proc.returncode == 0 or proc.stdout:
            Path(f"{stem}.txt").write_bytes(proc.stdout)
        if proc.returncode != 0:
            Path(f"{stem}.stderr.txt").write_bytes(proc.stderr)
            Path(f"{stem}.rc.txt").write_text(f"{proc.returncode}\n")
        e2e.log(f"{stem.name}: {len(proc.stdout)} bytes, rc {proc.returncode}")

    def tracing(self, state: str) -> None:
        for name, path in TRACING.items():
            self.save(name, state, f"cat {path}")

    def loaded(self, state: str) -> None:
        """Start the load, then store the tracing files and two /proc/stat 1 s apart (copied
        in the guest, so ssh's latency does not stretch the window) and kprobe_profile again:
        its deltas show which probes still fire in this state."""
        self.sh(f"fleet-e2e load start && sleep {LOAD_RAMP_S}")
        self.tracing(state)
        self.sh("cat /proc/stat > /tmp/stat1 && sleep 1 && cat /proc/stat > /tmp/stat2")
        self.save("proc_stat_1", state, "cat /tmp/stat1")
        self.save("proc_stat_2", state, "cat /tmp/stat2")
        self.save("kprobe_profile_2", state, f"cat {T}/kprobe_profile")
        self.sh("fleet-e2e load stop && sleep 1")


def capture(c: Capture) -> None:
    c.save("release", "boot", "cat /etc/fleet-e2e/release")
    c.save("uname_a", "boot", "uname -a")
    c.save("busybox_version", "boot", "busybox | head -n 1")

    # (a) as booted: incident planted, netdata's probes with hist triggers, load running.
    c.loaded("incident")

    # (b) one netdata event turned off while its hist trigger stays: soft mode, "0*".
    c.sh("fleet-e2e reset")
    c.sh(f"echo 0 > {T}/events/netdata/tcp_sendmsg/enable")
    c.loaded("enable0_with_trigger")

    # (c) ebpf.plugin gone: it drops its triggers, disables and deletes its probes.
    c.sh("fleet-e2e reset")
    c.sh("fleet-e2e netdata stop")
    c.loaded("netdata_stopped")

    # (d) the operator's probes off at the top and in rasdaemon's instance: [DISABLED].
    c.sh(f"echo 0 > {T}/events/kprobes/enable")
    c.sh(f"echo 0 > {T}/instances/rasdaemon/events/kprobes/ip_rcv/enable")
    c.loaded("events_off")

    # (e) only tracefs mounted: what a host without debugfs shows.
    c.sh(f"umount {D}")
    c.save("proc_mounts", "tracefs_only", "cat /proc/mounts")
    c.save("ls_la_sys_kernel_debug", "tracefs_only", f"ls -la {D}")
    c.save("kprobes_list", "tracefs_only", f"cat {K}/list")
    c.sh(f"mount -t debugfs debugfs {D}")

    # (f) tracefs unmounted: debugfs's tracing/ directory automounts it on first access.
    c.sh(f"umount {T}")
    c.save("proc_mounts", "tracing_unmounted", "cat /proc/mounts")
    c.save("debug_tracing_set_event", "debugfs_automount", f"cat {D}/tracing/set_event")
    c.save("proc_mounts", "debugfs_automount", "cat /proc/mounts")
    c.sh(f"mount -t tracefs tracefs {T}")
    c.save("proc_mounts", "tracefs_remounted", "cat /proc/mounts")

    # (g) the usual clean-ups with ebpf.plugin running: triggered events survive both as "0*".
    c.sh("fleet-e2e reset")
    c.sh(f"echo > {T}/set_event")
    c.loaded("set_event_cleared")
    c.sh(f"echo 0 > {T}/events/enable")
    c.loaded("events_enable0")

    # EBUSY: deleting or truncating probes that are enabled, with busybox sh as fleet meets it.
    c.sh("fleet-e2e reset")
    c.save("ebusy_delete_one", "busybox_sh", f"echo '-:kprobes/ip_rcv' >> {T}/kprobe_events")
    c.save("ebusy_truncate", "busybox_sh", f"echo > {T}/kprobe_events")
    c.save("kprobe_events", "after_ebusy", f"cat {T}/kprobe_events")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.e2e.capture")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    # A rerun replaces the capture: a stale rc/stderr file would describe another run.
    for old in args.out.glob("*.txt"):
        old.unlink()
    state = e2e.cache_dir() / "capture"
    try:
        capture(Capture(e2e.up(state), args.out))
    except (e2e.VmError, subprocess.TimeoutExpired) as exc:
        print(f"e2e-capture: {exc}", file=sys.stderr)
        return 1
    finally:
        e2e.down(state)
    return 0


if __name__ == "__main__":
    sys.exit(main())
