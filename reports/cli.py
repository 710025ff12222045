"""``brokerbench report`` and ``brokerbench gate`` (registered in harness/cli.py)."""

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from harness.atomic import write_text_atomically
from harness.errors import UserError
from reports.completeness import unfinished_runs
from reports.load import find_runs
from reports.matrix import (
    FIGURE_COLUMNS,
    HARNESS_BOUND,
    Row,
    bound_word,
    build_matrix,
    duplicates_note,
    fmt,
    row_verdict,
    verdict_reasons,
)

if TYPE_CHECKING:
    from reports.gate import GateResult

console = Console(width=None if sys.stdout.isatty() else 160)
errors = Console(stderr=True, width=None if sys.stderr.isatty() else 160)

OutFile = Annotated[Path | None, typer.Option(dir_okay=False, writable=True)]
STATUS_STYLE = {
    "pass": "green", "improved": "green", "new": "cyan", "noisy": "yellow",
    "undecided": "yellow", "regression": "red", "violation": "red",
}  # fmt: skip
VERDICT_STYLE = {"pass": "green", "FAIL": "red", "unknown": "yellow", "incomplete": "magenta",
                 HARNESS_BOUND: "yellow"}  # fmt: skip
STEP_SUMMARY = "GITHUB_STEP_SUMMARY"
"""The file GitHub Actions shows as the job's summary (each step appends to it)."""


def verdict_text(row: Row) -> str:
    """The console's verdict cell (rich markup): as the HTML and Markdown ones."""
    verdict = row_verdict(row)
    word = bound_word(row) if verdict == HARNESS_BOUND else verdict
    text = f"[{VERDICT_STYLE[verdict]}]{word}[/]" + duplicates_note(row.duplicates)
    if row.bound_runs and verdict != HARNESS_BOUND:
        text += f" [yellow]{bound_word(row)}[/]"
    reasons = verdict_reasons(row)
    return text + (f" ({escape(reasons)})" if reasons else "")


def step_summary_file(github_summary: bool | None) -> Path | None:
    """Where the Markdown summary goes: ``$GITHUB_STEP_SUMMARY`` when it is set (unless
    ``--no-github-summary``); asked for with ``--github-summary`` but not set: a user error."""
    target = os.environ.get(STEP_SUMMARY)
    if github_summary is False or (github_summary is None and not target):
        return None
    if not target:
        raise UserError(
            f"--github-summary: ${STEP_SUMMARY} is not set (GitHub Actions sets it in a job's "
            "steps); elsewhere write the Markdown with --md FILE"
        )
    return Path(target)


def append_text(path: Path, text: str) -> None:
    """Append ``text`` after a blank line (GitHub shows the step summary file as Markdown,
    each step appending to it)."""
    with path.open("a", encoding="utf-8") as handle:
        handle.write(("\n" if handle.tell() else "") + text)


