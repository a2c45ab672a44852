# Helpers probe.sh and profile.sh share (fleet/remote/shell.py sends them first). They expect
# N (the nonce) and R (fleet_root, no trailing slash) set, fd 4 on the real stderr.

# s TAG ARGS...: one frame line, "<nonce> TAG ARGS".
s() { printf '%s %s\n' "$N" "$*"; }

# g FILE...: every file read by ONE grep, but those that leave ROOT, which get an error line
# in grep's own format instead.
g() {
  n=$#
  for f in "$@"; do
    if inside "$f"; then set -- "$@" "$f"; else printf 'grep: %s: %s\n' "$f" "$OUTSIDE" >&4; fi
  done
  shift "$n"
  [ $# -eq 0 ] || grep -aH '' -- "$@" 2>&4
}
OUTSIDE='Symbolic link leads outside fleet_root'

# find_tracing: where tracefs (T) and debugfs (D, DD where it would be) are mounted, as the
# kernel says in /proc/mounts; nothing is ever mounted. T is empty when neither tracefs path
# has a set_event.
find_tracing() {
  TM=; D=
  while read -r _dev mp fs _rest; do
    case $fs in
      tracefs) if [ "$mp" = /sys/kernel/tracing ] || [ -z "$TM" ]; then TM=$mp; fi ;;
      debugfs) [ -n "$D" ] || D=$mp ;;
    esac
  done < "$R/proc/mounts"
  DD=${D:-/sys/kernel/debug}  # where debugfs would be (fleet.audit.facts.DEBUGFS)
  T=
  for t in "$TM" /sys/kernel/tracing "$DD/tracing"; do
    if [ -n "$t" ] && [ -e "$R$t/set_event" ]; then T=$t; break; fi
  done
}

# fb NAME [EXTRA_PATH]: B=the binary NAME from the system's PATH (and EXTRA_PATH), never from
# the audited tree: with ROOT set that tree is data, and running its files (as root under
# become) would hand it the host. Each command learns the tree in FLEET_ROOT (the lab's tools
# answer for it).
fb() {
  B=
  o=$IFS; IFS=:
  for d in $PATH$2; do
    if [ -x "$d/$1" ]; then IFS=$o; B=$d/$1; return 0; fi
  done
  IFS=$o; return 1
}

# A wedged binary must not cost the whole host its run: bound each command when we can,
# with KILL after TERM (a bpftool that ignores TERM still ends).
TO=
if command -v timeout >/dev/null; then TO="timeout -k 5 20"; fi
# c NAME BINARY ARGS...: run a command framed as "cmd NAME BINARY" ... "rc NAME RC", its
# stderr between "cmd NAME" and "end NAME" on fd 4; r is its exit status.
c() {
  n=$1; shift
  s cmd "$n" "$1"; printf '%s cmd %s\n' "$N" "$n" >&4
  FLEET_ROOT=$R $TO "$@" </dev/null 2>&4; r=$?
  printf '%s end %s\n' "$N" "$n" >&4
  printf '\n'; s rc "$n" "$r"
}

# fd_owners FRAME GREP_ARGS...: the fdinfo lines of every process matching GREP_ARGS, framed
# as FRAME, then the comm of each process they belong to ("comms"), so evidence names who
# holds a BPF program. Reads every open file's fdinfo: only when nothing cheaper answers.
fd_owners() {
  fr=$1; shift
  for d in "$R"/proc/[0-9]*/fdinfo; do break; done
  [ -e "$d" ] || return 0  # no /proc to read: no frame, the fact stays unknown
  x=$(grep -rsH "$@" "$R"/proc/[0-9]*/fdinfo)
  s $fr  # unquoted: "fdinfo owners" is a tag and its argument
  [ -n "$x" ] && printf '%s\n' "$x"
  set --
  seen='
'
  while IFS= read -r l; do
    [ -n "$l" ] || continue
    p=${l#"$R"/proc/}; p=${p%%/*}
    case $seen in *"
$p
"*) continue ;; esac
    seen="$seen$p
"
    set -- "$@" "$R/proc/$p/comm"
  done <<EOF
$x
EOF
  if [ $# -gt 0 ]; then s comms; grep -H '' -- "$@"; fi
}
