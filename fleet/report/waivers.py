"""Waivers, like InSpec's: an accepted failure of one check on some hosts, with a reason, an
owner and an expiry. A waived failure is reported as `waived`, never hidden; once expired the
failure counts again and the report says so loudly.

```yaml
waivers:
  - host: "half-fixed-*"        # host name, shell wildcards (* ? [..])
    check: netdata.ebpf         # check id (wildcards allowed)
    reason: netdata 1.37 rollout is CHG-1234
    owner: ops@example.com
    expires: 2026-12-31         # in effect before this day (UTC); from it on, expired
```

Only `fail` can be waived: an `error` is an unknown state, not an accepted risk.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

from fleet.config.yamlfile import line_of, load_yaml
from fleet.errors import UsageError
from fleet.model import FAIL, HostResult

FIELDS = ("host", "check", "reason", "owner", "expires")


class WaiverError(UsageError):
    """The waiver file is unreadable or malformed (file:line in the message)."""


@dataclass(frozen=True)
class Waiver:
    host: str
    check: str
    reason: str
    owner: str
    expires: date
    source: str  # "waivers.yml:7"

    def expired(self, today: date) -> bool:
        return today >= self.expires

    def covers(self, host: str, check: str) -> bool:
        return fnmatch.fnmatchcase(host, self.host) and fnmatch.fnmatchcase(check, self.check)

    def to_json(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "check": self.check,
            "reason": self.reason,
            "owner": self.owner,
            "expires": self.expires.isoformat(),
            "source": self.source,
        }


@dataclass(frozen=True)
class Mark:
    """The waiver that matched one failing (host, check)."""

    waiver: Waiver
    expired: bool


@dataclass(frozen=True)
class WaiverUse:
    waiver: Waiver
    expired: bool
    hosts: tuple[str, ...]  # hosts whose failure of the check it matched in this run

    def to_json(self) -> dict[str, Any]:
        return {**self.waiver.to_json(), "expired": self.expired, "hosts": list(self.hosts)}


@dataclass(frozen=True)
class WaiverOutcome:
    marks: dict[tuple[str, str], Mark] = field(default_factory=dict)
    uses: tuple[WaiverUse, ...] = ()

    @property
    def waived(self) -> frozenset[tuple[str, str]]:
        """(host, check) failures that an active waiver covers."""
        return frozenset(k for k, m in self.marks.items() if not m.expired)

    def warnings(self) -> list[str]:
        """One line per expired waiver, naming its file:line."""
        out = []
        for use in self.uses:
            if not use.expired:
                continue
            w = use.waiver
            what = (
                f"the failure on {', '.join(use.hosts)} counts again"
                if use.hosts
                else "it matches no failing check now: remove it"
            )
            out.append(
                f"{w.source}: waiver of {w.check} on '{w.host}' (owner {w.owner}) expired on "
                f"{w.expires.isoformat()}: {what}"
            )
        return out


def _text(raw: dict[str, Any], key: str, where: str) -> str:
    value = raw.get(key)
    if value is None:
        raise WaiverError(f"{where}: missing '{key}'")
    if not isinstance(value, str) or not value.strip():
        raise WaiverError(f"{where}: '{key}' must be a non-empty string, got {value!r}")
    return value.strip()


def _date(raw: dict[str, Any], where: str) -> date:
    value = raw.get("expires")
    if value is None:
        raise WaiverError(f"{where}: missing 'expires' (a waiver without an end is a new rule)")
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):  # YAML reads 2026-12-31 as a date
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            pass
    raise WaiverError(f"{where}: 'expires' must be a date (YYYY-MM-DD), got {value!r}")


def parse_waivers(doc: Any, path: Path) -> list[Waiver]:
    """Validate a parsed waiver file; errors name `path:line`."""
    if doc is None:
        return []
    if not isinstance(doc, dict) or set(doc) != {"waivers"}:
        raise WaiverError(f"{path}:{line_of(doc) or 1}: expected one key, 'waivers:', with a list")
    items = doc["waivers"]
    if items is None:
        return []
    if not isinstance(items, list):
        raise WaiverError(f"{path}:{line_of(doc) or 1}: 'waivers' must be a list")
    out = []
    for index, raw in enumerate(items, 1):
        line = line_of(raw) or line_of(doc)
        where = f"{path}:{line}: waiver {index}"
        if not isinstance(raw, dict):
            raise WaiverError(f"{where}: expected a mapping of {', '.join(FIELDS)}")
        unknown = sorted(set(raw) - set(FIELDS), key=str)
        if unknown:
            raise WaiverError(f"{where}: unknown key {unknown[0]!r} (keys: {', '.join(FIELDS)})")
        out.append(
            Waiver(
                host=_text(raw, "host", where),
                check=_text(raw, "check", where),
                reason=_text(raw, "reason", where),
                owner=_text(raw, "owner", where),
                expires=_date(raw, where),
                source=f"{path}:{line}",
            )
        )
    return out


def load_waivers(path: Path) -> list[Waiver]:
    return parse_waivers(load_yaml(path, WaiverError), path)


def apply_waivers(hosts: list[HostResult], waivers: list[Waiver], today: date) -> WaiverOutcome:
    """Match every failing (host, check) against the waivers. An active waiver wins over an
    expired one (a renewed waiver may sit below the old one); else the first in file order."""
    marks: dict[tuple[str, str], Mark] = {}
    matched: dict[int, list[str]] = {i: [] for i in range(len(waivers))}
    for h in hosts:
        for f in h.checks:
            if f.status != FAIL:
                continue
            hits = [i for i, w in enumerate(waivers) if w.covers(h.name, f.id)]
            if not hits:
                continue
            active = [i for i in hits if not waivers[i].expired(today)]
            chosen = active[0] if active else hits[0]
            marks[(h.name, f.id)] = Mark(waivers[chosen], not active)
            if h.name not in matched[chosen]:
                matched[chosen].append(h.name)
    uses = tuple(WaiverUse(w, w.expired(today), tuple(matched[i])) for i, w in enumerate(waivers))
    return WaiverOutcome(marks, uses)
