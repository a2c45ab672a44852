# fleet audit probe. Read-only; POSIX sh (dash, bash, busybox ash) plus grep, cat, cut, tr, id, sleep.
# Run as `sh -s`: the arguments NONCE ROOT WINDOW [EXTRA_FILE...] come first on stdin
# (`set -- ...`, fleet/remote/shell.py), never on the command line, where any process on the
# host could read the nonce and forge frames.
# stdout: sections opened by "<NONCE> <tag> ..." lines. File contents come from ONE `grep -H`
# per stage, so every content line starts with its own path and no file can fake a frame;
# read errors come on stderr exactly as grep reports them ("grep: PATH: Permission denied"),
# which keeps EPERM/EACCES ("unknown") apart from ENOENT ("absent") and from an empty file.
N=$1; R=${2%/}; W=$3; shift 3
export LC_ALL=C
PATH=$PATH:/usr/local/sbin:/usr/sbin:/sbin
# fd 4 is the real stderr; everything not deliberately reported is silenced.
exec 4>&2 2>/dev/null

s begin 1
if [ "$W" -gt 0 ]; then s stat1; cat "$R/proc/stat"; fi

nl='
'
find_tracing  # T, D, DD (host_tools.sh)
K=$DD/kprobes
s env uid "$(id -u)"
s env tracefs "${T:--}"
s env debugfs "${D:--}"

# netdata's config files and the playbook's file checks arrive as the remaining arguments
# (fleet/remote/probe.py); the fixed reads are added to them.
set -- "$@" /proc/mounts /proc/sys/kernel/osrelease /sys/kernel/security/lockdown \
  /sys/module/apparmor/parameters/enabled "$K/enabled" "$K/list" \
  /proc/sys/kernel/bpf_stats_enabled
if [ -n "$T" ]; then
  set -- "$@" "$T/set_event" "$T/kprobe_events" "$T/uprobe_events" "$T/dynamic_events" \
    "$T/enabled_functions" "$T/current_tracer" "$T/tracing_on"
  for i in "$R$T"/instances/*; do
    [ -d "$i" ] && set -- "$@" "${i#"$R"}/set_event"
  done
fi
n=$#
for f in "$@"; do set -- "$@" "$R$f"; done
shift "$n"
s files
for f in "$@"; do s want "$f"; done
# One grep reads every file: one fork instead of one per file.
g "$@"

# Stage 2: the enable state of every dynamic probe event, in every trace instance.
if [ -n "$T" ]; then
  set --
  seen=$nl
  for pf in kprobe_events uprobe_events dynamic_events; do
    while IFS= read -r l; do
      d=${l%% *}; d=${d#*:}
      # kprobe/uprobe events are listed again in dynamic_events: read each once.
      case $d in */*) ;; *) continue ;; esac
      case $seen in *"$nl$d$nl"*) continue ;; esac
      seen="$seen$d$nl"
      for inst in "$R$T" "$R$T"/instances/*; do
        [ -e "$inst/events/$d/enable" ] && set -- "$@" "$inst/events/$d/enable"
      done
    # Lines cut to 1 KiB (a definition is far shorter): the shell's pattern matching is
    # quadratic in a word's length, and one 1 MB line of garbage held dash for minutes.
    done <<EOF
$(cut -c 1-1024 "$R$T/$pf")
EOF
  done
  if [ $# -gt 0 ]; then
    s enables
    for f in "$@"; do s want "$f"; done
    g "$@"
  fi
fi

# netdata: installed plugins, running processes, version.
for p in /usr/libexec/netdata/plugins.d /usr/lib/netdata/plugins.d \
  /opt/netdata/usr/libexec/netdata/plugins.d; do
  for f in "$R$p"/*ebpf*.plugin; do [ -e "$f" ] && s plugin "${f#"$R"}"; done
done
s procs
grep -HxE 'netdata|ebpf\.plugin|ebpf-go\.plugin' "$R"/proc/[0-9]*/comm
# Each running netdata's command line (a -c there names the config it reads) and every file
# it names after -c: fleet.audit.netdata_install follows the line as netdata's getopt does.
grep -lx netdata "$R"/proc/[0-9]*/comm | while IFS= read -r p; do
  p=${p%/comm}
  s cmdline "${p##*/}"; cat "$p/cmdline"; printf '\n'
  set --
  prev=
  while IFS= read -r a; do
    case $prev in -c) set -- "$@" "$R$a" ;; esac
    case $a in -c?*) set -- "$@" "$R${a#-c}" ;; esac
    prev=$a
  done <<EOF
$(tr '\0' '\n' <"$p/cmdline" | cut -c 1-4096)
EOF
  if [ $# -gt 0 ]; then
    s files
    for f in "$@"; do s want "$f"; done
    g "$@"
  fi
done

# Binaries and commands: fb and c (host_tools.sh).
if fb netdata :/opt/netdata/bin:/opt/netdata/usr/sbin; then c netdata_version "$B" -v; fi
r=1
if fb bpftool; then c bpftool_prog "$B" prog show --json; fi
if [ "$r" -ne 0 ]; then
  # No working bpftool (absent, or Ubuntu's wrapper without linux-tools for this kernel):
  # BPF program fds as /proc/PID/fdinfo shows them (other users' pids need root).
  fd_owners fdinfo -e '^prog_type:' -e '^prog_id:' -e '^prog_tag:'
fi

if [ "$W" -gt 0 ]; then
  # One sample a second: a remediation judges a change against the spread between them.
  i=1
  while [ "$i" -lt "$W" ]; do sleep 1; s stat "$i"; cat "$R/proc/stat"; i=$((i + 1)); done
  sleep 1; s stat2; cat "$R/proc/stat"
fi
s done
