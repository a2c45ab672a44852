# fleet profile: where the host's CPU goes over a window. POSIX sh plus grep, cat, id, sleep;
# perf, bpftool, awk and head when the host has them. Run as `sh -s`; the arguments NONCE ROOT
# WINDOW FREQ come first on stdin (fleet/remote/shell.py).
# Read-only but for one switch: BPF run-time statistics (kernel.bpf_stats_enabled) are off by
# default, and without them no program's run time moves. When they are off and the host lets
# us, they are switched on for the window and back off before this exits, on every way out
# the shell can see (the end, an error, SIGHUP/SIGINT/SIGTERM, a closed connection's SIGPIPE).
# stdout: frames as in probe.sh. Each snapshot (before, after) is ONE grep of the counters.
N=$1; R=${2%/}; W=$3; F=$4
export LC_ALL=C
PATH=$PATH:/usr/local/sbin:/usr/sbin:/sbin
exec 4>&2 2>/dev/null

s begin 1
find_tracing
s env uid "$(id -u)"
s env tracefs "${T:--}"
BS=$R/proc/sys/kernel/bpf_stats_enabled
BT=
if fb bpftool; then BT=$B; fi

# snap K: every counter the window is measured by, read at once.
snap() {
  k=$1
  set -- "$R/proc/uptime" "$R/proc/stat" "$BS"
  if [ -n "$T" ]; then
    set -- "$@" "$R$T/kprobe_profile" "$R$T"/per_cpu/cpu*/stats
  fi
  s snap "$k"
  for f in "$@"; do s want "$f"; done
  g "$@"
  r=1
  if [ -n "$BT" ]; then c "bpf$k" "$BT" prog show --json; fi
  if [ "$r" -ne 0 ]; then
    # No working bpftool: each BPF program fd's counters as /proc/PID/fdinfo shows them.
    s fdinfo "$k"
    grep -rsH -e '^prog_type:' -e '^prog_id:' -e '^prog_tag:' -e '^run_time_ns:' \
      -e '^run_cnt:' "$R"/proc/[0-9]*/fdinfo
  fi
}

ON=
restore() {
  # The one write this script makes, undone: nothing else on the host changed.
  if [ -n "$ON" ] && echo 0 > "$BS"; then ON=; fi
}
trap 'restore' EXIT
trap 'restore; exit 129' HUP
trap 'restore; exit 130' INT
trap 'restore; exit 141' PIPE
trap 'restore; exit 143' TERM

st=$(cat "$BS") || st=
case $st in
  0)
    if inside "$BS" && echo 1 > "$BS"; then
      ON=1
      s env bpfstats enabled-by-fleet
    else
      s env bpfstats off-unwritable
    fi
    ;;
  '') s env bpfstats unavailable ;;
  *) s env bpfstats already-on ;;
esac

snap 1
if fb perf; then
  # System-wide cpu-clock samples with call chains, through a pipe (-o -): nothing is
  # written on the host. Folded here when there is an awk: kilobytes cross the network
  # instead of megabytes. perf record's own status comes back through fd 6.
  s cmd perf "$B"; printf '%s cmd perf\n' "$N" >&4
  if command -v awk >/dev/null; then FOLD=folded; else FOLD=raw; fi
  exec 5>&1
  rr=$( { { FLEET_ROOT=$R "$B" record -a -g -F "$F" -o - -- sleep "$W" 2>&4 5>&- 6>&-
    echo "$?" >&6; } | if [ "$FOLD" = folded ]; then
      FLEET_ROOT=$R "$B" script -i - 2>&4 | awk "$FOLD_AWK"
    else
      FLEET_ROOT=$R "$B" script -i - 2>&4 | head -c 12000000
    fi >&5; } 6>&1 )
  exec 5>&-
  printf '%s end perf\n' "$N" >&4
  printf '\n'; s rc perf "${rr:-255}"; s env perf_output "$FOLD"
else
  s env perf absent
  sleep "$W"
fi
snap 2
# Debian's bpftool prints no "pids": who holds each program, from the fds that hold it.
if [ -n "$BT" ] && [ "$r" -eq 0 ]; then
  o=$(FLEET_ROOT=$R $TO "$BT" prog show --json 2>/dev/null)
  case $o in *'"pids"'* | '[]' | '') ;; *) fd_owners "fdinfo owners" -e '^prog_id:' ;; esac
fi
if [ -n "$ON" ]; then
  restore
  if [ -z "$ON" ]; then s env bpfstats_end restored; else s env bpfstats_end restore-failed; fi
fi
# What this profile cost the host: CPU of the shell and of everything it ran (perf included).
s times; times
s done
