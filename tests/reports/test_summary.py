"""The report's summary on a demo-sized set of results, without running anything: every broker
x the demo's three flows x baseline and link-down (18 rows, 18 check columns, as `make demo`),
made from three REAL results of the demo (tests/reports/data: Kafka's tracker, saga and
eventsourcing under link-down, the saga one with a real duplicates FAIL) copied and relabelled.
Tested: findings first with their examples and fault windows, one verdict cell per row naming
its failing checks, no horizontal scroll at 1400 px, and ``report --github-summary``."""

import copy
import json
import os
from pathlib import Path
from typing import Any

import pytest

from harness.run.result_model import FaultWindow
from reports import html_report, markdown_report
from reports.completeness import Unfinished, unfinished_runs
from reports.fault_table import fault_rows
from reports.findings import NO_FAULT, describe_example, fault_window, findings
from reports.load import RunKey, find_runs
from reports.matrix import build_matrix, row_verdict, verdict_reasons
from tests.reports import browser
from tests.stack import cli

DATA = Path(__file__).with_name("data")
REPOSITORY = Path(__file__).resolve().parents[2]
BROKERS = ("kafka", "elasticmq", "pubsub")
WORKLOADS = ("tracker", "saga", "eventsourcing")
SCENARIOS = ("baseline", "link-down")
FAILING = ("kafka", "saga", "link-down")
"""The one row whose real result failed (duplicates)."""
UNKNOWN = ("elasticmq", "tracker", "link-down")
"""Planted: its lag-recovery check could not decide."""
FAILED_RUN = ("pubsub", "tracker", "baseline")
"""Planted: the run could not execute (``error``, valid null)."""


