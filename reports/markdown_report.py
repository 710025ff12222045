"""Markdown (GitHub-flavoured) for pull-request comments and ``$GITHUB_STEP_SUMMARY``: the
findings first, then one row per broker x workload x scenario with one verdict cell naming the
failing checks, and the per-check matrix folded in a ``<details>`` block.

GitHub renders HTML inside Markdown, so every untrusted string is HTML-escaped and kept on
one table cell (pipes and newlines escaped)."""

import html
from dataclasses import astuple

from reports.fault_table import HEADER as FAULT_HEADER
from reports.fault_table import fault_rows
from reports.findings import findings, seconds_text
from reports.gate import GateResult
from reports.load import TEST_DOUBLE_MARK, StoredRun
from reports.matrix import (
    FIGURE_COLUMNS,
    HARNESS_BOUND,
    INCOMPLETE,
    Matrix,
    Row,
    bound_word,
    duplicates_note,
    fmt,
    row_verdict,
    verdict_reasons,
)

ICON = {True: "✅ pass", False: "❌ FAIL", None: "⚠️ unknown"}
VERDICT_ICON = {"pass": ICON[True], "FAIL": ICON[False], "unknown": ICON[None],
                INCOMPLETE: "⏸️ incomplete"}  # fmt: skip
MARK = {True: "✅", False: "❌", None: "⚠️"}
MAX_FINDINGS = 20
BOUND_ICON = "⚠️"


def cell(untrusted: object) -> str:
    text = html.escape(str(untrusted), quote=False)
    return text.replace("|", "\\|").replace("\r", " ").replace("\n", " ").replace("`", "&#96;")


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def _verdict_cell(row: Row) -> str:
    """The verdict, the duplicates, a harness-bound mark and the checks that made it so."""
    verdict = row_verdict(row)
    if verdict == HARNESS_BOUND:
        text = f"{BOUND_ICON} {bound_word(row)}" + duplicates_note(row.duplicates)
    else:
        text = VERDICT_ICON[verdict] + duplicates_note(row.duplicates)
        if row.bound_runs:
            text += f" {BOUND_ICON} {bound_word(row)}"
    reasons = verdict_reasons(row)
    return cell(text) + (f"<br>{cell(reasons)}" if reasons else "")


def _summary(matrix: Matrix) -> list[str]:
    """One row per broker x workload x scenario: the figures and one verdict cell."""
    source = ["source"] if matrix.several_sources else []
    header = [*source, "broker", "workload", "scenario", "repeats",
              *(c.title for c in FIGURE_COLUMNS), "verdict"]  # fmt: skip
    rows = [
        [
            *([cell(row.source)] if source else []),
            cell(row.key.broker) + (f" {TEST_DOUBLE_MARK}" if row.test_double else ""),
            *(cell(part) for part in row.key[1:]),
            str(len(row.runs)),
            *(fmt(row.figures[c.title], c.digits) for c in FIGURE_COLUMNS),
            _verdict_cell(row),
        ]
        for row in matrix.rows
    ]
    return _table([cell(h) for h in header], rows)


def _faults(runs: list[StoredRun]) -> list[str]:
    """Every fault window's figures (``fault_table``), one row each."""
    rows = fault_rows(runs)
    if not rows:
        return []
    cells = [[cell(value) for value in astuple(row)] for row in rows]
    return ["", "### Faults", "", *_table(list(FAULT_HEADER), cells)]


def _every_check(matrix: Matrix) -> list[str]:
    """The per-check matrix, folded (GitHub renders ``<details>`` and the table inside)."""
    if not matrix.check_names:
        return []
    source = ["source"] if matrix.several_sources else []
    header = [*source, "broker", "workload", "scenario", *matrix.check_names]
    rows = [
        [
            *([cell(row.source)] if source else []),
            *(cell(part) for part in row.key),
            *(MARK[row.checks[name]] if name in row.checks else "-" for name in matrix.check_names),
        ]
        for row in matrix.rows
    ]
    summary = f"Every check, per row ({len(matrix.check_names)} checks)"
    return ["", f"<details><summary>{summary}</summary>", "",
            *_table([cell(h) for h in header], rows), "", "</details>"]  # fmt: skip


def _findings(runs: list[StoredRun], several_sources: bool) -> list[str]:
    found = findings(runs)
    if not found:
        return []
    lines = ["### Findings", ""]
    for finding in found[:MAX_FINDINGS]:
        counts = ", ".join(f"{k}={v}" for k, v in finding.counts.items())
        where = f"{finding.run.source}: " if several_sources else ""
        lines.append(
            f"- {ICON[finding.check.valid]} **{cell(finding.check.name)}** "
            f"{cell(where + finding.label)} ({cell(counts)}): {cell(finding.check.notes)}"
        )
        for example in finding.examples:
            parts = [example.kind, example.identity, ", ".join(example.positions),
                     seconds_text(example.seconds), example.window]  # fmt: skip
            lines.append("  - " + cell("; ".join(part for part in parts if part)))
        if finding.more_examples:
            lines.append(f"  - and {finding.more_examples} more example(s) in its result.json")
    if len(found) > MAX_FINDINGS:
        lines.append(f"- ... and {len(found) - MAX_FINDINGS} more (the HTML report has them all)")
    return [*lines, ""]


def render(runs: list[StoredRun], matrix: Matrix) -> str:
    """The report in Markdown: findings first, the summary matrix, every check folded."""
    lines = [
        "## brokerbench report",
        "",
        f"{len(runs)} run(s); overall: **{ICON[matrix.valid]}**",
        "",
    ]
    lines += _findings(runs, matrix.several_sources)
    lines += _summary(matrix)
    lines += _faults(runs)
    lines += _every_check(matrix)
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
