"""`brokerbench gate` on runs through the real run path on the memory TEST DOUBLE (the gate is
tested, not a broker): an identical re-run passes, a planted 100 ms latency regression fails,
too few repeats cannot decide, a lost write always fails, different environments cannot be
compared."""

from pathlib import Path

import pyarrow.parquet as pq  # type: ignore[import-untyped]
import pytest

from tests.reports.conftest import Runs, brokerbench, copy_runs, edit_result, result_files

# alone: an identical re-run must not be harness-bound (a busy machine makes it undecided)
pytestmark = [pytest.mark.test_double, pytest.mark.alone]


def gate(runs_baseline: Path, current: Path, *extra: str) -> tuple[int, str]:
    completed = brokerbench(
        "gate", "--baseline", str(runs_baseline), "--current", str(current), *extra, timeout=120
    )
    print(completed.stdout, completed.stderr)
    return completed.returncode, completed.stdout + completed.stderr


def test_an_identical_rerun_passes(runs: Runs) -> None:
    code, output = gate(runs.baseline, runs.same)
    assert code == 0, output
    assert "gate: pass" in output
    assert "regression" not in output


def test_a_planted_latency_regression_fails(runs: Runs, tmp_path: Path) -> None:
    code, output = gate(runs.baseline, runs.slow, "--md", f"{tmp_path}/gate.md",
                        "--junit", f"{tmp_path}/gate.xml")  # fmt: skip
    assert code == 1, output
    assert "regression" in output.split("e2e p50")[1].splitlines()[0]
    assert "gate: FAIL" in output
    markdown = (tmp_path / "gate.md").read_text()
    assert "❌" in markdown and "| regression |" in markdown
    junit = (tmp_path / "gate.xml").read_text()
    assert "<failure" in junit and "e2e p50" in junit


def test_too_few_repeats_cannot_decide(runs: Runs, tmp_path: Path) -> None:
    two = copy_runs(runs.same, tmp_path / "two", repeats=2)
    code, output = gate(runs.baseline, two)
    assert code == 2, output
    assert "cannot decide" in output
    assert "2 vs 3 repeats" not in output and "3 vs 2 repeats" in output


def test_a_lost_write_fails_whatever_the_figures(runs: Runs, tmp_path: Path) -> None:
    current = copy_runs(runs.same, tmp_path / "lossy")
    run_dir = result_files(current)[0].parent
    receives_file = run_dir / "history" / "receives.parquet"
    receives = pq.read_table(receives_file)
    ordered = receives.sort_by([("partition", "ascending"), ("offset", "ascending")])
    pq.write_table(ordered.slice(1), receives_file)  # the first delivery never happened
    analyzed = brokerbench("analyze", "--write", str(run_dir), timeout=120)
    assert analyzed.returncode == 0, analyzed.stderr
    code, output = gate(runs.baseline, current)
    assert code == 1, output
    assert "violation" in output.split("check lost")[1].splitlines()[0]


def test_different_environments_cannot_be_compared(runs: Runs, tmp_path: Path) -> None:
    current = copy_runs(runs.same, tmp_path / "elsewhere")
    for result_file in result_files(current):
        edit_result(result_file, lambda d: d["environment"].update(host="another-host"))
    code, output = gate(runs.baseline, current)
    assert code == 2, output
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "environments differ" in errors[0] and "host" in errors[0]
    assert "--allow-env-mismatch" in errors[0]
    code, output = gate(runs.baseline, current, "--allow-env-mismatch")
    assert code == 0, output
    assert "warning:" in output and "another-host" in output


def test_a_bad_policy_names_its_file_and_line(runs: Runs, tmp_path: Path) -> None:
    policy = tmp_path / "gate.yaml"
    policy.write_text("alpha: 0.05\nmetrics:\n  e2e p50:\n    path: figures.latency.e2e.stats.p50\n"
                      "    better: smaller\n    min_effect: 0.2\n")  # fmt: skip
    code, output = gate(runs.baseline, runs.same, "--policy", str(policy))
    assert code == 2
    last = output.strip().splitlines()[-1]
    assert last.startswith(f"error: {policy}:5: metrics.'e2e p50'.better"), last
