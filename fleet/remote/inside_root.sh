# inside PATH: status 0 when PATH, symlinks followed, stays inside ROOT ($R; always when R is
# empty). Shared by probe.sh and apply.sh (fleet/remote/shell.py sends it first): a set_event
# linking to a file elsewhere on the host is neither read into the evidence nor written.
# cd -P resolves the directories without a fork; readlink runs only for a final link.
inside() {
  [ -n "$R" ] || return 0
  [ -n "${RP-}" ] || RP=$(cd -P -- "$R" 2>/dev/null && pwd -P) || RP=$R
  cd -P -- "${1%/*}" 2>/dev/null || return 0  # a missing directory reads as ENOENT
  q=$PWD/${1##*/}; cd /
  case $q/ in "$RP"/*) ;; *) return 1 ;; esac
  [ -h "$q" ] || return 0
  q=$(readlink -f -- "$q") || return 0
  case $q/ in "$RP"/*) return 0 ;; esac
  return 1
}
