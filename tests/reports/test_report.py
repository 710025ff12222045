"""`brokerbench report` on runs through the real run path on the memory TEST DOUBLE (the reports
are tested, not a broker): every format, untrusted strings escaped, and the HTML opened in real
headless Chromium."""

import csv
import io
import json
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from reports.comparison_charts import PLOTTED_KINDS
from reports.load import TEST_DOUBLE_MARK
from tests.reports import browser
from tests.reports.conftest import Runs, brokerbench, copy_runs, edit_result, result_files

pytestmark = [pytest.mark.test_double, pytest.mark.alone]  # shares the gate's runs

PLANTED = '<script>window.planted = 1</script><img src=x onerror="window.planted = 2">'
SCREENSHOT_COPY = Path("/work/report-screenshot.png")


def plant(runs: Runs, root: Path) -> Path:
    """One folder with the runs; the slow runs get their planted delay as a fault window, and
    one run carries markup in a check's notes and examples and in its environment."""
    suite = root / "suite"
    for name in ("baseline", "slow", "other"):
        copy_runs(getattr(runs, name), suite / name)
    start_ns, end_ns = runs.slow_ns

    def fault(document: dict[str, Any]) -> None:
        document["scenario"] = {
            "name": "latency-100ms",
            "faults": [{"name": "latency 100 ms", "action": "latency", "target": "gated",
                        "start_ns": start_ns, "end_ns": end_ns, "anomalies": {}}],
        }  # fmt: skip

    for result_file in result_files(suite / "slow"):
        edit_result(result_file, fault)

    def markup(document: dict[str, Any]) -> None:
        document["checks"][0]["notes"] = PLANTED
        document["checks"][0]["examples"] = [{"payload": PLANTED}]
        document["environment"]["host"] = PLANTED

    edit_result(result_files(suite / "other")[0], markup)
    return suite


@pytest.fixture(scope="module")
def rendered(runs: Runs, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("report")
    suite = plant(runs, root)
    outputs = {ext: root / f"report.{ext}" for ext in ("html", "md", "xml", "csv")}
    completed = brokerbench(
        "report", str(suite), "--html", str(outputs["html"]), "--md", str(outputs["md"]),
        "--junit", str(outputs["xml"]), "--csv", str(outputs["csv"]), timeout=120,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr
    print(completed.stdout, f"html: {outputs['html'].stat().st_size} bytes")
    return outputs


def matrix_rows(html: str) -> list[str]:
    body = html.split('<table id="matrix">')[1].split("</tbody>", maxsplit=1)[0].split("<tbody>")[1]
    return body.split("<tr>")[1:]


def test_the_html_matrix_has_a_row_per_broker_and_scenario(rendered: dict[str, Path]) -> None:
    html = rendered["html"].read_text()
    rows = matrix_rows(html)
    assert len(rows) == 3
    assert sum('<td class="key">gated<br>' in row for row in rows) == 2
    assert sum('<td class="key">other<br>' in row for row in rows) == 1
    assert all('<span class="double"' in row for row in rows)
    assert sum('<td class="key">latency-100ms</td>' in row for row in rows) == 1
    assert all(row.count('<td class="verdict">') == 1 for row in rows)
    for name in ("lost", "duplicates", "ordering", "lag-recovery"):  # every check, folded
        assert f'<th class="check">{name}</th>' in html.split('<details id="every-check">')[1]
    assert html.count("<script>") == 1 + 1  # plotly.js once, and the report's own script
    # one chart per row, and a percentile plot and bars per workload x scenario (two here)
    assert html.count('type="application/json"') == 3 + 2 * 2


def test_untrusted_strings_are_escaped_everywhere(rendered: dict[str, Path]) -> None:
    html = rendered["html"].read_text()
    assert "window.planted" in html
    assert "<script>window.planted" not in html and "<img src=x" not in html
    assert "&lt;script&gt;window.planted = 1&lt;/script&gt;" in html
    markdown = rendered["md"].read_text()
    assert "<script>" not in markdown and "<img" not in markdown
    junit = ET.parse(rendered["xml"]).getroot()
    outputs = "".join(element.text or "" for element in junit.iter("system-out"))
    assert "<script>window.planted = 1</script>" in outputs  # escaped in XML, parsed back
    rows = list(csv.DictReader(io.StringIO(rendered["csv"].read_text())))
    assert len(rows) == 3 + 3 + 1


def test_markdown_junit_and_csv_hold_every_run_and_check(rendered: dict[str, Path]) -> None:
    markdown = rendered["md"].read_text()
    summary = markdown.split("<details>")[0].split("### Faults")[0]  # then faults, checks
    table = [line for line in summary.splitlines() if line.startswith("| ")]
    assert len(table) == 1 + 3  # header + one row per broker x workload x scenario
    assert "| gated (test double) | keyed-200 | latency-100ms |" in markdown
    junit = ET.parse(rendered["xml"]).getroot()
    suites = junit.findall("testsuite")
    assert len(suites) == 7
    checks = {case.get("name") for case in junit.iter("testcase")}
    assert {"lost", "duplicates", "ordering", "phantom"} <= checks
    rows = list(csv.DictReader(io.StringIO(rendered["csv"].read_text())))
    slow = [row for row in rows if row["scenario"] == "latency-100ms"]
    assert all(float(row["e2e p50 ms"]) > 100 for row in slow)
    assert all(row["check lost"] == "true" for row in rows)


def test_the_series_in_result_json_cover_the_run(runs: Runs) -> None:
    document = json.loads(result_files(runs.baseline)[0].read_text())
    series = document["figures"]["series"]
    # How many seconds the run spans depends on the machine's load: the sums do not.
    assert len(series["t"]) == len(series["sent"]) == len(series["e2e_p99_ms"]) >= 2
    assert sum(series["received"]) == document["counts"]["received"]
    assert sum(series["sent"]) == document["counts"]["ok"]


@pytest.mark.browser
def test_the_html_renders_in_headless_chromium(rendered: dict[str, Path], tmp_path: Path) -> None:
    reason = browser.missing()
    if reason:
        pytest.skip(reason)
    screenshot = tmp_path / "report.png"
    page = browser.render(rendered["html"], [screenshot])
    assert page.title == "brokerbench report"
    assert page.charts == page.plotted == 3 + 2 * 2  # over time per row, comparison charts
    assert page.svgs >= 3
    assert page.console_errors == []
    assert page.widths["scroll"] <= page.widths["client"]
    assert page.planted is None
    assert page.comparison_overflow == 0  # fits the 1400 px window
    compared = [["gated", "other"], ["gated"]]  # keyed-200 / baseline, keyed-200 / latency-100ms
    assert len(page.percentile_traces) == len(compared)
    for traces, brokers in zip(page.percentile_traces, compared, strict=True):
        for kind in PLOTTED_KINDS:  # exactly one trace per broker and latency kind
            drawn = sorted(trace["broker"] for trace in traces if trace["kind"] == kind.key)
            assert drawn == [f"{broker} {TEST_DOUBLE_MARK}" for broker in brokers], kind
    assert screenshot.stat().st_size > 10_000
    if SCREENSHOT_COPY.parent.is_dir():
        shutil.copyfile(screenshot, SCREENSHOT_COPY)
