"""perf samples as folded stacks, and what each stack spends its time in (pure).

`perf script` (default fields, as perf 6.1 prints them) gives each sample a header line
(`comm  pid [cpu] time: period event:`), its call chain one frame a line, leaf first
(`\\t<addr> <symbol>+<offset> (<dso>)`), then an empty line. Folded stacks are what
flamegraph.pl, speedscope and Pyroscope read: `comm;root;...;leaf COUNT`, one line per
distinct stack. The host folds with awk when it has one (fold.awk, the same rules); these
functions fold perf's text locally otherwise, and read the host's folded lines back.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

# perf prints "comm pid/tid [cpu] ..." or "comm tid [cpu] ..."; comm may hold spaces.
_HEADER = re.compile(r"^(?P<comm>.*?)[ \t]+[0-9]+(?:/[0-9]+)?[ \t]+(?:\[[0-9]+\][ \t]+)?[0-9.]+:")
_OFFSET = re.compile(r"\+0x[0-9a-fA-F]+$")


def frame_symbol(line: str) -> str:
    """`\\tffffffff8225295b pv_native_safe_halt+0xb ([kernel.kallsyms])` -> its function."""
    text = line.strip(" \t")
    _addr, _, rest = text.partition(" ")
    dso = rest.rfind(" (")
    if dso >= 0 and rest.endswith(")"):
        rest = rest[:dso]
    rest = _OFFSET.sub("", rest.strip(" \t")).strip(" \t")
    # A ';' would split the frame in two in the folded format.
    return (rest or "[unknown]").replace(";", ":")


def fold_perf_script(text: str) -> Counter[str]:
    """Fold perf script's text. Lines split on "\\n" only, as perf writes them; a sample
    cut off by a truncated stream counts with the frames it has."""
    folded: Counter[str] = Counter()
    comm: str | None = None
    frames: list[str] = []

    def close() -> None:
        if comm is not None:
            folded[";".join([comm, *reversed(frames)])] += 1

    for line in text.split("\n"):
        if not line.strip(" \t"):
            close()
            comm, frames = None, []
        elif line[0] in " \t":
            if comm is not None:
                frames.append(frame_symbol(line))
        else:
            close()
            m = _HEADER.match(line)
            comm = (m.group("comm") if m else line.split(" ", 1)[0]).strip(" \t")
            comm = comm.replace(";", ":") or "[unknown]"
            frames = []
    close()
    return folded


class FoldedFormatError(ValueError):
    """A folded line without its count."""


def parse_folded(text: str) -> Counter[str]:
    """`stack COUNT` lines (fold.awk's output, or a file flamegraph.pl reads)."""
    folded: Counter[str] = Counter()
    for n, line in enumerate(text.split("\n"), 1):
        if not line:
            continue
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            raise FoldedFormatError(f"folded line {n}: no 'stack COUNT': {line[:80]!r}")
        folded[stack] += int(count)
    return folded


def render_folded(folded: Counter[str]) -> str:
    """Heaviest first, then by name: a stable file two runs can be diffed by."""
    rows = sorted(folded.items(), key=lambda kv: (-kv[1], kv[0]))
    return "".join(f"{stack} {count}\n" for stack, count in rows)


# What the kernel runs for a kprobe, a kretprobe or the rethook behind it (6.1 and older
# names: kretprobe_trampoline became __kretprobe_trampoline, then arch_rethook_trampoline).
PROBE_FRAMES = frozenset(
    {
        "kprobe_ftrace_handler",
        "kprobe_int3_handler",
        "kprobe_dispatcher",
        "kretprobe_dispatcher",
        "kprobe_perf_func",
        "kretprobe_perf_func",
        "kprobe_trace_func",
        "kretprobe_trace_func",
        "pre_handler_kretprobe",
        "aggr_pre_handler",
        "opt_pre_handler",
        "optimized_callback",
        "kretprobe_trampoline",
        "__kretprobe_trampoline",
        "kretprobe_trampoline_handler",
        "__kretprobe_trampoline_handler",
        "trampoline_handler",
        "kretprobe_rethook_handler",
        "arch_rethook_trampoline",
        "arch_rethook_trampoline_callback",
        "rethook_trampoline_handler",
        "fprobe_handler",
        "kprobe_multi_link_handler",
    }
)
PROBE_PREFIXES = ("kprobe_busy_", "rethook_")
# Where a kretprobe'd function returns to (6.1: rethook_trampoline; older kernels' names).
RETURN_TRAMPOLINES = frozenset(
    {
        "rethook_trampoline",
        "arch_rethook_trampoline",
        "kretprobe_trampoline",
        "__kretprobe_trampoline",
    }
)
# BPF programs (kallsyms names them bpf_prog_<tag>_<name>), trampolines and the helpers the
# incident's programs called on every hit.
BPF_FRAMES = frozenset(
    {"trace_call_bpf", "bpf_trace_run1", "bpf_trace_run2", "bpf_trace_run3", "bpf_trace_run4"}
)
BPF_PREFIXES = (
    "bpf_prog_",
    "bpf_trampoline_",
    "__bpf_prog_enter",
    "__bpf_prog_exit",
    "bpf_dispatcher_",
    "htab_map_",
    "__htab_map_",
    "htab_lru_",
    "htab_percpu_",
    "array_map_",
    "percpu_array_map_",
    "bpf_map_",
    "bpf_ringbuf_",
    "bpf_perf_event_output",
)
# Tracepoint and ftrace machinery: events written to the ring buffer, triggers, perf's.
TRACING_FRAMES = frozenset(
    {
        "event_triggers_call",
        "trace_event_buffer_commit",
        "trace_event_buffer_reserve",
        "trace_event_buffer_lock_reserve",
        "perf_tp_event",
        "perf_trace_buf_alloc",
        "perf_trace_buf_update",
        "ftrace_ops_list_func",
        "arch_ftrace_ops_list_func",
        "ftrace_ops_assist_func",
        "trace_function",
        "tracing_gen_ctx_irq_test",
    }
)
TRACING_PREFIXES = (
    "trace_event_raw_event_",
    "trace_event_buffer_",
    "ring_buffer_",
    "trace_buffer_",
    "perf_trace_",
    "__traceiter_",
    "event_hist_trigger",
    "event_triggers_",
)
# Spinning for a lock: the queued slow path and the raw lock functions a sample sits in.
LOCK_FRAMES = frozenset(
    {
        "native_queued_spin_lock_slowpath",
        "queued_spin_lock_slowpath",
        "__pv_queued_spin_lock_slowpath",
        "pv_queued_spin_lock_slowpath",
        "queued_read_lock_slowpath",
        "queued_write_lock_slowpath",
        "do_raw_spin_lock",
    }
)
LOCK_PREFIXES = ("_raw_spin_lock", "__raw_spin_lock", "_raw_read_lock", "_raw_write_lock")
# Glue between a hooked function and its probe handler, never the hooked function itself.
_GLUE = frozenset(
    {"[unknown]", "ftrace_regs_caller", "ftrace_caller", "ftrace_call", "ftrace_stub"}
)
_GLUE_PREFIXES = ("ftrace_regs_call", "ftrace_trampoline", "asm_exc_int3", "exc_int3")

KINDS = ("probe", "bpf", "tracing", "lock")


def _is(name: str, frames: frozenset[str], prefixes: tuple[str, ...]) -> bool:
    return name in frames or name.startswith(prefixes)


def frame_kind(name: str) -> str | None:
    """Which machinery a function belongs to: probe, bpf, tracing, lock, or None."""
    if _is(name, PROBE_FRAMES, PROBE_PREFIXES):
        return "probe"
    if _is(name, BPF_FRAMES, BPF_PREFIXES):
        return "bpf"
    if _is(name, TRACING_FRAMES, TRACING_PREFIXES):
        return "tracing"
    if _is(name, LOCK_FRAMES, LOCK_PREFIXES):
        return "lock"
    return None


def _callers(frames: list[str], first_machinery: int) -> list[str]:
    """The frames below the first probe/BPF frame, nearest first, glue skipped."""
    return [
        name
        for name in reversed(frames[:first_machinery])
        if not (name in _GLUE or name.startswith(_GLUE_PREFIXES) or name.startswith("0x"))
    ]


def _hooked(frames: list[str], first_machinery: int) -> tuple[str, str | None, bool] | None:
    """(hooked function, its caller, via a return probe): the caller of the first probe/BPF
    frame, glue skipped.

    On a kprobe or an fentry trampoline that is the probed function itself (tcp_sendmsg); a
    kretprobe runs when that function has returned into the trampoline, so the stack shows
    only its caller."""
    callers = _callers(frames, first_machinery)
    if not callers:
        return None
    if any(f in RETURN_TRAMPOLINES for f in frames[first_machinery:]):
        return callers[0], None, True
    return callers[0], callers[1] if len(callers) > 1 else None, False


@dataclass
class StackShares:
    """Where the samples went: per kind, samples whose stack holds it (lock: whose leaf is
    a lock function), and the hooked functions probe and BPF samples were charged to."""

    samples: int = 0
    by_kind: Counter[str] = field(default_factory=Counter)
    in_hooks: int = 0  # samples in probe or BPF machinery (either, counted once)
    lock_under_probe: int = 0  # spinning samples inside probe or BPF machinery
    hooked: Counter[str] = field(default_factory=Counter)

    def pct(self, kind: str) -> float:
        return self._pct(self.by_kind[kind])

    @property
    def hooks_pct(self) -> float:
        return self._pct(self.in_hooks)

    def _pct(self, n: int) -> float:
        return round(100.0 * n / self.samples, 2) if self.samples else 0.0


def classify(folded: Counter[str]) -> StackShares:
    """Charge every folded stack to the machinery in it (pure)."""
    out = StackShares()
    entries: list[tuple[tuple[str, str | None, bool], int]] = []
    returns: list[tuple[tuple[str, str | None, bool], int]] = []
    for stack, count in folded.items():
        comm_and_frames = stack.split(";")
        frames = comm_and_frames[1:]
        out.samples += count
        kinds = [frame_kind(f) for f in frames]
        present = set(kinds)
        for kind in ("probe", "bpf", "tracing"):
            if kind in present:
                out.by_kind[kind] += count
        if "probe" in present or "bpf" in present:
            out.in_hooks += count
        leaf_lock = bool(kinds) and kinds[-1] == "lock"
        if leaf_lock:
            out.by_kind["lock"] += count
            if "probe" in present or "bpf" in present:
                out.lock_under_probe += count
        first = next((i for i, k in enumerate(kinds) if k in ("probe", "bpf")), None)
        if first is not None:
            found = _hooked(frames, first)
            if found:
                (returns if found[2] else entries).append((found, count))
    # Entry probes name the function; a return probe shows only the caller it returned to.
    # When the samples saw exactly one function probed on entry under that caller, the
    # return is charged to it ("tcp_sendmsg (return)"), else to the caller as seen.
    under: dict[str, set[str]] = {}
    for (name, caller, _), count in entries:
        out.hooked[name] += count
        if caller is not None:
            under.setdefault(caller, set()).add(name)
    for (caller, _, _), count in returns:
        probed = under.get(caller, set())
        label = (
            f"{next(iter(probed))} (return)" if len(probed) == 1 else f"kretprobe under {caller}"
        )
        out.hooked[label] += count
    return out
