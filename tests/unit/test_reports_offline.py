"""The gate's statistics, its policy file and the result loader, without brokers."""

import json
from pathlib import Path
from typing import Any

import pytest

from harness.errors import UserError
from reports.gate import CannotCompareError, run_gate
from reports.load import find_runs, read_run
from reports.policy import GatePolicy, load_policy
from reports.stats import change, smallest_p


def test_the_smallest_p_value_depends_only_on_the_sample_sizes() -> None:
    assert smallest_p(3, 3) == pytest.approx(0.05)
    assert smallest_p(2, 2) == pytest.approx(1 / 6)
    assert smallest_p(0, 5) == 1.0


def test_a_consistent_shift_is_significant_and_ties_are_not() -> None:
    slower = change([7.0, 7.1, 6.9], [107.0, 108.0, 109.0], "lower")
    assert slower.p_worse == pytest.approx(0.05)
    assert slower.worse_by == pytest.approx(108 / 7 - 1)
    same = change([200.0, 200.0, 200.0], [200.0, 200.0, 200.0], "higher")
    assert same.p_worse == 1.0
    assert same.worse_by == 0
    fewer = change([200.0, 201.0, 199.0], [150.0, 151.0, 149.0], "higher")
    assert fewer.worse_by == pytest.approx(0.25)
    assert fewer.p_worse == pytest.approx(0.05)


def test_a_policy_error_names_file_line_and_field(tmp_path: Path) -> None:
    policy = tmp_path / "gate.yaml"
    policy.write_text("alpha: 0.05\nmin_repeats: 1\n")
    with pytest.raises(UserError, match=r"gate\.yaml:2: min_repeats"):
        load_policy(policy)
    policy.write_text("alpah: 0.1\n")
    with pytest.raises(UserError, match=r"gate\.yaml:1: alpah: Extra inputs"):
        load_policy(policy)
    assert load_policy(None) == GatePolicy()


def result(tmp_path: Path, name: str, repeat: int, **extra: Any) -> Path:
    run_dir = tmp_path / name / f"r{repeat}"
    run_dir.mkdir(parents=True)
    document = {
        "schema": "brokerbench.result/1", "broker": "kafka", "repeat": repeat,
        "workload": {"name": "w", "kind": "throughput", "params": {}},
        "environment": {"host": "a", "cpus": 2}, "valid": True,
        "figures": {"latency": {"e2e": {"stats": {"p50": 5.0, "p99.9": 9.0}}}},
        "checks": [{"name": "custom-flow-check", "valid": True, "counts": {}, "examples": [],
                    "notes": "", "added_later": 1}],
        "a_key_added_later": {"x": 1},
        **extra,
    }  # fmt: skip
    (run_dir / "result.json").write_text(json.dumps(document))
    return run_dir


def test_the_loader_tolerates_added_keys_and_defaults_the_scenario(tmp_path: Path) -> None:
    run = read_run(result(tmp_path, "one", 0) / "result.json")
    assert run.key == ("kafka", "w", "baseline")
    assert run.scenario.faults == []
    assert run.number("figures.latency.e2e.stats.p99.9") == 9.0
    assert run.number("figures.latency.e2e.stats.p42") is None
    result(tmp_path, "two", 0, schema="brokerbench.result/2")
    with pytest.raises(UserError, match="schema"):
        find_runs([tmp_path / "two"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match=r"no result\.json"):
        find_runs([tmp_path / "empty"])


def test_runs_that_share_no_key_cannot_be_compared(tmp_path: Path) -> None:
    base = [read_run(result(tmp_path, "base", i) / "result.json") for i in range(3)]
    other = [
        read_run(result(tmp_path, "cur", i, scenario={"name": "kill"}) / "result.json")
        for i in range(3)
    ]
    with pytest.raises(CannotCompareError, match=r"no \(broker, workload, scenario\)"):
        run_gate(base, other, GatePolicy())


def test_the_ci_example_files_are_valid() -> None:
    import yaml

    from harness.settings import load_settings
    from harness.suite import load_suite

    docs = Path(__file__).resolve().parents[2] / "docs" / "ci"
    assert load_policy(docs / "gate-policy.yaml").min_repeats == 3
    assert load_suite(docs / "gate-suite.yaml", load_settings()).repeats >= 3
    workflow = yaml.safe_load((docs / "brokerbench-gate.yml").read_text())
    steps = " ".join(step.get("run", "") for step in workflow["jobs"]["gate"]["steps"])
    assert "brokerbench gate" in steps and "GITHUB_STEP_SUMMARY" in steps
