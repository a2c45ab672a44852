"""Each host's SSH settings as OpenSSH itself resolves them (`ssh -G`), for the address
Ansible connects to.

Ansible runs `ssh -o Port=.. -o IdentityFile=".." -o User=".." [ssh args] ADDRESS`; OpenSSH
matches its config on that ADDRESS (not the inventory name), follows Include and Match, and
the first value obtained wins. Asking `ssh -G` with the same argv gives exactly those values.
Fleet adds only what `ssh -G` leaves undone: it expands the tokens of IdentityFile and
ProxyCommand (printed raw) as ssh would at connect time, keeps key files that exist, and
resolves every ProxyJump hop with its own `ssh -G`, run as the `ssh -W` OpenSSH starts for it.

Which config line set a value (for `fleet hosts -v`) is read from `ssh -G -vvv`'s account of
the blocks it applied; the values themselves always come from `ssh -G`.
"""

from fleet.transport.sshconfig.argv import ansible_argv
from fleet.transport.sshconfig.openssh import Answer, SSHConfigError, parse_ssh_G
from fleet.transport.sshconfig.resolve import (
    Resolution,
    endpoint_from_answer,
    resolve_endpoints,
    ssh_client,
)
from fleet.transport.sshconfig.tokens import expand_identity_file, expand_proxy_command

__all__ = [
    "Answer",
    "Resolution",
    "SSHConfigError",
    "ansible_argv",
    "endpoint_from_answer",
    "expand_identity_file",
    "expand_proxy_command",
    "parse_ssh_G",
    "resolve_endpoints",
    "ssh_client",
]
