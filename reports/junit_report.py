"""JUnit XML: each check of each run, and each gate check, is a test case (CI systems show
failures per case). Built with ElementTree, which escapes text and attributes; characters XML
1.0 cannot hold at all (control characters but tab and newlines, lone surrogates) are written
as visible ``\\xNN`` escapes, so the file always parses."""

import json
import re
import xml.etree.ElementTree as ET

from reports.gate import FAILING, GateResult
from reports.load import TEST_DOUBLE_MARK, StoredRun
from reports.matrix import Matrix


def _suites() -> ET.Element:
    return ET.Element("testsuites", name="brokerbench")


_NOT_XML = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _xml_text(text: str) -> str:
    """``text`` with what XML 1.0 forbids written as an escape (``\\x00``, ``\\ufffe``)."""
    return _NOT_XML.sub(lambda m: repr(m[0])[1:-1], text)


def _make_well_formed(root: ET.Element) -> None:
    for element in root.iter():
        if element.text:
            element.text = _xml_text(element.text)
        if element.tail:
            element.tail = _xml_text(element.tail)
        for name, value in list(element.attrib.items()):
            element.set(name, _xml_text(value))


def _finish(root: ET.Element) -> str:
    _make_well_formed(root)
    for suite in root:
        cases = suite.findall("testcase")
        suite.set("tests", str(len(cases)))
        suite.set("failures", str(sum(case.find("failure") is not None for case in cases)))
        suite.set("errors", str(sum(case.find("error") is not None for case in cases)))
        suite.set("skipped", str(sum(case.find("skipped") is not None for case in cases)))
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, "unicode") + "\n"


def render(runs: list[StoredRun], matrix: Matrix) -> str:
    root = _suites()
    for run in runs:
        label = f"{run.key.label()} / r{run.repeat}"
        if run.test_double:
            label += f" {TEST_DOUBLE_MARK}"
        suite = ET.SubElement(root, "testsuite", name=label)
        properties = ET.SubElement(suite, "properties")
        ET.SubElement(properties, "property", name="test_double", value=str(run.test_double))
        for check in run.checks:
            case = ET.SubElement(
                suite, "testcase", name=check.name,
                classname=f"brokerbench.{run.broker}.{run.workload.name}.{run.scenario.name}",
            )  # fmt: skip
            details = json.dumps({"counts": check.counts, "examples": check.examples},
                                 indent=1, default=str)  # fmt: skip
            if check.valid is False:
                ET.SubElement(case, "failure", message=check.notes).text = details
            elif check.valid is None:
                ET.SubElement(case, "skipped", message=f"unknown: {check.notes}")
            ET.SubElement(case, "system-out").text = f"{run.path}\n{details}"
    for unfinished in matrix.unfinished:  # failed, interrupted, running or missing: an error
        suite = ET.SubElement(root, "testsuite", name=f"{unfinished.label} (did not finish)")
        case = ET.SubElement(suite, "testcase", name="run", classname="brokerbench.run")
        message = f"{unfinished.state}: {unfinished.why}"
        ET.SubElement(case, "error", message=message).text = str(unfinished.path)
    return _finish(root)


def render_gate(result: GateResult) -> str:
    root = _suites()
    suite = ET.SubElement(root, "testsuite", name="brokerbench gate")
    for outcome in result.outcomes:
        case = ET.SubElement(
            suite, "testcase", name=f"{outcome.key.label()}: {outcome.what}",
            classname="brokerbench.gate",
        )  # fmt: skip
        message = f"{outcome.status}: {outcome.why}"
        if outcome.status in FAILING:
            ET.SubElement(case, "failure", message=message)
        elif outcome.status == "undecided":
            ET.SubElement(case, "skipped", message=message)
        else:
            ET.SubElement(case, "system-out").text = message
    return _finish(root)
