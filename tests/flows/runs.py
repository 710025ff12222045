"""Run a suite through the real `brokerbench run` and find the results it wrote."""

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from harness.run.result_model import ANALYSIS_FILE, RESULT_FILE


def run_suite(suite: dict[str, Any], output: Path, timeout: float = 600) -> list[Path]:
    """Write ``suite`` as YAML, run it, and return the run folders (every result.json's)."""
    output.mkdir(parents=True, exist_ok=True)
    path = output / f"{suite['name']}.yaml"
    path.write_text(yaml.safe_dump(suite), encoding="utf-8")
    completed = subprocess.run(
        [sys.executable, "-m", "harness", "run", str(path), "-o", str(output / "runs"),
         "--metrics-port", "0", "--no-broker-warmup"],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )  # fmt: skip
    # 0: every run valid, 1: some run invalid (the callers judge the verdicts); never 3, a run
    # that could not execute.
    assert completed.returncode in (0, 1), completed.stdout[-3000:] + completed.stderr[-3000:]
    return sorted(p.parent for p in (output / "runs").rglob("result.json"))


def result_of(run_dir: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((run_dir / "result.json").read_text())
    return loaded


def by_broker_and_workload(run_dirs: list[Path]) -> dict[tuple[str, str], dict[str, Any]]:
    results = [result_of(run_dir) for run_dir in run_dirs]
    return {(r["broker"], r["workload"]["name"]): r for r in results}


def check(result: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = next(c for c in result["checks"] if c["name"] == name)
    return found


def invalid_checks(result: dict[str, Any]) -> list[str]:
    return sorted(c["name"] for c in result["checks"] if c["valid"] is False)


def analyze_copy(run_dir: Path, copy: Path) -> tuple[dict[str, Any], dict[str, Any], str]:
    """Copy a run folder, re-check it with ``brokerbench analyze`` (no brokers): the result
    before, the re-check (analysis.json; result.json stays as it was), and what analyze
    printed."""
    shutil.copytree(run_dir, copy)
    before = result_of(copy)
    written = (copy / RESULT_FILE).read_bytes()
    completed = subprocess.run(
        [sys.executable, "-m", "harness", "analyze", str(copy)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr
    assert (copy / RESULT_FILE).read_bytes() == written
    analysis: dict[str, Any] = json.loads((copy / ANALYSIS_FILE).read_text())
    return before, analysis, completed.stdout
