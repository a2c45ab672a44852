#!/bin/sh
# fleet lab stand-in for `systemctl restart netdata` on one lab host. Like the real daemon at
# start it reads [plugins] ebpf from netdata.conf (default on): off makes ebpf.plugin exit and
# its BPF programs go away, on brings them back. The kprobes and trampolines it held follow
# ebpf.plugin's process: the lab kernel model (fleet/lab/kernelmodel.py) drops or restores
# them once the command that ran this has finished.
# Every file is replaced whole (temp + mv) so a concurrent audit never reads half of one.
case $0 in
    /*) self=$0 ;;
    *) self=$(pwd)/$0 ;;
esac
root=${self%/usr/sbin/*}
lab=$root/var/lib/fleet-lab
conf=$root/etc/netdata/netdata.conf

if [ ! -x "$root/usr/sbin/netdata" ]; then
    echo "Failed to restart netdata.service: Unit netdata.service not found." >&2
    exit 5
fi

ebpf=$(awk -f "$lab/netdata_ebpf.awk" "$conf" 2>/dev/null) || ebpf=on

# put FILE: replace FILE with stdin in one rename.
put() {
    cat >"$1.fleet-lab.$$" && mv -f "$1.fleet-lab.$$" "$1"
}

pid=$(cat "$lab/ebpf_plugin_pid")
if [ "$ebpf" = off ]; then
    if [ -d "$root/proc/$pid" ]; then
        # Rename first so no reader sees a process directory without its comm.
        mv "$root/proc/$pid" "$root/proc/.gone.$$" && rm -rf "$root/proc/.gone.$$"
    fi
    put "$lab/bpf_progs.json" <"$lab/bpf_progs.without_netdata.json"
    put "$lab/bpf_progs.txt" <"$lab/bpf_progs.without_netdata.txt"
else
    if [ ! -d "$root/proc/$pid" ]; then
        cp -R "$lab/ebpf_plugin_proc" "$root/proc/.new.$$" && mv "$root/proc/.new.$$" "$root/proc/$pid"
    fi
    put "$lab/bpf_progs.json" <"$lab/bpf_progs.with_netdata.json"
    put "$lab/bpf_progs.txt" <"$lab/bpf_progs.with_netdata.txt"
fi
