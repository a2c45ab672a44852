"""Load and validate playbooks/*.yml: which checks run, with which parameters and texts."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from fleet.config.yamlfile import line_of, load_yaml
from fleet.errors import PlaybookError
from fleet.model import CHECK_IDS, FAIL, FIX_IDS, PASS, SEVERITIES, SKIP

FILE_TESTS = ("equals", "empty", "ini")


@dataclass(frozen=True)
class CheckSpec:
    id: str
    title: str
    severity: str
    remediation: str | None
    params: dict[str, Any] = field(default_factory=dict)
    # type: file
    path: str | None = None
    test: dict[str, Any] | None = None
    when_absent: str = SKIP


# How long netdata.ebpf_off waits for ebpf.plugin to exit after the restart (its `wait_s`).
NETDATA_WAIT_S = 180.0


@dataclass(frozen=True)
class FixSpec:
    id: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ProfileLimits:
    """`profile:` of a playbook: where fleet profile's checks fail, in % (profile.* ids)."""

    probe_share_pct: float = 2.0  # samples in kprobe/kretprobe or BPF machinery
    lock_spin_pct: float = 5.0  # samples spinning in a spin lock
    bpf_program_cpu_pct: float = 1.0  # one BPF program's run time, of the whole host


@dataclass(frozen=True)
class Playbook:
    id: str
    title: str
    path: Path
    checks: tuple[CheckSpec, ...]
    fixes: tuple[FixSpec, ...] = ()
    # fleet remediate's proof: seconds to let the host settle, smallest CPU change that counts
    settle_s: float = 5.0
    min_change_pct: float = 2.0
    profile: ProfileLimits = field(default_factory=ProfileLimits)

    def check(self, check_id: str) -> CheckSpec | None:
        return next((c for c in self.checks if c.id == check_id), None)

    @property
    def netdata_wait_s(self) -> float:
        """Seconds a restart of netdata may take to stop ebpf.plugin (netdata.ebpf_off's
        `wait_s`): the step's wait, and its undo's."""
        fix = next((f for f in self.fixes if f.id == "netdata.ebpf_off"), None)
        return float((fix.params if fix else {}).get("wait_s", NETDATA_WAIT_S))

    @property
    def extra_files(self) -> tuple[str, ...]:
        """Files the probe must read for the playbook's own file checks."""
        return tuple(dict.fromkeys(c.path for c in self.checks if c.path))


def default_playbook_path() -> Path:
    """`$FLEET_PLAYBOOK`, else ./playbooks/kernel-tracing.yml, else the one shipped in the
    package (fleet/playbooks/ links to the top-level playbooks/, the editable source; a wheel
    carries the file itself)."""
    env = os.environ.get("FLEET_PLAYBOOK")
    if env:
        return Path(env)
    local = Path("playbooks/kernel-tracing.yml")
    if local.exists():
        return local
    return Path(str(resources.files("fleet").joinpath("playbooks", "kernel-tracing.yml")))


