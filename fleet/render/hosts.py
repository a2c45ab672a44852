"""`fleet hosts` output: a table, `-v` settings with their sources, `--json`."""

from __future__ import annotations

from typing import Any

from tabulate import tabulate

from fleet.transport.hosts import HostView

SCHEMA = 1


def render_hosts_table(views: list[HostView]) -> str:
    rows = [
        (
            v.name,
            v.endpoint.address,
            v.endpoint.port,
            v.endpoint.user,
            ",".join(v.groups) or "-",
            v.via,
        )
        for v in views
    ]
    headers = ("HOST", "ADDRESS", "PORT", "USER", "GROUPS", "VIA")
    table = tabulate(rows, headers=headers, tablefmt="simple", disable_numparse=True)
    return f"{table}\n\n{len(views)} host(s)\n"


def render_hosts_verbose(views: list[HostView]) -> str:
    """Each setting, its value and where it came from (inventory var, ssh_config FILE:LINE,
    default), one block per host."""
    out: list[str] = []
    for v in views:
        e, src = v.endpoint, v.endpoint.sources
        keys = ", ".join(e.key_files) or "(none; ssh-agent only)"
        rows = [
            ("address", e.address, src.get("address", "")),
            ("port", str(e.port), src.get("port", "")),
            ("user", e.user, src.get("user", "")),
            ("keys", keys, src.get("key_files", "")),
            ("via", v.via, src.get("proxy", "")),
        ]
        out.append(f"{v.name}  [{', '.join(v.groups) or '-'}]")
        width = max(len(value) for _, value, _ in rows)
        for label, value, where in rows:
            out.append(f"  {label:<8} {value:<{width}}  <- {where}".rstrip(" <-"))
        for i, hop in enumerate(e.jump, 1):
            keys = ", ".join(hop.key_files) or "(none; ssh-agent only)"
            out.append(f"  hop {i:<4} {hop.name}: {hop}  keys: {keys}")
        out.append("")
    return "\n".join(out)


def hosts_document(views: list[HostView]) -> dict[str, Any]:
    return {
        "schema": SCHEMA,
        "command": "hosts",
        "hosts": [
            {
                "name": v.name,
                "groups": list(v.groups),
                "address": v.endpoint.address,
                "port": v.endpoint.port,
                "user": v.endpoint.user,
                "key_files": list(v.endpoint.key_files),
                "proxy_command": v.endpoint.proxy_command,
                "jump": [
                    {
                        "name": h.name,
                        "address": h.address,
                        "port": h.port,
                        "user": h.user,
                        "key_files": list(h.key_files),
                    }
                    for h in v.endpoint.jump
                ],
                "via": v.via,
                "sources": dict(v.endpoint.sources),
            }
            for v in views
        ],
    }
