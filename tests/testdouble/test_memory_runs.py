"""Through the real run path (``brokerbench run``: producer and consumer processes, history,
checkers, result.json) against the memory TEST DOUBLE broker: each knob yields exactly its
anomaly class, and the well-behaved double passes every check. These test the harness, never a
broker: no real-broker test is replaced by them."""

import csv
import json
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest

from harness.drivers.memory.knobs import Fates, Knobs
from tests.memory_double import MemoryStack, targets_file

pytestmark = pytest.mark.test_double

SUITE = Path(__file__).with_name("memory-suite.yaml")
KNOBS = {
    "memory-lose": Knobs(lose=0.05, seed=1),
    "memory-duplicate": Knobs(duplicate=0.05, seed=2),
    "memory-reorder": Knobs(reorder=0.05, seed=3),
    "memory-delay": Knobs(delay=0.1, delay_ms=300, seed=4),
}
SENT = 200 * 2.5


@pytest.fixture(scope="module")
def results(memory_stack: MemoryStack, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One ``brokerbench run`` of the suite on every target (about 40 s on 2 busy cores)."""
    root = tmp_path_factory.mktemp("memory-runs")
    config = targets_file(root / "brokerbench.yaml", KNOBS)
    completed = memory_stack.brokerbench(
        "run", str(SUITE), "-o", str(root / "runs"), "--metrics-port", "0", config=config
    )
    # Exit 1: some run invalid (memory-lose's lost, memory-reorder's ordering), none failed.
    assert completed.returncode == 1, completed.stdout[-3000:] + completed.stderr[-3000:]
    found = {
        path.parts[-5]: json.loads(path.read_text())
        for path in (root / "runs").glob("testdouble-*/*/*/*/r0/result.json")
    }
    assert sorted(found) == sorted(["memory", *KNOBS])
    found["root"] = root
    return found


def invalid(result: dict[str, Any]) -> set[str]:
    return {check["name"] for check in result["checks"] if check["valid"] is not True}


def counts(result: dict[str, Any], check: str) -> dict[str, Any]:
    (found,) = [c["counts"] for c in result["checks"] if c["name"] == check]
    return dict(found)


def expected(target: str, appended: int) -> dict[str, int]:
    """The fates the knob's seeded generator gave the first ``appended`` messages."""
    fates = Fates(KNOBS[target])
    drawn = [fates.next() for _ in range(appended)]
    return {
        "lost": sum(fate.lost for fate in drawn),
        "duplicated": sum(fate.duplicated for fate in drawn),
        "reordered": sum(fate.reordered for fate in drawn),
        "delayed": sum(fate.delayed for fate in drawn),
    }


def test_every_result_says_it_ran_on_a_test_double(results: dict[str, Any]) -> None:
    for target in ["memory", *KNOBS]:
        environment = results[target]["environment"]
        assert environment["test_double"] is True
        assert "test double" in environment["broker_version"]
        assert results[target]["driver"] == "memory"
        assert results[target]["phases"]["broker_warmup"] is None, "nothing to warm"


def test_the_well_behaved_double_passes_every_check(results: dict[str, Any]) -> None:
    result = results["memory"]
    assert result["valid"] is True, [c for c in result["checks"] if c["valid"] is not True]
    assert result["counts"]["ok"] == result["counts"]["sent"] == SENT
    assert result["counts"]["received"] == SENT
    assert counts(result, "duplicates")["redelivery"] == 0
    assert counts(result, "ordering")["judged"] == SENT
    assert result["phases"]["drained"] is True


def test_lose_yields_lost_messages_and_nothing_else(results: dict[str, Any]) -> None:
    result = results["memory-lose"]
    assert invalid(result) == {"lost"}
    lost = counts(result, "lost")
    assert lost["lost"] == expected("memory-lose", result["counts"]["ok"])["lost"] > 0
    assert lost["lost_write"] > 0
    assert lost["lost"] == lost["lost_write"] + lost["unseen"]
    assert result["counts"]["received"] == result["counts"]["ok"] - lost["lost"]


def test_duplicate_yields_redeliveries_and_nothing_else(results: dict[str, Any]) -> None:
    result = results["memory-duplicate"]
    assert invalid(result) == set(), "redeliveries are at-least-once's contract, not a failure"
    duplicates = counts(result, "duplicates")
    want = expected("memory-duplicate", result["counts"]["ok"])["duplicated"]
    assert duplicates["redelivery"] == want > 0
    assert duplicates["duplicate_publish"] == 0
    assert result["counts"]["received"] == result["counts"]["ok"] + want


def test_reorder_yields_ordering_violations_and_nothing_else(results: dict[str, Any]) -> None:
    result = results["memory-reorder"]
    assert invalid(result) == {"ordering"}
    ordering = counts(result, "ordering")
    swaps = ordering["reorder"] + ordering["skip"]
    # A held message whose key sends nothing more is released alone: not every draw swaps.
    assert 0 < swaps <= expected("memory-reorder", result["counts"]["ok"])["reordered"]
    assert counts(result, "duplicates")["redelivery"] == 0
    assert counts(result, "lost")["lost"] == 0


def test_delay_raises_latency_without_a_violation(results: dict[str, Any]) -> None:
    delayed, healthy = results["memory-delay"], results["memory"]
    assert invalid(delayed) == set()
    # One message in ten held 300 ms, its partition waiting behind it: most wait some of it.
    p50 = delayed["figures"]["latency"]["e2e"]["stats"]["p50"]
    assert p50 >= 0.25 * KNOBS["memory-delay"].delay_ms
    assert p50 > healthy["figures"]["latency"]["e2e"]["stats"]["p50"] + 50


def test_reports_label_the_test_double(results: dict[str, Any], memory_stack: MemoryStack) -> None:
    root: Path = results["root"]
    completed = memory_stack.brokerbench(
        "report", str(root / "runs"), "--md", str(root / "report.md"),
        "--html", str(root / "report.html"), "--csv", str(root / "report.csv"),
        "--junit", str(root / "report.xml"), config=root / "brokerbench.yaml",
    )  # fmt: skip
    assert completed.returncode in (0, 1), completed.stderr[-2000:]  # 1: some runs failed
    markdown = (root / "report.md").read_text()
    assert "| memory (test double) |" in markdown
    assert "### Test double" in markdown
    assert 'class="double"' in (root / "report.html").read_text()
    with (root / "report.csv").open(newline="") as table:
        rows = list(csv.DictReader(table))
    assert len(rows) == 5 and {row["test_double"] for row in rows} == {"true"}
    suites = ElementTree.parse(root / "report.xml").getroot().findall("testsuite")
    assert len(suites) == 5
    for suite in suites:
        assert suite.get("name", "").endswith(" (test double)")
        marked = suite.find("properties/property[@name='test_double']")
        assert marked is not None and marked.get("value") == "True"
        assert suite.get("tests") == str(len(suite.findall("testcase"))) != "0"


def test_status_labels_the_test_double(memory_stack: MemoryStack) -> None:
    completed = memory_stack.brokerbench("status", "--only", "memory", "--json")
    assert completed.returncode == 0, completed.stdout + completed.stderr
    (service,) = json.loads(completed.stdout)["services"]
    assert service["name"] == "memory" and service["state"] == "healthy"
    assert service["test_double"] is True
    assert "test double" in service["detail"]