def _str(value: Any, where: str, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise PlaybookError(f"{where}: {what} must be a non-empty string")
    return value


def _check(raw: Any, path: Path, index: int) -> CheckSpec:
    where = f"{path}:{line_of(raw)}"
    if not isinstance(raw, dict):
        raise PlaybookError(f"{path}: checks[{index}] must be a mapping")
    known = {
        "id",
        "title",
        "text",
        "severity",
        "params",
        "remediation",
        "type",
        "path",
        "test",
        "when_absent",
    }
    unknown = sorted(set(raw) - known)
    if unknown:
        raise PlaybookError(f"{where}: check has unknown key(s): {', '.join(unknown)}")
    cid = _str(raw.get("id"), where, "check id")
    where = f"{where}: check {cid}"
    severity = raw.get("severity", "medium")
    if severity not in SEVERITIES:
        raise PlaybookError(f"{where}: severity {severity!r} is not one of {', '.join(SEVERITIES)}")
    params = raw.get("params") or {}
    if not isinstance(params, dict):
        raise PlaybookError(f"{where}: params must be a mapping")
    title = raw.get("title") or raw.get("text") or cid
    remediation = raw.get("remediation")
    ctype = raw.get("type", "builtin" if cid in CHECK_IDS else None)
    if ctype == "builtin":
        if cid not in CHECK_IDS:
            raise PlaybookError(
                f"{where}: no built-in check with this id (built-in: {', '.join(CHECK_IDS)})"
            )
        return CheckSpec(cid, str(title), severity, remediation, dict(params))
    if ctype != "file":
        raise PlaybookError(f"{where}: unknown check; give `type: file` with `path` and `test`")
    fpath = _str(raw.get("path"), where, "path")
    if not fpath.startswith("/") or any(c in fpath for c in "\n\0"):
        raise PlaybookError(f"{where}: path must be an absolute path on one line")
    test = raw.get("test")
    if not isinstance(test, dict) or len(test) != 1 or next(iter(test)) not in FILE_TESTS:
        raise PlaybookError(
            f"{where}: test must be one of {{equals: V}}, {{empty: true}}, "
            "{ini: {section: S, key: K, equals: V}}"
        )
    if "ini" in test:
        ini = test["ini"]
        if not isinstance(ini, dict) or not {"section", "key", "equals"} <= set(ini):
            raise PlaybookError(f"{where}: ini test needs section, key and equals")
    when_absent = raw.get("when_absent", SKIP)
    if when_absent not in (SKIP, FAIL, PASS):
        raise PlaybookError(f"{where}: when_absent must be skip, fail or pass")
    return CheckSpec(
        cid, str(title), severity, remediation, dict(params), fpath, dict(test), when_absent
    )


def _fixes(raw: Any, path: Path) -> tuple[FixSpec, ...]:
    """`fixes:` lists steps by id; they run in the kernel's order, which the file must follow
    so that a reviewer reads them in the order they happen."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise PlaybookError(f"{path}:{line_of(raw)}: `fixes:` must be a list")
    out: list[FixSpec] = []
    last = -1
    for item in raw:
        where = f"{path}:{line_of(item)}"
        if not isinstance(item, dict) or not isinstance(item.get("id"), str):
            raise PlaybookError(f"{where}: each fix is a mapping with an `id`")
        unknown = sorted(set(item) - {"id", "title", "params"})
        if unknown:
            raise PlaybookError(f"{where}: fix has unknown key(s): {', '.join(unknown)}")
        fid = item["id"]
        if fid not in FIX_IDS:
            raise PlaybookError(f"{where}: unknown fix {fid!r} (known: {', '.join(FIX_IDS)})")
        pos = FIX_IDS.index(fid)
        if pos <= last:
            raise PlaybookError(
                f"{where}: fix {fid} must come before {FIX_IDS[last]} "
                f"(order: {' -> '.join(FIX_IDS)})"
            )
        last = pos
        params = item.get("params") or {}
        if not isinstance(params, dict):
            raise PlaybookError(f"{where}: params must be a mapping")
        out.append(FixSpec(fid, dict(params)))
    return tuple(out)


def _number(
    doc: dict[str, Any], key: str, default: float, path: Path, section: str = "verify"
) -> float:
    value = doc.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise PlaybookError(f"{path}:{line_of(doc)}: {section}.{key} must be a number >= 0")
    return float(value)


def _profile_limits(doc: dict[str, Any], path: Path) -> ProfileLimits:
    raw = doc.get("profile") or {}
    if not isinstance(raw, dict):
        raise PlaybookError(f"{path}:{line_of(doc)}: `profile:` must be a mapping")
    defaults = ProfileLimits()
    unknown = sorted(set(raw) - set(defaults.__dataclass_fields__))
    if unknown:
        raise PlaybookError(
            f"{path}:{line_of(raw)}: profile has unknown key(s): {', '.join(unknown)}"
        )
    return ProfileLimits(**{k: _number(raw, k, getattr(defaults, k), path, "profile") for k in raw})


def load_playbook(path: str | Path) -> Playbook:
    path = Path(path)
    doc = load_yaml(path, PlaybookError)
    if not isinstance(doc, dict):
        raise PlaybookError(f"{path}: a playbook is a mapping with `checks:`")
    raw_checks = doc.get("checks")
    if not isinstance(raw_checks, list) or not raw_checks:
        raise PlaybookError(f"{path}:{line_of(doc)}: `checks:` must be a non-empty list")
    checks = [_check(raw, path, i) for i, raw in enumerate(raw_checks)]
    seen: set[str] = set()
    for raw, c in zip(raw_checks, checks, strict=True):
        if c.id in seen:
            raise PlaybookError(f"{path}:{line_of(raw)}: duplicate check id {c.id}")
        seen.add(c.id)
    verify = doc.get("verify") or {}
    if not isinstance(verify, dict):
        raise PlaybookError(f"{path}:{line_of(doc)}: `verify:` must be a mapping")
    return Playbook(
        id=str(doc.get("id") or path.stem),
        title=str(doc.get("title") or path.stem),
        path=path,
        checks=tuple(checks),
        fixes=_fixes(doc.get("fixes"), path),
        settle_s=_number(verify, "settle_s", 5.0, path),
        min_change_pct=_number(verify, "min_change_pct", 2.0, path),
        profile=_profile_limits(doc, path),
    )
