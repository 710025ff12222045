"""Markdown (GitHub-flavoured) for pull-request comments and ``$GITHUB_STEP_SUMMARY``.

GitHub renders HTML inside Markdown, so every untrusted string is HTML-escaped and kept on
one table cell (pipes and newlines escaped)."""

import html

from reports.gate import GateResult
from reports.load import TEST_DOUBLE_MARK, StoredRun
from reports.matrix import FIGURE_COLUMNS, Matrix, bound_word, duplicates_note, fmt

ICON = {True: "✅ pass", False: "❌ FAIL", None: "⚠️ unknown"}
MAX_FAILED_CHECKS = 20
BOUND_ICON = "⚠️"


def cell(untrusted: object) -> str:
    text = html.escape(str(untrusted), quote=False)
    return text.replace("|", "\\|").replace("\r", " ").replace("\n", " ").replace("`", "&#96;")


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def render(runs: list[StoredRun], matrix: Matrix) -> str:
    lines = [
        "## brokerbench report",
        "",
        f"{len(runs)} run(s); overall: **{ICON[matrix.valid]}**",
        "",
    ]
    source = ["source"] if matrix.several_sources else []
    header = [
        *source,
        "broker",
        "workload",
        "scenario",
        "repeats",
        *(c.title for c in FIGURE_COLUMNS),
    ]
    header += [*matrix.check_names, "verdict"]
    rows = [
        [
            *([cell(row.source)] if source else []),
            cell(row.key.broker) + (f" {TEST_DOUBLE_MARK}" if row.test_double else ""),
            *(cell(part) for part in row.key[1:]),
            str(len(row.runs)),
            *(fmt(row.figures[c.title], c.digits) for c in FIGURE_COLUMNS),
            *(ICON[row.checks[name]] if name in row.checks else "-" for name in matrix.check_names),
            ICON[row.valid]
            + duplicates_note(row.duplicates)
            + (f" {BOUND_ICON} {bound_word(row)}" if row.bound_runs else ""),
        ]
        for row in matrix.rows
    ]
    lines += _table([cell(h) for h in header], rows)
    if matrix.unfinished:
        lines += ["", "### Runs that did not finish", ""]
        lines += [
            f"- ⚠️ **{cell(run.state)}** {cell(run.label)}: {cell(run.why)}"
            for run in matrix.unfinished
        ]
    doubles = sorted({run.key.broker for run in runs if run.test_double})
    if doubles:
        lines += ["", "### Test double", ""]
        lines.append(
            f"{', '.join(cell(name) for name in doubles)}: brokerbench's in-memory test double, "
            "not a real broker. Its figures and verdicts test the harness, never a broker."
        )
    bound = [run for run in runs if run.harness_bound]
    if bound:
        lines += ["", "### Harness-bound runs", ""]
        lines.append(
            "The harness (or the machine it shares), not the broker, was the limit: these "
            "runs' figures are not the broker's."
        )
        lines.append("")
        for run in bound:
            reasons = "; ".join(run.harness_bound_reasons) or "no reason recorded"
            lines.append(f"- {BOUND_ICON} {cell(run.key.label())} r{run.repeat}: {cell(reasons)}")
    failed = [(run, check) for run in runs for check in run.checks if check.valid is False]
    if failed:
        lines += ["", "### Failed checks", ""]
        for run, check in failed[:MAX_FAILED_CHECKS]:
            counts = ", ".join(f"{k}={v}" for k, v in check.counts.items())
            lines.append(
                f"- {cell(run.key.label())} r{run.repeat}: **{cell(check.name)}** "
                f"({cell(counts)}): {cell(check.notes)}"
            )
        if len(failed) > MAX_FAILED_CHECKS:
            lines.append(f"- ... and {len(failed) - MAX_FAILED_CHECKS} more")
    return "\n".join(lines) + "\n"


def render_gate(result: GateResult) -> str:
    icon = {0: "✅", 1: "❌", 2: "⚠️"}[result.exit_code]
    lines = ["## brokerbench gate", "", f"{icon} **{cell(result.verdict)}**", ""]
    rows = [
        [cell(o.key.label()), cell(o.what), cell(o.baseline), cell(o.current),
         o.status, cell(o.why)]
        for o in result.outcomes
    ]  # fmt: skip
    lines += _table(["broker / workload / scenario", "what", "baseline", "current", "result",
                     "why"], rows)  # fmt: skip
    if result.warnings:
        lines += ["", "### Warnings", ""] + [f"- {cell(w)}" for w in result.warnings]
    return "\n".join(lines) + "\n"
