# Fold `perf script` (default fields) into "comm;root;...;leaf COUNT" lines on the host, so a
# window of samples crosses the network as a few hundred distinct stacks. POSIX awk (mawk,
# gawk, busybox); the same rules as fleet.profile.stacks.fold_perf_script.
function close_sample() {
  if (in_sample) n[stack == "" ? comm : comm ";" stack]++
  in_sample = 0; stack = ""
}
/^[ \t]*$/ { close_sample(); next }
/^[ \t]/ {
  if (!in_sample) next
  t = $0; sub(/^[ \t]+/, "", t)
  i = index(t, " "); rest = (i ? substr(t, i + 1) : "")
  if (rest ~ /\)$/) {
    p = 0
    for (j = length(rest) - 1; j > 0; j--) if (substr(rest, j, 2) == " (") { p = j; break }
    if (p) rest = substr(rest, 1, p - 1)
  }
  sub(/^[ \t]+/, "", rest); sub(/[ \t]+$/, "", rest)
  sub(/\+0x[0-9a-fA-F]+$/, "", rest)
  sub(/[ \t]+$/, "", rest)
  if (rest == "") rest = "[unknown]"
  gsub(/;/, ":", rest)
  stack = (stack == "" ? rest : rest ";" stack)
  next
}
{
  close_sample()
  if (match($0, /[ \t]+[0-9]+(\/[0-9]+)?[ \t]+(\[[0-9]+\][ \t]+)?[0-9.]+:/)) c = substr($0, 1, RSTART - 1)
  else { c = $0; sub(/ .*/, "", c) }
  sub(/^[ \t]+/, "", c); sub(/[ \t]+$/, "", c)
  gsub(/;/, ":", c)
  comm = (c == "" ? "[unknown]" : c); in_sample = 1
}
END {
  close_sample()
  for (k in n) print k " " n[k]
}