def _relabelled(document: dict[str, Any], broker: str, scenario: str) -> dict[str, Any]:
    result = copy.deepcopy(document)
    result["broker"] = broker
    key = (broker, result["workload"]["name"], scenario)
    if scenario == "baseline":
        del result["scenario"]
    if key != FAILING:  # only the real failing run keeps its FAIL
        result["valid"] = True
        for check in result["checks"]:
            if check["valid"] is False:
                check["valid"], check["examples"] = True, []
    if key == UNKNOWN:
        result["valid"] = None
        lag = next(check for check in result["checks"] if check["name"] == "lag-recovery")
        lag["valid"], lag["notes"] = None, "no lag sample after the heal"
    if key == FAILED_RUN:
        result["valid"], result["error"] = None, "consumer-0 exited with code 1"
    return result


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A suite folder laid out as `brokerbench run` writes one (broker/workload/scenario/r0)."""
    root = tmp_path_factory.mktemp("demo") / "demo"
    for workload in WORKLOADS:
        document = json.loads((DATA / f"demo-kafka-{workload}-link-down.json").read_text())
        for broker in BROKERS:
            for scenario in SCENARIOS:
                run_dir = root / broker / workload / scenario / "r0"
                run_dir.mkdir(parents=True)
                result = _relabelled(document, broker, scenario)
                (run_dir / "result.json").write_text(json.dumps(result))
    return root


@pytest.fixture(scope="module")
def rendered(demo: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    runs = find_runs([demo])
    matrix = build_matrix(runs, unfinished_runs([demo], runs))
    out = tmp_path_factory.mktemp("rendered")
    html, markdown = html_report.render(runs, matrix), markdown_report.render(runs, matrix)
    (out / "report.html").write_text(html)
    return {"html": html, "md": markdown, "path": str(out / "report.html")}


# --- findings ---------------------------------------------------------------------------------

LINK_DOWN = FaultWindow(name="link-down", start_ns=3_000_000_000 + 10**18,
                        end_ns=6_000_000_000 + 10**18)  # fmt: skip


def test_a_time_falls_before_inside_or_after_a_fault() -> None:
    origin = 10**18
    assert fault_window(origin + 1_000_000_000, [LINK_DOWN], origin) == (
        "before link-down (3.0-6.0 s)"
    )
    assert fault_window(origin + 4_500_000_000, [LINK_DOWN], origin) == (
        "inside link-down (3.0-6.0 s)"
    )
    assert fault_window(origin + 7_000_000_000, [LINK_DOWN], origin) == (
        "after link-down (3.0-6.0 s)"
    )
    kill = FaultWindow(name="kill", start_ns=origin + 10_000_000_000)  # not healed: an instant
    assert fault_window(origin + 8_000_000_000, [kill, LINK_DOWN], origin).startswith("after link")
    assert fault_window(origin + 11_000_000_000, [LINK_DOWN, kill], origin).startswith("after kill")
    assert fault_window(origin, [], origin) == NO_FAULT
    assert fault_window(origin, [FaultWindow(name="never started")], origin) == NO_FAULT


def test_an_example_says_its_message_position_time_and_fault_window(demo: Path) -> None:
    run = next(r for r in find_runs([demo]) if r.key == RunKey(*FAILING))
    duplicates = next(check for check in run.checks if check.name == "duplicates")
    example = describe_example(duplicates.examples[0], run)
    assert example.kind == "duplicate-publish"
    assert example.identity == "producer_id=0 key_id=1 seq=10 deliveries=2 send_outcome=ok"
    assert example.positions == ["partition 1 offset 47", "partition 1 offset 48"]
    assert [round(s, 2) for s in example.seconds] == [7.29, 7.29]
    assert example.window == "after link-down (3.0-6.0 s)"
    inside = {"kind": "lost", "key_id": 3, "message_id": "m-7",
              "complete_ns": run.scenario.faults[0].start_ns + 1}  # fmt: skip
    planted = describe_example(inside, run)
    assert planted.window == "inside link-down (3.0-6.0 s)"
    assert planted.positions == ["message id m-7"] and planted.identity == "key_id=3"
    baseline = next(r for r in find_runs([demo]) if r.key.scenario == "baseline")
    assert describe_example(inside, baseline).window == NO_FAULT


def test_findings_list_the_failed_checks_then_the_unknown_ones(demo: Path) -> None:
    found = findings(find_runs([demo]))
    assert [(f.run.key, f.check.name, f.check.valid) for f in found] == [
        (RunKey(*FAILING), "duplicates", False),
        (RunKey(*UNKNOWN), "lag-recovery", None),
    ]
    failed = found[0]
    assert failed.counts == {"duplicated": 2, "extra_deliveries": 2, "duplicate_publish": 2}
    assert len(failed.examples) == 2 and failed.more_examples == 0


# --- the verdict cell -------------------------------------------------------------------------


def test_each_row_has_one_verdict_naming_its_failing_checks(demo: Path) -> None:
    runs = find_runs([demo])
    matrix = build_matrix(runs, unfinished_runs([demo], runs))
    assert len(matrix.rows) == 18 and len(matrix.check_names) == 18
    verdicts = {row.key: (row_verdict(row), verdict_reasons(row)) for row in matrix.rows}
    assert verdicts.pop(RunKey(*FAILING)) == ("FAIL", "failing: duplicates")
    assert verdicts.pop(RunKey(*UNKNOWN)) == ("unknown", "unknown: lag-recovery")
    assert verdicts.pop(RunKey(*FAILED_RUN)) == ("incomplete", "did not finish: r0 failed")
    assert set(verdicts.values()) == {("pass", "")}


def test_a_key_none_of_whose_repeats_finished_is_an_incomplete_row(demo: Path) -> None:
    runs = find_runs([demo])
    key = RunKey("kafka", "tracker", "broker-crash")
    missing = Unfinished(f"{key.label()} r0", "missing", "never started", demo, key, str(demo))
    row = next(row for row in build_matrix(runs, [missing]).rows if row.key == key)
    assert row.runs == [] and row_verdict(row) == "incomplete"
    assert verdict_reasons(row) == "did not finish: r0 missing"


# --- the HTML and the Markdown --------------------------------------------------------------


def test_the_html_opens_with_findings_then_one_verdict_per_row(rendered: dict[str, str]) -> None:
    html = rendered["html"]
    findings_at, matrix_at = html.index('<div id="findings">'), html.index('<table id="matrix">')
    assert findings_at < matrix_at
    section = html[findings_at:matrix_at]
    assert "<b>duplicates</b> &middot; kafka / saga / link-down r0" in section
    assert "duplicated=2, extra_deliveries=2, duplicate_publish=2" in section
    assert "producer_id=0 key_id=1 seq=10" in section and "partition 1 offset 47" in section
    assert section.count("after link-down (3.0-6.0 s)") == 2
    assert "<b>lag-recovery</b> &middot; elasticmq / tracker / link-down r0" in section
    summary = html[matrix_at : html.index("</table>", matrix_at)]
    assert summary.count("<tr>") == 1 + 18
    assert summary.count('<td class="verdict">') == 18
    assert "<th>lost</th>" not in summary and 'class="check"' not in summary
    assert '<div class="why">failing: duplicates</div>' in summary
    assert '<span class="incomplete">incomplete</span>' in summary
    every = html[html.index('<details id="every-check">') :]
    assert every.index('<table id="check-matrix">') < every.index("</details>")
    assert every.count('<th class="check">') == 18


def test_the_markdown_opens_with_findings_and_folds_every_check(rendered: dict[str, str]) -> None:
    markdown = rendered["md"]
    assert markdown.index("### Findings") < markdown.index("| broker |")
    assert "- ❌ FAIL **duplicates** kafka / saga / link-down r0 (duplicated=2" in markdown
    assert (
        "  - duplicate-publish; producer_id=0 key_id=1 seq=10 deliveries=2 send_outcome=ok; "
        "partition 1 offset 47, partition 1 offset 48; t=7.29, 7.29 s; "
        "after link-down (3.0-6.0 s)"
    ) in markdown
    summary, folded = markdown.split("<details>", 1)
    summary = summary.split("### Faults")[0]
    table = [line for line in summary.splitlines() if line.startswith("| ")]
    assert len(table) == 1 + 18 and table[0].endswith("| lag max | verdict |")
    assert "| ❌ FAIL · 2 dup<br>failing: duplicates |" in summary
    assert "| ⏸️ incomplete · 44 dup<br>did not finish: r0 failed |" in summary
    assert "| lost | unknown-outcome |" in folded.split("</details>")[0]


@pytest.mark.browser
def test_the_demo_sized_report_fits_1400_px(rendered: dict[str, str], tmp_path: Path) -> None:
    reason = browser.missing()
    if reason:
        pytest.skip(reason)
    page = browser.render(Path(rendered["path"]), [], first_screen=tmp_path / "first.png")
    assert page.console_errors == []
    # 18 rows over time + per workload x scenario (6) a percentile plot and bars
    assert page.charts == page.plotted == 18 + 2 * 6
    for traces in page.percentile_traces:  # one per broker and latency kind, at most
        pairs = [(trace["broker"], trace["kind"]) for trace in traces]
        assert len(pairs) == len(set(pairs)), pairs
    assert page.comparison_overflow == 0
    widths = page.widths
    assert 1300 < widths["client"] <= 1400, widths
    assert widths["scroll"] <= widths["client"], widths  # no horizontal scroll
    assert 0 < widths["matrix"] <= widths["client"], widths
    assert 0 < widths["check-matrix"] <= widths["client"], widths  # even every check, opened


# --- report --github-summary ------------------------------------------------------------------


def report(demo: Path, cwd: Path, *args: str, summary: Path | None) -> Any:
    env = {k: v for k, v in os.environ.items() if k != "GITHUB_STEP_SUMMARY"}
    env["PYTHONPATH"] = str(REPOSITORY)  # this checkout's brokerbench, run from ``cwd``
    if summary is not None:
        env["GITHUB_STEP_SUMMARY"] = str(summary)
    return cli.brokerbench("report", str(demo), *args, env=env, cwd=cwd, timeout=120)


def test_github_summary_appends_the_markdown_to_the_step_summary(
    demo: Path, tmp_path: Path
) -> None:
    summary = tmp_path / "step-summary.md"
    summary.write_text("## an earlier step\n")
    completed = report(demo, tmp_path, "--github-summary", summary=summary)
    assert completed.returncode == 0, completed.stderr
    text = summary.read_text()
    assert text.startswith("## an earlier step\n\n## brokerbench report\n")
    assert "### Findings" in text and "failing: duplicates" in text
    assert not (tmp_path / "report.html").exists()  # the option was the output asked for
    # Without the option the variable is enough (CI); report.html is still the default.
    completed = report(demo, tmp_path, summary=summary)
    assert completed.returncode == 0, completed.stderr
    assert summary.read_text().count("## brokerbench report") == 2
    assert (tmp_path / "report.html").exists()
    completed = report(demo, tmp_path, "--no-github-summary", "--md", "r.md", summary=summary)
    assert completed.returncode == 0, completed.stderr
    assert summary.read_text().count("## brokerbench report") == 2


def test_github_summary_without_the_variable_is_one_line_naming_the_fix(
    demo: Path, tmp_path: Path
) -> None:
    completed = report(demo, tmp_path, "--github-summary", summary=None)
    line = cli.one_line_error(completed)
    assert "$GITHUB_STEP_SUMMARY is not set" in line and "--md FILE" in line
    assert list(tmp_path.iterdir()) == []


# --- faults -----------------------------------------------------------------------------------


def test_the_faults_table_has_every_fault_window_with_its_figures(
    demo: Path, rendered: dict[str, str]
) -> None:
    rows = fault_rows(find_runs([demo]))
    assert len(rows) == len(BROKERS) * len(WORKLOADS)  # each link-down run: one window
    saga = next(row for row in rows if row.run == "kafka / saga / link-down r0")
    # The real saga result: link-down 3.0-6.0 s, 4.289 s without acks or deliveries, throughput
    # back 1.0 s and the backlog 4.701 s after the heal, one duplicate among the window's sends.
    assert (saga.fault, saga.window, saga.unavailable_s) == ("link-down", "3.0-6.0 s", "4.3")
    assert (saga.throughput_recovery_s, saga.lag_recovery_s) == ("1.0", "4.7")
    assert saga.anomalies == "duplicates=1"
    assert '<table id="faults">' in rendered["html"]
    assert rendered["html"].index('id="matrix"') < rendered["html"].index('id="faults"')
    assert (
        "| kafka / saga / link-down r0 | link-down | 3.0-6.0 s | 4.3 | 1.0 | 4.7 | duplicates=1 |"
        in (rendered["md"])
    )
