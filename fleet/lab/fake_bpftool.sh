#!/bin/sh
# fleet lab stand-in for bpftool v7.1.0: `prog show|list` (plain or -j/--json, -p/--pretty)
# prints this host's loaded BPF programs from var/lib/fleet-lab, which the lab's
# netdata-restart rewrites. Options may come anywhere, and objects and commands may be
# abbreviated, as with the real getopt/is_prefix parsing. The host's root is $0 minus its
# trailing /usr/sbin/bpftool, so one script serves every lab host.
case $0 in
    /*) self=$0 ;;
    *) self=$(pwd)/$0 ;;
esac
root=${self%/usr/sbin/*}
lab=$root/var/lib/fleet-lab

usage() {
    cat >&2 <<'EOF'
Usage: bpftool [OPTIONS] OBJECT { COMMAND | help }
       bpftool batch file FILE
       bpftool version

       OBJECT := { prog | map | link | cgroup | perf | net | feature | btf | gen | struct_ops | iter }
       OPTIONS := { {-j|--json} [{-p|--pretty}] | {-d|--debug} |
                    {-V|--version} }
EOF
}

# Real bpftool reports errors as JSON on stdout in JSON mode, as "Error: ..." on stderr
# otherwise, and exits 255 (main returns -1).
fail() {
    if [ "$json" = 1 ]; then
        printf '{"error":"%s"}\n' "$1"
    else
        echo "Error: $1" >&2
    fi
    exit 255
}

json=0
obj=
cmd=
extra=
for arg in "$@"; do
    case $arg in
        -j | --json | -p | --pretty) json=1 ;;
        -V | --version) obj=version ;;
        -*)
            echo "bpftool: unrecognized option '$arg'" >&2
            usage
            exit 255
            ;;
        *)
            if [ -z "$obj" ]; then
                obj=$arg
            elif [ -z "$cmd" ]; then
                cmd=$arg
            else
                extra=$arg
            fi
            ;;
    esac
done

case $obj in
    v | ve | ver | vers | versi | versio | version)
        if [ "$json" = 1 ]; then
            echo '{"version":"7.1.0","libbpf_version":"1.1","features":{"libbfd":true,"libbpf_strict":true,"skeletons":true}}'
        else
            echo "bpftool v7.1.0"
            echo "using libbpf v1.1"
            echo "features: libbfd, libbpf_strict, skeletons"
        fi
        ;;
    p | pr | pro | prog)
        case $cmd in
            "" | s | sh | sho | show | l | li | lis | list) ;;
            *) fail "unrecognized command '$cmd'" ;;
        esac
        if [ -n "$extra" ]; then
            fail "fleet lab bpftool shows all programs only, not '$extra'"
        fi
        if [ "$json" = 1 ]; then
            cat "$lab/bpf_progs.json" 2>/dev/null || echo '[]'
        else
            cat "$lab/bpf_progs.txt" 2>/dev/null
        fi
        ;;
    *)
        usage
        exit 255
        ;;
esac
