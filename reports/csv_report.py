"""CSV for spreadsheets: one row per run, figures and every check's verdict as columns."""

import csv
import io

from reports.load import StoredRun
from reports.matrix import FIGURE_COLUMNS, Matrix, anomalies

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _safe(value: object) -> object:
    """Spreadsheets run a cell starting with = + - @ as a formula: quote untrusted text."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def render(runs: list[StoredRun], matrix: Matrix) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    header = ["broker", "test_double", "workload", "scenario", "repeat", "kind", "semantics"]
    header += ["run_id", "path"]
    header += [column.title for column in FIGURE_COLUMNS]
    header += [f"check {name}" for name in matrix.check_names] + ["anomalies", "valid"]
    header += ["harness_bound", "harness_bound_reasons"]
    writer.writerow(header)
    for run in runs:
        verdicts = {check.name: check.valid for check in run.checks}
        broker, workload, scenario = run.key
        row: list[object] = [broker, str(run.test_double).lower(), workload, scenario,
                             run.repeat, run.workload.kind, run.semantics or "",
                             run.run_id, str(run.path)]  # fmt: skip
        row += ["" if (v := run.number(c.path)) is None else v for c in FIGURE_COLUMNS]
        row += [_verdict(verdicts, name) for name in matrix.check_names]
        row += ["; ".join(anomalies(run)), _verdict({"": run.valid}, "")]
        row += [_verdict({"": run.harness_bound}, ""), "; ".join(run.harness_bound_reasons)]
        writer.writerow([_safe(value) for value in row])
    return buffer.getvalue()


def _verdict(verdicts: dict[str, bool | None], name: str) -> str:
    if name not in verdicts:
        return ""
    return {True: "true", False: "false", None: "unknown"}[verdicts[name]]
