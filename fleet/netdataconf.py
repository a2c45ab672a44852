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

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

# fgets(buffer, CONFIG_FILE_LINE_MAX) with an 8192-byte limit keeps 8191 bytes per read.
LINE_MAX = 8191
_C_SPACE = b" \t\n\v\f\r"
_TRUE = ("yes", "true", "on", "auto", "on demand")
PLUGINS = "plugins"
NEW_PLUGINS_KEY = "enable running new plugins"


@dataclass(frozen=True)
class Setting:
    value: str
    line: int  # netdata's own count: each fgets read is a line


@dataclass(frozen=True)
class NetdataConfig:
    sections: Mapping[str, Mapping[str, Setting]] = field(default_factory=dict)

    def get(self, section: str, key: str) -> Setting | None:
        return self.sections.get(section, {}).get(key)

    def boolean(self, section: str, key: str, default: bool) -> bool:
        found = self.get(section, key)
        return default if found is None else netdata_true(found.value)


def netdata_true(value: str) -> bool:
    """appconfig_test_boolean_value: strcasecmp against netdata's true words."""
    return value.lower() in _TRUE


def config_reads(data: bytes) -> Iterator[bytes]:
    """What each fgets(buffer, 8192) call returns, as the C string netdata then sees."""
    pos, end = 0, len(data)
    while pos < end:
        newline = data.find(b"\n", pos, pos + LINE_MAX)
        stop = newline + 1 if newline >= 0 else min(pos + LINE_MAX, end)
        chunk = data[pos:stop]
        pos = stop
        yield chunk.split(b"\0", 1)[0]


def load_netdata_config(text: str | bytes) -> NetdataConfig:
    data = text.encode("utf-8", "surrogateescape") if isinstance(text, str) else text
    sections: dict[str, dict[str, Setting]] = {}
    current: dict[str, Setting] | None = None
    for line, raw in enumerate(config_reads(data), start=1):
        s = raw.strip(_C_SPACE)
        if not s or s.startswith(b"#"):
            continue
        if s.startswith(b"[") and s.endswith(b"]"):
            current = sections.setdefault(_text(s[1:-1]), {})
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
    return NetdataConfig(sections)


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
        return on, f"[{PLUGINS}] {plugin} = {found.value} (line {found.line})"
    default = "yes" if new_plugins else "no"
    return new_plugins, (
        f"[{PLUGINS}] {plugin} absent: runs by default ({NEW_PLUGINS_KEY} = {default})"
    )
