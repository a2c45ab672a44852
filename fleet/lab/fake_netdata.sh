#!/bin/sh
# fleet lab stand-in for the netdata daemon binary. The lab never runs a real netdata; the
# audit only asks for the version, so that is all this answers. The host's root is $0 minus
# its trailing /usr/sbin/netdata, so one script serves every lab host.
case $0 in
    /*) self=$0 ;;
    *) self=$(pwd)/$0 ;;
esac
root=${self%/usr/sbin/*}

case ${1-} in
    -v | -V)
        read -r version <"$root/var/lib/fleet-lab/netdata_version" || exit 1
        echo "netdata v$version"
        ;;
    *)
        echo "USAGE: netdata -v | -V   (fleet lab stand-in: only the version query exists)" >&2
        exit 1
        ;;
esac
