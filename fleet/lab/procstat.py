"""/proc/stat of a lab host: the counters, the kernel's text format, and how they advance.

Shared by the host-tree builder (a first proc/stat in every tree) and the CPU model daemon,
which advances and rewrites it for every host four times a second; hence the flat lists and
one-format-per-block rendering.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

USER_HZ = 100
NCPUS = 8

# Columns of a cpu line: user nice system idle iowait irq softirq steal guest guest_nice.
_NCOLS = 10
_IDLE = 3
# Share of one CPU's time per column; idle gets whatever is left.
_HOT = (0.15, 0.0, 0.70, 0.0, 0.002, 0.0, 0.05, 0.001, 0.0, 0.0)
_COOL = (0.25, 0.002, 0.04, 0.0, 0.004, 0.0, 0.004, 0.001, 0.0, 0.0)
# What a long-running box has accumulated since boot, for the starting counters.
_HISTORY = (0.20, 0.002, 0.06, 0.0, 0.004, 0.0, 0.006, 0.001, 0.0, 0.0)

# Events per second for the whole host: (hot, cool).
_CTXT_RATE = (95_000.0, 9_000.0)
_INTR_RATE = (60_000.0, 4_000.0)
_FORK_RATE = (40.0, 3.0)
# softirq vectors HI TIMER NET_TX NET_RX BLOCK IRQ_POLL TASKLET SCHED HRTIMER RCU.
_SOFTIRQ_HOT = (0.0, 2_000.0, 300.0, 40_000.0, 50.0, 0.0, 10.0, 3_000.0, 5.0, 4_000.0)
_SOFTIRQ_COOL = (0.0, 1_500.0, 5.0, 300.0, 40.0, 0.0, 2.0, 1_200.0, 2.0, 1_500.0)
_NSOFTIRQ = len(_SOFTIRQ_HOT)
# The intr line lists 64 IRQs. Only the device IRQs (virtio/NVMe MSI queues, 24-31) move;
# they take this share of all interrupts, the rest are arch interrupts (timer, IPIs) that the
# kernel counts only in the total. The other listed IRQs are fixed: the i8042 keyboard and
# mouse fired a few times at boot.
_IRQ_DEVICE_SHARE = 0.8
_NDEVICE_IRQS = 8
_INTR_HEAD = (0, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 144, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
_INTR_TAIL = (0,) * 32
_INTR_FIXED = sum(_INTR_HEAD) + sum(_INTR_TAIL)

# One %-format per block of lines (%d truncates a float like int() does).
_CPU_FMT = " ".join(["%d"] * _NCOLS)
_CPUS_FMT = "".join(f"cpu{i} {_CPU_FMT}\n" for i in range(NCPUS))
_INTR_FMT = (
    " ".join(map(str, _INTR_HEAD))
    + " "
    + " ".join(["%d"] * _NDEVICE_IRQS)
    + " "
    + " ".join(map(str, _INTR_TAIL))
)
_SOFTIRQ_FMT = " ".join(["%d"] * _NSOFTIRQ)


@dataclass
class Counters:
    """Everything proc/stat shows for one host, as floats so fractions of ticks accumulate."""

    cpus: list[float]  # NCPUS rows of _NCOLS columns, flat
    irqs: list[float]  # the device IRQs of the intr line
    intr_other: float  # interrupts counted only in the intr total
    ctxt: float
    btime: int
    processes: float
    procs_running: int
    procs_blocked: int
    softirq: list[float]


@dataclass(frozen=True)
class Rates:
    """How one host's counters grow per second in one state (HOT or COOL)."""

    hot: bool
    busy: tuple[float, ...]  # per flat cpu column; the idle column holds -(busy of that CPU)
    idle: tuple[float, ...]  # USER_HZ in each idle column, else 0


def host_rates(seed: str) -> tuple[Rates, Rates]:
    """(HOT, COOL) rates for one host: its CPUs differ a little, the same way every run."""
    rng = random.Random(seed + "/cpus")
    # Small enough that a HOT CPU (90% busy) stays below 100% with advance()'s jitter.
    weights = [rng.uniform(0.95, 1.05) for _ in range(NCPUS)]
    rates = []
    for hot, shares in ((True, _HOT), (False, _COOL)):
        busy: list[float] = []
        idle: list[float] = []
        for weight in weights:
            row = [USER_HZ * share * weight for share in shares]
            row[_IDLE] = -sum(row)
            busy += row
            idle += [USER_HZ if col == _IDLE else 0.0 for col in range(_NCOLS)]
        rates.append(Rates(hot, tuple(busy), tuple(idle)))
    return rates[0], rates[1]


