# Prints "on" or "off": netdata.conf's [plugins] ebpf as netdata's appconfig_get_boolean reads
# it: yes/true/on/auto/"on demand" (any case) mean on, any other value off; whole-line # or ;
# comments; a missing key keeps the compiled-in default (on). Used by the lab's netdata-restart
# and by the QEMU guest's (tests/e2e/guest/fleet-e2e).
function trim(s) { sub(/^[ \t]+/, "", s); sub(/[ \t\r]+$/, "", s); return s }
BEGIN { on = 1 }
{
    line = trim($0)
    if (line == "" || line ~ /^[#;]/) next
    if (line ~ /^\[.*\]$/) { section = tolower(trim(substr(line, 2, length(line) - 2))); next }
    eq = index(line, "=")
    if (section != "plugins" || eq == 0) next
    if (tolower(trim(substr(line, 1, eq - 1))) != "ebpf") next
    value = tolower(trim(substr(line, eq + 1)))
    on = (value == "yes" || value == "true" || value == "on" || value == "auto" || value == "on demand")
}
END { print (on ? "on" : "off") }