def report(  # noqa: PLR0917 (typer maps parameters to options)
    run_dirs: Annotated[
        list[Path], typer.Argument(help="Run folders or suite output folders (searched).")
    ],
    html: Annotated[Path | None, typer.Option("--html", help="Self-contained HTML file.")] = None,
    md: Annotated[
        Path | None, typer.Option("--md", help="Markdown (PR comment, step summary).")
    ] = None,
    junit: Annotated[
        Path | None, typer.Option("--junit", help="JUnit XML: one case per check.")
    ] = None,
    csv: Annotated[Path | None, typer.Option("--csv", help="CSV: one row per run.")] = None,
    github_summary: Annotated[
        bool | None,
        typer.Option(
            "--github-summary/--no-github-summary",
            help=f"Append the Markdown summary to ${STEP_SUMMARY} [default: when it is set].",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Compare runs: a broker x workload x scenario matrix, charts, checks, environment.
    Without any output option, writes report.html."""
    from reports import csv_report, html_report, junit_report, markdown_report

    summary_file = step_summary_file(github_summary)
    runs = find_runs(run_dirs)
    matrix = build_matrix(runs, unfinished_runs(run_dirs, runs))
    source = ["source"] if matrix.several_sources else []
    table = Table(*source, "broker", "workload", "scenario", "repeats",
                  *(c.title for c in FIGURE_COLUMNS), "verdict", box=None)  # fmt: skip
    for row in matrix.rows:
        figures = [fmt(row.figures[c.title], c.digits) for c in FIGURE_COLUMNS]
        key = [escape(part) for part in ([row.source] if source else []) + list(row.key)]
        table.add_row(*key, str(len(row.runs)), *figures, verdict_text(row))
    console.print(table)
    for row in matrix.rows:
        for reason in row.harness_bound:
            console.print(
                f"harness-bound: {row.key.label()} {reason}",
                markup=False, highlight=False, soft_wrap=True,
            )  # fmt: skip
    for run in matrix.unfinished:
        console.print(
            f"{run.state}: {run.label}: {run.why} ({run.path})",
            style="red" if run.state == "failed" else "yellow",
            markup=False, highlight=False, soft_wrap=True,
        )  # fmt: skip
    if not any((html, md, junit, csv, github_summary)):  # the variable alone asks for none
        html = Path("report.html")
    writers = ((html, html_report.render), (md, markdown_report.render),
               (junit, junit_report.render), (csv, csv_report.render))  # fmt: skip
    for target, render in writers:
        if target is not None:
            write_text_atomically(target, render(runs, matrix))
            console.print(f"wrote {target}")
    if summary_file is not None:
        append_text(summary_file, markdown_report.render(runs, matrix))
        console.print(f"appended the summary to ${STEP_SUMMARY} ({summary_file})")


def gate(  # noqa: PLR0917 (typer maps parameters to options)
    baseline: Annotated[Path, typer.Option("--baseline", help="Baseline run folder(s) root.")],
    current: Annotated[Path, typer.Option("--current", help="Current run folder(s) root.")],
    policy: Annotated[
        Path | None, typer.Option("--policy", help="Gate policy YAML (docs/reports.md).")
    ] = None,
    allow_env_mismatch: Annotated[
        bool, typer.Option("--allow-env-mismatch", help="Compare even if environments differ.")
    ] = False,
    md: Annotated[
        Path | None, typer.Option("--md", help="Also write the verdict as Markdown.")
    ] = None,
    junit: Annotated[Path | None, typer.Option("--junit", help="Also write JUnit XML.")] = None,
) -> None:
    """Fail on correctness violations and significant performance regressions.
    Exit 0 pass, 1 regression or correctness violation (nothing else), 2 cannot compare or
    cannot decide (unreadable inputs, failed or missing runs, a crash: one line)."""
    from reports.gate import GateCrashedError

    try:
        code = _gate(baseline, current, policy, allow_env_mismatch, md, junit)
    except UserError:
        raise
    except Exception as exc:  # a crash must never read as a regression (exit 1)
        raise GateCrashedError.of(exc) from exc
    raise typer.Exit(code)


def _gate(  # noqa: PLR0917 - gate's options
    baseline: Path,
    current: Path,
    policy: Path | None,
    allow_env_mismatch: bool,
    md: Path | None,
    junit: Path | None,
) -> int:
    from reports import junit_report, markdown_report
    from reports.gate import run_gate
    from reports.policy import load_policy

    rules = load_policy(policy)
    current_runs = find_runs([current])
    unfinished = unfinished_runs([current], current_runs)
    result = run_gate(find_runs([baseline]), current_runs, rules, allow_env_mismatch, unfinished)
    console.print(gate_table(result))
    for warning in result.warnings:
        errors.print(f"warning: {warning}", markup=False, highlight=False, soft_wrap=True)
    if md is not None:
        write_text_atomically(md, markdown_report.render_gate(result))
    if junit is not None:
        write_text_atomically(junit, junit_report.render_gate(result))
    line = f"gate: {result.verdict}"
    out = errors if result.exit_code else console
    out.print(line, markup=False, highlight=False, soft_wrap=True)
    return result.exit_code


def gate_table(result: "GateResult") -> Table:
    table = Table("broker / workload / scenario", "what", "baseline", "current", "result",
                  "why", box=None)  # fmt: skip
    table.columns[5].overflow = "fold"
    for o in result.outcomes:
        style = STATUS_STYLE[o.status]
        cells = [escape(text) for text in (o.key.label(), o.what, o.baseline, o.current)]
        table.add_row(*cells, f"[{style}]{o.status}[/]", escape(o.why))
    return table
