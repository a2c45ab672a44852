"""netdata's config files (netdata.conf, ebpf.d.conf) read exactly as netdata reads them.

netdata's loader (libnetdata/config/appconfig.c, `appconfig_load`) is C, and every rule below
is one of its rules, checked against Debian's netdata 1.37.1 binary
(`netdata -c FILE -W get SECTION KEY DEFAULT`, tests/unit/test_netdataconf_vs_netdata.py):

- lines come from `fgets(buffer, 8192)`: split on `\\n` only, and a line longer than 8191
  bytes is read as several, the tail being a line of its own (so `ebpf = yes` hidden after a
  long comment counts); a NUL byte ends what the line holds;
- each line is trimmed of ASCII whitespace (C `isspace`: space, \\t, \\n, \\v, \\f, \\r);
  empty lines and lines starting with `#` are skipped (`;` is NOT a comment);
- `[name]` starts a section whose name is everything between the brackets, untrimmed and
  case-sensitive (`[ plugins ]` and `[PLUGINS]` are other sections);
- `key = value` splits at the first `=`, both sides trimmed; keys are case-sensitive; a line
  without `=` or outside every section is ignored; a repeated key: the last one wins;
- booleans are true for `yes`, `true`, `on`, `auto`, `on demand` (any case), false otherwise
  (so `1` is off).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

# fgets(buffer, CONFIG_FILE_LINE_MAX) with an 8192-byte limit keeps 8191 bytes per read.
LINE_MAX = 8191
_C_SPACE = b" \t\n\v\f\r"
_TRUE = ("yes", "true", "on", "auto", "on demand")
PLUGINS = "plugins"
NEW_PLUGINS_KEY = "enable running new plugins"
_COMMENTED = re.compile(rb"#[ \t]*([^=#]*?)[ \t]*=")


@dataclass(frozen=True)
class Setting:
    value: str
    line: int  # netdata's own count: each fgets read is a line
    source: str = ""  # the file it came from, when several are merged; "-W set" for argv


@dataclass(frozen=True)
class NetdataConfig:
    sections: Mapping[str, Mapping[str, Setting]] = field(default_factory=dict)
    # Keys seen only as `# key = value` per section: netdata ships its defaults so.
    commented: Mapping[str, frozenset[str]] = field(default_factory=dict)

    def get(self, section: str, key: str) -> Setting | None:
        return self.sections.get(section, {}).get(key)

    def boolean(self, section: str, key: str, default: bool) -> bool:
        found = self.get(section, key)
        return default if found is None else netdata_true(found.value)


def netdata_true(value: str) -> bool:
    """appconfig_test_boolean_value: strcasecmp against netdata's true words."""
    return value.lower() in _TRUE


def config_reads(data: bytes) -> Iterator[tuple[int, int, bytes]]:
    """Each fgets(buffer, 8192) read: its (start, end) in `data` and the C string netdata
    then sees (up to a NUL)."""
    pos, size = 0, len(data)
    while pos < size:
        newline = data.find(b"\n", pos, pos + LINE_MAX)
        end = newline + 1 if newline >= 0 else min(pos + LINE_MAX, size)
        yield pos, end, data[pos:end].split(b"\0", 1)[0]
        pos = end


def load_netdata_config(text: str | bytes) -> NetdataConfig:
    data = text.encode("utf-8", "surrogateescape") if isinstance(text, str) else text
    sections: dict[str, dict[str, Setting]] = {}
    commented: dict[str, set[str]] = {}
    current: dict[str, Setting] | None = None
    name_now = ""
    for line, (_start, _end, raw) in enumerate(config_reads(data), start=1):
        s = raw.strip(_C_SPACE)
        if not s:
            continue
        if s.startswith(b"#"):
            if current is not None and (m := _COMMENTED.match(s)):
                commented.setdefault(name_now, set()).add(_text(m[1]))
            continue
        if s.startswith(b"[") and s.endswith(b"]"):
            name_now = _text(s[1:-1])
            current = sections.setdefault(name_now, {})
            continue
        if current is None:
            continue  # outside every section
        name, sep, value = s.partition(b"=")
        if not sep:
            continue
        name = name.strip(_C_SPACE)
        if not name or name.startswith(b"#"):
            continue
        current[_text(name)] = Setting(_text(value.strip(_C_SPACE)), line)
    only_commented = {
        name: frozenset(keys - sections[name].keys()) for name, keys in commented.items()
    }
    return NetdataConfig(sections, only_commented)


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


