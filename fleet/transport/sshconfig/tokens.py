"""Token expansion as OpenSSH 9.2 does it at connect time (`ssh -G` prints IdentityFile and
ProxyCommand as written)."""

from __future__ import annotations

import functools
import hashlib
import os
import pwd
import socket
from collections.abc import Mapping

from fleet.transport.sshconfig.openssh import Answer, SSHConfigError


@functools.cache
def passwd() -> pwd.struct_passwd:
    return pwd.getpwuid(os.getuid())


@functools.cache
def local_hostname() -> str:
    return socket.gethostname()


def tilde_expand(path: str) -> str:
    """`~` and `~user` as OpenSSH expands them: from the password database, not $HOME."""
    if not path.startswith("~"):
        return path
    name, slash, rest = path[1:].partition("/")
    try:
        home = pwd.getpwnam(name).pw_dir if name else passwd().pw_dir
    except KeyError:
        raise SSHConfigError(f"{path}: no such user {name!r}") from None
    return home.rstrip("/") + "/" + rest if slash else home


def percent_expand(text: str, tokens: Mapping[str, str], what: str, dollar: bool) -> str:
    """OpenSSH's percent (and `${ENV}`) expansion: one pass, an unknown token is an error."""
    out: list[str] = []
    i = 0
    while i < len(text):
        c = text[i]
        if c == "%":
            key = text[i + 1 : i + 2]
            if key == "%":
                out.append("%")
            elif key in tokens:
                out.append(tokens[key])
            else:
                raise SSHConfigError(f"{what} {text!r}: unknown token %{key}")
            i += 2
        elif dollar and text.startswith("${", i):
            end = text.find("}", i)
            if end < 0:
                raise SSHConfigError(f"{what} {text!r}: unterminated ${{")
            name = text[i + 2 : end]
            if name not in os.environ:
                raise SSHConfigError(f"{what} {text!r}: environment variable {name} is not set")
            out.append(os.environ[name])
            i = end + 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def identity_tokens(answer: Answer, host_arg: str) -> dict[str, str]:
    """The tokens OpenSSH 9.2 expands in IdentityFile (no %j before 9.4)."""
    pw = passwd()
    thishost = local_hostname()
    hostname = answer.one("hostname", host_arg) or host_arg
    port = answer.one("port", "22") or "22"
    user = answer.one("user", pw.pw_name) or pw.pw_name
    conn_hash = hashlib.sha1((thishost + hostname + port + user).encode()).hexdigest()
    return {
        "C": conn_hash,
        "L": thishost.split(".")[0],
        "i": str(pw.pw_uid),
        "k": answer.one("hostkeyalias") or host_arg,
        "l": thishost,
        "n": host_arg,
        "p": port,
        "d": pw.pw_dir,
        "h": hostname,
        "r": user,
        "u": pw.pw_name,
    }


def expand_identity_file(path: str, tokens: Mapping[str, str]) -> str:
    """IdentityFile as ssh opens it: `~` first, then %-tokens and ${ENV}."""
    return percent_expand(tilde_expand(path), tokens, "IdentityFile", dollar=True)


def expand_proxy_command(command: str, answer: Answer, host_arg: str) -> str:
    """ProxyCommand's tokens (%h %n %p %r %%), the values ssh passes when it runs it."""
    tokens = {
        "h": answer.one("hostname", host_arg) or host_arg,
        "n": host_arg,
        "p": answer.one("port", "22") or "22",
        "r": answer.one("user", "") or "",
    }
    return percent_expand(command, tokens, "ProxyCommand", dollar=False)
