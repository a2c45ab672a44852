#!/bin/sh
# fleet lab stand-in for perf 6.1: `perf record -a -g -F HZ -o - -- CMD...` runs CMD, then
# writes HZ x seconds x CPUs samples for this host; `perf script -i -` prints them. The
# samples are real perf script text captured from a real kernel (fleet/lab/stock/
# perf-samples.*.txt, see its README), the incident's under the incident: the host is HOT
# when the lab's CPU model says so (proc/.stat.fleet-lab.state). Between the two commands
# the pipe carries that text rather than perf.data; nothing else of perf is imitated.
case $0 in
    /*) self=$0 ;;
    *) self=$(pwd)/$0 ;;
esac
root=${self%/usr/sbin/*}
stock=${FLEET_LAB_TOOLS:-${self%/*}}

usage() { echo " Usage: perf [--version] [--help] [OPTIONS] COMMAND [ARGS]" >&2; exit 129; }

case ${1-} in
    --version | version) echo "perf version 6.1.0 (fleet lab)"; exit 0 ;;
    script)
        shift
        case "$*" in *"-i -"*) exec cat ;; esac
        echo "fleet lab perf: only 'perf script -i -' is imitated" >&2; exit 255 ;;
    record) shift ;;
    *) usage ;;
esac

hz=4000
while [ $# -gt 0 ]; do
    case $1 in
        -F) hz=$2; shift 2 ;;
        -o) [ "$2" = - ] || { echo "fleet lab perf: only -o - is imitated" >&2; exit 255; }; shift 2 ;;
        -a | -g) shift ;;
        --) shift; break ;;
        *) echo "fleet lab perf: unknown option $1" >&2; exit 255 ;;
    esac
done
t0=$(cut -d' ' -f1 "$root/proc/uptime" 2>/dev/null)
start=$(date +%s)
"$@" </dev/null >/dev/null
secs=$(( $(date +%s) - start ))
[ "$secs" -gt 0 ] || secs=1
cpus=$(grep -c '^cpu[0-9]' "$root/proc/stat")
state=$(cat "$root/proc/.stat.fleet-lab.state" 2>/dev/null) || state=cool
[ "$state" = hot ] || state=cool
echo "[ perf record: Woken up 1 times to write data ]" >&2
awk -v n=$((hz * secs * cpus)) -v t0="${t0:-1000.0}" -v hz="$hz" -v cpus="$cpus" '
    # One sample is a header line, its frames, an empty line; they are replayed in turn,
    # each on the next CPU with its own time stamp.
    /^[^ \t]/ { k++; head[k] = $0; body[k] = ""; next }
    /^[ \t]/ { body[k] = body[k] $0 "\n"; next }
    END {
        for (i = 0; i < n; i++) {
            j = i % k + 1
            h = head[j]
            sub(/\[[0-9]+\] +[0-9.]+:/, sprintf("[%03d] %.6f:", i % cpus, t0 + i / (hz * cpus)), h)
            printf "%s\n%s\n", h, body[j]
        }
    }' "$stock/perf-samples.$state.txt"
echo "[ perf record: Captured and wrote 0.000 MB - ]" >&2
