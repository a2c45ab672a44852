"""JUnit XML: the shape Jenkins' junit plugin and GitLab's test report read."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import date

from fleet.render.junit import render_junit
from tests.reportkit import host, report_data, waiver


def parse(text: str) -> ET.Element:
    assert text.startswith('<?xml version="1.0" encoding="UTF-8"?>\n')
    return ET.fromstring(text.encode())


def test_one_suite_per_host_and_one_testcase_per_check_with_consistent_counts() -> None:
    data = report_data(
        [
            host("a.example.com", failing=("netdata.ebpf",), errors=("kprobes.registered",)),
            host("b", warns=("cpu.system",)),
            host("c", unreachable="connect to 192.0.2.1:22: Connection refused"),
        ]
    )
    root = parse(render_junit(data))
    assert root.tag == "testsuites"
    suites = root.findall("testsuite")
    assert [s.get("name") for s in suites] == ["a.example.com", "b", "c"]
    names = [(c.get("classname"), c.get("name")) for c in root.iter("testcase")]
    assert ("fleet.a_example_com", "netdata.ebpf") in names  # no dots: Jenkins splits on them
    assert ("fleet.c", "reachable") in names
    assert len(names) == 4 + 4 + 1
    for el in [root, *suites]:
        cases = list(el.iter("testcase"))
        assert int(el.get("tests", -1)) == len(cases)
        assert int(el.get("failures", -1)) == sum(c.find("failure") is not None for c in cases)
        assert int(el.get("errors", -1)) == sum(c.find("error") is not None for c in cases)
        assert int(el.get("skipped", -1)) == sum(c.find("skipped") is not None for c in cases)
        float(el.get("time", "x"))
    assert (root.get("tests"), root.get("failures"), root.get("errors")) == ("9", "1", "2")


def test_a_failure_carries_the_evidence_and_the_fix() -> None:
    root = parse(render_junit(report_data([host("a", failing=("netdata.ebpf",))])))
    failure = next(c for c in root.iter("testcase") if c.get("name") == "netdata.ebpf").find(
        "failure"
    )
    assert failure is not None
    assert failure.get("message") == "[high] netdata.ebpf is fail"
    assert '"seen": [' in (failure.text or "")
    assert "echo 0 > /sys/kernel/debug/kprobes/enabled" in (failure.text or "")


def test_waived_failure_is_skipped_with_the_waiver_and_an_expired_one_fails() -> None:
    data = report_data(
        [host("a", failing=("netdata.ebpf", "cpu.system"))],
        waivers=[
            waiver("a", "netdata.ebpf"),
            waiver("a", "cpu.system", expires=date(2026, 1, 1), line=9),
        ],
    )
    cases = {c.get("name"): c for c in parse(render_junit(data)).iter("testcase")}
    skipped = cases["netdata.ebpf"].find("skipped")
    assert skipped is not None
    assert skipped.get("message") == (
        "waived until 2099-01-01 by ops@example.com: vendor fix pending (w.yml:2)"
    )
    failure = cases["cpu.system"].find("failure")
    assert failure is not None and failure.get("type") == "waiver-expired"
    assert "waiver expired 2026-01-01, w.yml:9" in (failure.get("message") or "")


def test_characters_xml_cannot_carry_are_replaced_not_fatal() -> None:
    h = host("a", failing=("netdata.ebpf",))
    h.checks[2].evidence["raw"] = "bell\x07 and nul\x00"
    text = render_junit(report_data([h]))
    assert "\x07" not in text and "\x00" not in text
    parse(text)
