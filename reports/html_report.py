"""The self-contained HTML report: jinja2 with autoescaping for every untrusted string, and
plotly.js inlined once so the file works offline."""

import json
from datetime import UTC, datetime
from typing import Any

import jinja2
import plotly.offline
from markupsafe import Markup

from reports.charts import figure_json, row_figure
from reports.comparison_charts import comparisons
from reports.fault_table import HEADER as FAULT_HEADER
from reports.fault_table import fault_rows
from reports.findings import findings, seconds_text
from reports.load import StoredRun
from reports.matrix import (
    FIGURE_COLUMNS,
    Matrix,
    bound_word,
    duplicates_note,
    fmt,
    row_verdict,
    saturation_line,
    verdict_reasons,
    verdict_word,
)

FINDINGS_OPEN = 8
"""Findings shown at the top; the rest one click away (so the matrix stays near the top)."""
MARK = {True: "\u2713", False: "\u2717", None: "?"}
"""A check's verdict in the full check matrix, where a word per cell would not fit."""

_environment = jinja2.Environment(
    loader=jinja2.PackageLoader("reports", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
_environment.filters["fmt"] = fmt
_environment.filters["verdict"] = verdict_word
_environment.filters["bound"] = bound_word
_environment.filters["duplicates"] = duplicates_note
_environment.filters["saturation"] = saturation_line
_environment.filters["row_verdict"] = row_verdict
_environment.filters["verdict_reasons"] = verdict_reasons
_environment.filters["mark"] = MARK.__getitem__
_environment.filters["seconds"] = seconds_text
_environment.filters["pretty"] = lambda value: json.dumps(value, indent=1, default=str)


def fingerprints(runs: list[StoredRun]) -> list[dict[str, Any]]:
    """Distinct environments, each with the runs measured in it."""
    found: dict[str, dict[str, Any]] = {}
    for run in runs:
        environment = run.environment.document()
        key = json.dumps(environment, sort_keys=True, default=str)
        entry = found.setdefault(key, {"environment": environment, "runs": []})
        entry["runs"].append(f"{run.key.label()} / r{run.repeat}")
    return list(found.values())


def render(runs: list[StoredRun], matrix: Matrix) -> str:
    charts = [
        {"id": f"chart-{index}", "row": row, "json": Markup(figure_json(row_figure(row)))}
        for index, row in enumerate(row for row in matrix.rows if row.runs)
    ]
    compared = [
        {"id": f"comparison-{index}", "comparison": found,
         "percentiles": Markup(figure_json(found.percentiles)),
         "bars": Markup(figure_json(found.bars))}
        for index, found in enumerate(comparisons(matrix.rows, matrix.several_sources))
    ]  # fmt: skip
    template = _environment.get_template("report.html.j2")
    return template.render(
        matrix=matrix,
        findings=findings(runs),
        faults=fault_rows(runs),
        fault_header=FAULT_HEADER,
        findings_open=FINDINGS_OPEN,
        columns=FIGURE_COLUMNS,
        charts=charts,
        comparisons=compared,
        runs=runs,
        fingerprints=fingerprints(runs),
        generated=datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        plotly_js=Markup(plotly.offline.get_plotlyjs()),
    )