def plugin_enabled(conf: NetdataConfig, plugin: str) -> tuple[bool, str]:
    """Whether netdata starts `<plugin>.plugin`, as plugins_d decides it, and why.

    The plugin's own `[plugins]` key wins; absent, `enable running new plugins` (default
    yes) decides.
    """
    new_plugins = conf.boolean(PLUGINS, NEW_PLUGINS_KEY, True)
    found = conf.get(PLUGINS, plugin)
    if found is not None:
        on = netdata_true(found.value)
        where = f"{found.source} line {found.line}" if found.source else f"line {found.line}"
        if found.source == "-W set":
            where = "netdata -W set"
        return on, f"[{PLUGINS}] {plugin} = {found.value} ({where})"
    default = "yes" if new_plugins else "no"
    commented = " (commented)" if plugin in conf.commented.get(PLUGINS, ()) else ""
    return new_plugins, (
        f"[{PLUGINS}] {plugin} absent{commented}: runs by default ({NEW_PLUGINS_KEY} = {default})"
    )


def set_netdata_value(text: str, section: str, key: str, value: str) -> str:
    """`text` changed so that netdata reads `[section] key = value`; every other byte kept.

    Every line netdata reads as that key in that section gets the new value (indentation and
    line ending kept); with none, a line goes after the key's commented default (netdata ships
    those), else at the end of the section's last block, else in a new section at the end.
    Whatever the file's oddities, the result is read back with netdata's rules, and if it
    still does not say `value`, the section is appended once more at the end (last wins).
    """
    data = text.encode("utf-8", "surrogateescape")
    want_section, want_key, new = (
        s.encode("utf-8", "surrogateescape") for s in (section, key, value)
    )
    commented = re.compile(rb"^#\s*" + re.escape(want_key) + rb"\s*=")
    edits: list[tuple[int, int, bytes]] = []  # (start, end, replacement), in file order
    insert_at: int | None = None  # after the commented default
    section_end: int | None = None  # after the section's last non-blank line
    indent = b"\t"
    current: bytes | None = None
    for start, end, raw in config_reads(data):
        s = raw.strip(_C_SPACE)
        if s.startswith(b"[") and s.endswith(b"]"):
            current = s[1:-1]
            if current == want_section:
                section_end = end
            continue
        if current != want_section or not s:
            continue
        section_end = end
        if commented.match(s):
            if insert_at is None:
                insert_at = end
                indent = raw[: len(raw) - len(raw.lstrip(_C_SPACE))] or b"\t"
            continue
        name, sep, rest = raw.partition(b"=")
        if sep and name.strip(_C_SPACE) == want_key and not s.startswith(b"#"):
            # Replace the trimmed value, keep what surrounds it.
            lead = len(rest) - len(rest.lstrip(_C_SPACE))
            body = rest.strip(_C_SPACE)
            at = start + len(name) + 1 + lead
            edits.append((at, at + len(body), new))
    if edits:
        out = bytearray(data)
        for at, stop, replacement in reversed(edits):
            out[at:stop] = replacement
        result = bytes(out)
    else:
        eol = b"\r\n" if data.endswith(b"\r\n") else b"\n"
        line = indent + want_key + b" = " + new + eol
        at = insert_at if insert_at is not None else section_end
        if at is not None:
            head = data[:at] if data[:at].endswith(b"\n") else data[:at] + eol
            result = head + line + data[at:]
        else:
            result = _append_section(data, want_section, line, eol)
    if not _reads_as(result, section, key, value):
        eol = b"\r\n" if data.endswith(b"\r\n") else b"\n"
        result = _append_section(result, want_section, b"\t" + want_key + b" = " + new + eol, eol)
    return result.decode("utf-8", "surrogateescape")


def _append_section(data: bytes, section: bytes, line: bytes, eol: bytes) -> bytes:
    prefix = data if not data or data.endswith(b"\n") else data + eol
    return prefix + (eol if prefix else b"") + b"[" + section + b"]" + eol + line


def _reads_as(data: bytes, section: str, key: str, value: str) -> bool:
    found = load_netdata_config(data).get(section, key)
    return found is not None and found.value == value