def fresh_counters(seed: str, now: float) -> Counters:
    """Counters of a box that booted days ago, deterministic for one seed."""
    rng = random.Random(seed)
    uptime = rng.uniform(3, 40) * 86_400
    ticks = uptime * USER_HZ
    cpus: list[float] = []
    for _ in range(NCPUS):
        scale = rng.uniform(0.8, 1.2)
        # Whole ticks, so a daemon that parses this file back starts from exact values.
        row = [float(int(ticks * share * scale)) for share in _HISTORY]
        row[_IDLE] = float(int(ticks - sum(row)))
        cpus += row
    device_total = uptime * _INTR_RATE[1] * _IRQ_DEVICE_SHARE
    return Counters(
        cpus=cpus,
        irqs=[
            float(int(device_total / _NDEVICE_IRQS * rng.uniform(0.5, 1.5)))
            for _ in range(_NDEVICE_IRQS)
        ],
        intr_other=float(int(uptime * _INTR_RATE[1] * (1 - _IRQ_DEVICE_SHARE))),
        ctxt=float(int(uptime * _CTXT_RATE[1] * rng.uniform(0.8, 1.2))),
        btime=int(now - uptime),
        processes=float(int(uptime * _FORK_RATE[1] * rng.uniform(0.5, 1.5))),
        procs_running=1,
        procs_blocked=0,
        softirq=[float(int(uptime * rate * rng.uniform(0.8, 1.2))) for rate in _SOFTIRQ_COOL],
    )


def render_stat(c: Counters) -> str:
    """The text of /proc/stat: same lines, order and spacing as fs/proc/stat.c."""
    cpus = c.cpus
    # Like the kernel, the cpu line sums the exact per-CPU times and then truncates, so it
    # can be a few ticks above the sum of the truncated cpuN lines. The intr and softirq
    # totals are sums of whole per-source counts, as in the kernel.
    total = tuple(sum(cpus[col::_NCOLS]) for col in range(_NCOLS))
    intr_total = sum(map(int, c.irqs)) + int(c.intr_other) + _INTR_FIXED
    return (
        f"cpu  {_CPU_FMT % total}\n"
        + _CPUS_FMT % tuple(cpus)
        + f"intr {intr_total} {_INTR_FMT % tuple(c.irqs)}\n"
        f"ctxt {int(c.ctxt)}\n"
        f"btime {c.btime}\n"
        f"processes {int(c.processes)}\n"
        f"procs_running {c.procs_running}\n"
        f"procs_blocked {c.procs_blocked}\n"
        f"softirq {sum(map(int, c.softirq))} {_SOFTIRQ_FMT % tuple(c.softirq)}\n"
    )


def parse_stat(text: str) -> Counters | None:
    """Counters back from a proc/stat this module wrote, or None if it is not one."""
    rows: list[list[float]] = []
    fields: dict[str, list[int]] = {}
    try:
        for line in text.splitlines():
            name, *values = line.split()
            if name.startswith("cpu") and name != "cpu":
                rows.append([float(v) for v in values])
            else:
                fields[name] = [int(v) for v in values]
        intr = fields["intr"]
        shown = fields["cpu"]
        head = 1 + len(_INTR_HEAD)
        counters = Counters(
            cpus=[v for row in rows for v in row],
            irqs=[float(v) for v in intr[head : head + _NDEVICE_IRQS]],
            intr_other=float(intr[0] - sum(intr[1:])),
            ctxt=float(fields["ctxt"][0]),
            btime=fields["btime"][0],
            processes=float(fields["processes"][0]),
            procs_running=fields["procs_running"][0],
            procs_blocked=fields["procs_blocked"][0],
            softirq=[float(v) for v in fields["softirq"][1:]],
        )
    except (KeyError, IndexError, ValueError):
        return None
    shape_ok = (
        len(rows) == NCPUS
        and all(len(row) == _NCOLS for row in rows)
        and len(shown) == _NCOLS
        and len(intr) == head + _NDEVICE_IRQS + len(_INTR_TAIL)
        and len(counters.softirq) == _NSOFTIRQ
    )
    if not shape_ok:
        return None
    # The cpu line may be a few ticks above the sum of the cpuN lines (see render_stat);
    # give those to cpu0 so no printed counter goes down.
    for col in range(_NCOLS):
        counters.cpus[col] += max(shown[col] - sum(counters.cpus[col::_NCOLS]), 0)
    return counters


def advance(c: Counters, seconds: float, rates: Rates, rng: random.Random) -> None:
    """Move the counters on by `seconds` in one state, with a little jitter."""
    wobble = 1.0 + rng.uniform(-0.04, 0.04)
    k = seconds * wobble
    # Each CPU gains exactly seconds * USER_HZ ticks; the jitter only moves busy vs idle.
    c.cpus = [
        v + b * k + i * seconds for v, b, i in zip(c.cpus, rates.busy, rates.idle, strict=True)
    ]
    load = 0 if rates.hot else 1
    intr = k * _INTR_RATE[load]
    per_device = intr * _IRQ_DEVICE_SHARE / _NDEVICE_IRQS
    c.irqs = [v + per_device for v in c.irqs]
    c.intr_other += intr * (1 - _IRQ_DEVICE_SHARE)
    c.ctxt += k * _CTXT_RATE[load]
    c.processes += k * _FORK_RATE[load]
    softirq_rates = _SOFTIRQ_HOT if rates.hot else _SOFTIRQ_COOL
    c.softirq = [v + k * r for v, r in zip(c.softirq, softirq_rates, strict=True)]
    c.procs_running = rng.randint(5, 9) if rates.hot else rng.randint(1, 2)
