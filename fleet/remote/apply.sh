# fleet remediation: the remote half of one step. POSIX sh (dash, bash, busybox ash) plus
# cat, cp, mv, sort, rm, mkdir, date. Run as `sh -s`: `set -- NONCE ROOT TAG OP...` comes first
# on stdin (fleet/remote/shell.py), then this script. Every value is only ever expanded in
# double quotes: paths, contents and tokens reach files literally, never as shell.
#
# OP is four arguments: MODE PATH CHECK DATA.
#   set    PATH EXPECT  NEW     the file holds EXPECT exactly; write NEW with O_TRUNC
#   trunc  PATH EXPECT  -       lines of the file equal EXPECT's (any order); open O_TRUNC
#   append PATH EXPECT  TOKENS  same check; append each line of TOKENS with its own write()
#   file   PATH EXPECT  NEW     config file: backup copy PATH.fleet-TAG.bak, NEW written to a
#                               temp copy (owner and mode kept) and renamed over PATH
#   restore PATH EXPECT PREV    undo of `file`: PREV written the same way, no new backup; the
#                               backup PATH.fleet-TAG.bak is removed when it holds PREV
#   same   PATH EXPECT  -       only check: the file holds EXPECT exactly (same-lines: any order)
#   run    -    -       CMD     run CMD with sh -c (the inventory's netdata restart command)
#   lock   PATH OWNER   NOW     mkdir PATH as a lock (its directory must exist: nothing else
#                               is created on the host); OWNER stale (or "-"): take it over
#   unlock PATH OWNER   -       remove the lock PATH if OWNER still holds it
# Every check runs before any write, so a step whose state moved since it was read changes
# nothing. Output: "<NONCE> op I STATUS DETAIL" per op, then the file as it reads after the
# write between "<NONCE> after I" and the next frame (kernel files: set, trunc, append).
N=$1; R=${2%/}; TAG=$3; shift 3
export LC_ALL=C
PATH=$PATH:/usr/local/sbin:/usr/sbin:/sbin
s() { printf '%s %s\n' "$N" "$*"; }

# content FILE: the file's bytes in $c (trailing newlines kept); status in $?.
content() {
  c=$(cat -- "$1" 2>/dev/null; r=$?; printf x; exit "$r")
  r=$?
  c=${c%x}
  return "$r"
}
# why FILE: the read or write error as the shell or cat words it, on one line.
why() { printf '%s' "$1" | tr '\n' ' '; }
sorted() { printf '%s' "$1" | grep -v '^$' | sort; }

s begin 1
# Pass 1: every precondition, nothing written. Each op is rotated to the end of the
# arguments, so after one round they are back in their order.
i=0; ops=$(($# / 4))
while [ "$i" -lt "$ops" ]; do
  i=$((i + 1)); mode=$1; path=$2; f=$R$2; check=$3; data=$4; shift 4
  set -- "$@" "$mode" "$path" "$check" "$data"
  case $mode in
    set|file|restore|same|trunc|append|same-lines|lock|unlock)
      if ! inside "$f"; then s op "$i" fail "$path: Symbolic link leads outside fleet_root"; s done; exit 3; fi ;;
  esac
  case $mode in
    set|file|restore|same|trunc|append|same-lines) ;;
    *) continue ;;
  esac
  if ! content "$f"; then s op "$i" fail "$(why "$(cat -- "$f" 2>&1 >/dev/null)")"; s done; exit 3; fi
  case $mode in
    set|file|restore|same) [ "$c" = "$check" ] ;;
    *) [ "$(sorted "$c")" = "$(sorted "$check")" ] ;;
  esac || { s op "$i" changed "content differs from the plan"; s done; exit 4; }
done
# Pass 2: apply them in order; the first failure stops the step.
i=0
while [ $# -ge 4 ]; do
  i=$((i + 1)); mode=$1; path=$2; f=$R$2; check=$3; data=$4; shift 4
  case $mode in
    same|same-lines) s op "$i" ok; continue ;;
    set)
      if err=$( (printf '%s' "$data" >"$f") 2>&1 ); then s op "$i" ok; else s op "$i" fail "$(why "$err")"; s done; exit 5; fi ;;
    trunc)
      if err=$( (: >"$f") 2>&1 ); then s op "$i" ok; else s op "$i" fail "$(why "$err")"; s done; exit 5; fi ;;
    append)
      failed=
      # One token per write(): the kernel parses one per call and drops the rest.
      while IFS= read -r tok; do
        [ -n "$tok" ] || continue
        if ! err=$( (printf '%s\n' "$tok" >>"$f") 2>&1 ); then failed="$tok: $(why "$err")"; break; fi
      done <<EOF
$data
EOF
      if [ -z "$failed" ]; then s op "$i" ok; else s op "$i" fail "$failed"; s done; exit 5; fi ;;
    file)
      bak=$f.fleet-$TAG.bak; tmp=$f.fleet-$TAG.new
      if err=$( (cp -p -- "$f" "$bak" && cp -p -- "$f" "$tmp" && printf '%s' "$data" >"$tmp" && mv -f -- "$tmp" "$f") 2>&1 ); then
        s op "$i" ok "backup ${bak#"$R"}"
      else
        rm -f -- "$tmp"; s op "$i" fail "$(why "$err")"; s done; exit 5
      fi
      continue ;;
    restore)
      bak=$f.fleet-$TAG.bak; tmp=$f.fleet-$TAG.new
      if err=$( (cp -p -- "$f" "$tmp" && printf '%s' "$data" >"$tmp" && mv -f -- "$tmp" "$f") 2>&1 ); then
        if content "$bak" && [ "$c" = "$data" ]; then rm -f -- "$bak"; fi
        s op "$i" ok
      else
        rm -f -- "$tmp"; s op "$i" fail "$(why "$err")"; s done; exit 5
      fi
      continue ;;
    run)
      out=$(sh -c "$data" </dev/null 2>&1); rc=$?
      if [ "$rc" -eq 0 ]; then s op "$i" ok; else s op "$i" fail "rc $rc: $(why "$out")"; s done; exit 6; fi
      continue ;;
    lock)
      if [ ! -d "${f%/*}" ]; then s op "$i" fail "${path%/*}: No such file or directory"; s done; exit 5; fi
      if [ "$check" != - ]; then
        # Take over a stale lock only if it still names the owner judged stale.
        if content "$f/owner" && [ "$c" = "$check" ] && mv -- "$f" "$f.stale.$$" 2>/dev/null; then
          rm -rf -- "$f.stale.$$"
        fi
      fi
      if mkdir -- "$f" 2>/dev/null; then
        printf '%s' "$data" >"$f/owner"; s op "$i" ok
      else
        content "$f/owner"; s op "$i" held "$(date +%s 2>/dev/null || echo 0)"; s after "$i"; printf '%s\n' "$c"
        s done; exit 7
      fi
      continue ;;
    unlock)
      if content "$f/owner" && [ "$c" = "$check" ]; then rm -rf -- "$f"; s op "$i" ok; else s op "$i" gone; fi
      continue ;;
    *) s op "$i" fail "unknown mode $mode"; s done; exit 2 ;;
  esac
  s after "$i"
  cat -- "$f" 2>/dev/null
done
s done
