"""`fleet report --format junit`: JUnit XML as Jenkins (junit plugin) and GitLab read it.

One <testsuite> per host, one <testcase> per check: `fail` -> <failure> carrying the evidence
and the fix, `error` -> <error>, `skip` and waived failures -> <skipped> (the waiver's owner,
expiry and reason in the message), `warn` -> a pass with the warning in <system-out>. An
unreachable host is one testcase, `reachable`, in error; a probe error is a `probe` testcase.
`classname` is `fleet.<host>` with dots made underscores, because Jenkins splits it at the last
dot into package and class.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET

from fleet.model import (
    ERROR,
    FAIL,
    SKIP,
    UNREACHABLE,
    WAIVED,
    WARN,
    Finding,
    HostResult,
    parse_time,
)
from fleet.report.data import ReportData

# Characters XML 1.0 cannot carry, even escaped.
_INVALID_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _clean(text: str) -> str:
    return _INVALID_XML.sub("\ufffd", text)


def _body(f: Finding) -> str:
    text = f"{f.summary}\n\nevidence:\n{json.dumps(f.evidence, indent=2)}\n"
    if f.fix:
        text += f"\nfix:\n{f.fix}\n"
    return _clean(text)


def _classname(host: str) -> str:
    return "fleet." + host.replace(".", "_")


def _case(suite: ET.Element, host: str, name: str, seconds: float = 0.0) -> ET.Element:
    return ET.SubElement(
        suite, "testcase", classname=_classname(host), name=name, time=f"{seconds:.3f}"
    )


def _host_suite(
    data: ReportData, h: HostResult, timestamp: str
) -> tuple[ET.Element, dict[str, int]]:
    suite = ET.Element("testsuite", name=_clean(h.name), timestamp=timestamp, hostname=h.address)
    counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    if h.status == UNREACHABLE:
        case = _case(suite, h.name, "reachable", h.duration_s)
        ET.SubElement(case, "error", message=_clean(h.error or "unreachable"), type="unreachable")
        counts["tests"] += 1
        counts["errors"] += 1
    elif h.error:
        case = _case(suite, h.name, "probe", h.duration_s)
        ET.SubElement(case, "error", message=_clean(h.error), type="probe")
        counts["tests"] += 1
        counts["errors"] += 1
    for f in h.checks:
        case = _case(suite, h.name, f.id)
        counts["tests"] += 1
        state = data.check_state(h, f)
        mark = data.mark(h, f)
        if state == FAIL:
            kind = "fail"
            message = f"[{f.severity}] {f.summary}"
            if mark is not None:  # its waiver expired
                kind = "waiver-expired"
                message += f" (waiver expired {mark.waiver.expires}, {mark.waiver.source})"
            fail = ET.SubElement(case, "failure", message=_clean(message), type=kind)
            fail.text = _body(f)
            counts["failures"] += 1
        elif state == ERROR:
            err = ET.SubElement(case, "error", message=_clean(f.summary), type="error")
            err.text = _body(f)
            counts["errors"] += 1
        elif state == WAIVED and mark is not None:
            w = mark.waiver
            message = f"waived until {w.expires} by {w.owner}: {w.reason} ({w.source})"
            skipped = ET.SubElement(case, "skipped", message=_clean(message))
            skipped.text = _body(f)
            counts["skipped"] += 1
        elif state == SKIP:
            ET.SubElement(case, "skipped", message=_clean(f.summary))
            counts["skipped"] += 1
        elif state == WARN:
            out = ET.SubElement(case, "system-out")
            out.text = "warn: " + _body(f)
    for key, value in counts.items():
        suite.set(key, str(value))
    suite.set("time", f"{h.duration_s:.3f}")
    return suite, counts


def render_junit(data: ReportData) -> str:
    run = data.run
    seconds = (parse_time(run.finished_at) - parse_time(run.started_at)).total_seconds()
    timestamp = run.started_at.removesuffix("Z")  # JUnit's xs:dateTime without a zone
    root = ET.Element("testsuites", name="fleet report")
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    for h in run.hosts:
        suite, counts = _host_suite(data, h, timestamp)
        root.append(suite)
        for key, value in counts.items():
            totals[key] += value
    for key, value in totals.items():
        root.set(key, str(value))
    root.set("time", f"{seconds:.3f}")
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, "unicode") + "\n"
