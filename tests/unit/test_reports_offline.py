"""The gate's statistics, its policy file and the result loader, without brokers."""

import json
from pathlib import Path
from typing import Any

import pytest

from harness.errors import UserError
from reports.gate import CannotCompareError, run_gate
from reports.load import find_runs, read_run
from reports.policy import GatePolicy, MetricRule, load_policy
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


# --- harness-bound runs ----------------------------------------------------------------------

BOUND = {
    "harness_bound": {"value": True, "reasons": ["machine CPU >= 90% in 6 of 8 seconds"]},
    "summary": {"seconds": 8, "machine_cpu_percent": {"mean": 97.0, "max": 100.0},
                "roles": {"producer": {"mean_cpu_percent": 40.0, "cpu_seconds": 3.2}}},
    "notes": [],
}  # fmt: skip
NOT_BOUND = {"harness_bound": {"value": False, "reasons": []}}


def test_the_saturation_section_is_read_leniently(tmp_path: Path) -> None:
    older = read_run(result(tmp_path, "older", 0) / "result.json")
    assert older.saturation is None
    assert older.harness_bound is None  # unknown, not bound
    assert older.harness_bound_reasons == []
    bound = read_run(result(tmp_path, "bound", 0, saturation=BOUND) / "result.json")
    assert bound.harness_bound is True
    assert bound.harness_bound_reasons == ["machine CPU >= 90% in 6 of 8 seconds"]
    odds = ([], {"harness_bound": "yes"}, {"harness_bound": {"value": 1}},
            {"harness_bound": {"value": "true"}})  # fmt: skip
    for i, odd in enumerate(odds):
        run = read_run(result(tmp_path, f"odd{i}", 0, saturation=odd) / "result.json")
        assert run.harness_bound is None
    added = {**NOT_BOUND, "a_key_added_later": 1, "harness_bound": {"value": False, "x": 1}}
    assert (
        read_run(result(tmp_path, "added", 0, saturation=added) / "result.json").harness_bound
        is False
    )


def test_reports_mark_harness_bound_runs_and_leave_the_others_alone(tmp_path: Path) -> None:
    from reports import csv_report, html_report, markdown_report
    from reports.matrix import build_matrix

    result(tmp_path / "runs", "bound", 0, saturation=BOUND)
    result(tmp_path / "runs", "bound", 1, saturation=NOT_BOUND)
    result(tmp_path / "runs", "older", 0, broker="elasticmq")
    runs = find_runs([tmp_path / "runs"])
    matrix = build_matrix(runs)
    kafka, elasticmq = sorted(matrix.rows, key=lambda row: row.key.broker != "kafka")
    assert kafka.harness_bound == ["r0: machine CPU >= 90% in 6 of 8 seconds"]
    assert elasticmq.harness_bound == [] and elasticmq.bound_runs == []
    markdown = markdown_report.render(runs, matrix)
    assert "⚠️ harness-bound 1/2 |" in markdown
    assert "- ⚠️ kafka / w / baseline r0: machine CPU &gt;= 90% in 6 of 8 seconds" in markdown
    other = next(line for line in markdown.splitlines() if line.startswith("| elasticmq |"))
    assert "harness-bound" not in other and "⚠️" not in other
    page = html_report.render(runs, matrix)
    assert 'class="bound" title="r0: machine CPU &gt;= 90% in 6 of 8 seconds"' in page
    assert "machine CPU mean 97%, max 100% over 8 measured seconds" in page
    planted = {**BOUND, "harness_bound": {"value": True, "reasons": ['"><script>x=1</script>']}}
    result(tmp_path / "planted", "p", 0, saturation=planted)
    planted_runs = find_runs([tmp_path / "planted"])
    planted_page = html_report.render(planted_runs, build_matrix(planted_runs))
    assert "<script>x=1" not in planted_page and "&#34;&gt;&lt;script&gt;x=1" in planted_page
    planted_md = markdown_report.render(planted_runs, build_matrix(planted_runs))
    assert "<script>" not in planted_md
    table = csv_report.render(runs, matrix).splitlines()
    assert table[0].endswith("valid,harness_bound,harness_bound_reasons")
    assert [line.split(",")[-2] for line in table[1:]] == ["unknown", "true", "false"]


def test_the_run_page_shows_each_roles_memory_where_the_result_has_it(tmp_path: Path) -> None:
    from reports.matrix import saturation_line

    memory = {"roles": {
        "producer": {"processes": 2, "rss_end_bytes": 95_400_000, "growth_percent": 2.14},
        "broker": {"processes": 1, "rss_end_bytes": 900_000_000, "growth_percent": None},
    }}  # fmt: skip
    run = read_run(result(tmp_path, "m", 0, saturation={**BOUND, "memory": memory}) / "result.json")
    assert saturation_line(run).endswith(
        "; memory by role, largest RSS at the end: producer 95 MB (+2.1% after the first "
        "minute), broker 900 MB (growth not judged)"
    )
    older = read_run(result(tmp_path, "o", 0, saturation=BOUND) / "result.json")
    assert "memory" not in saturation_line(older)


def gate_runs(tmp_path: Path, side: str, **extra: Any) -> list[Any]:
    return [read_run(result(tmp_path, side, i, **extra) / "result.json") for i in range(3)]


E2E_ONLY = GatePolicy(
    metrics={"e2e p50": MetricRule(path="figures.latency.e2e.stats.p50", better="lower",
                                   min_effect=0.25, min_abs=5.0)}
)  # fmt: skip


def test_a_harness_bound_run_on_either_side_makes_the_metrics_undecided(tmp_path: Path) -> None:
    baseline = gate_runs(tmp_path, "base", saturation=NOT_BOUND)
    assert (
        run_gate(baseline, gate_runs(tmp_path, "same", saturation=NOT_BOUND), E2E_ONLY).exit_code
        == 0
    )
    assert run_gate(baseline, gate_runs(tmp_path, "older"), E2E_ONLY).exit_code == 0  # unknown
    current = gate_runs(tmp_path, "cur")
    edit = current[1].path / "result.json"
    edit.write_text(json.dumps({**json.loads(edit.read_text()), "saturation": BOUND}))
    current = [read_run(run.path / "result.json") for run in current]
    for base, cur, side in ((baseline, current, "current"), (current, baseline, "baseline")):
        gated = run_gate(base, cur, E2E_ONLY)
        assert gated.exit_code == 2
        metric = next(o for o in gated.outcomes if o.what == "e2e p50")
        assert metric.status == "undecided"
        assert metric.why.startswith(f"harness-bound run(s) {side} r1: not the broker's figures")
        assert gated.warnings == [
            f"kafka / w / baseline: {side} r1 was harness-bound ({current[1].path}): "
            "machine CPU >= 90% in 6 of 8 seconds"
        ]
        assert gated.verdict.startswith("cannot decide: kafka / w / baseline: e2e p50: harness")


def test_a_violation_still_fails_beside_a_harness_bound_run(tmp_path: Path) -> None:
    baseline = gate_runs(tmp_path, "base", saturation=BOUND)
    failed = [{"name": "lost", "valid": False, "counts": {"lost": 1}, "notes": "1 lost"}]
    current = gate_runs(tmp_path, "cur", saturation=BOUND, checks=failed)
    gated = run_gate(baseline, current, E2E_ONLY)
    assert gated.exit_code == 1
    assert {o.status for o in gated.outcomes} == {"violation", "undecided"}


# --- duplicates beside the verdict --------------------------------------------------------------


def duplicates_check(valid: bool, **counts: int) -> dict[str, Any]:
    return {"name": "duplicates", "valid": valid, "counts": counts, "examples": [], "notes": ""}


def test_a_valid_run_with_duplicates_says_how_many_beside_pass(tmp_path: Path) -> None:
    from reports import csv_report, html_report, markdown_report
    from reports.matrix import build_matrix

    counted = duplicates_check(True, extra_deliveries=20, redelivery_after_nack=2, unrequested=18)
    result(tmp_path / "runs", "dup", 0, checks=[counted], semantics="at-least-once")
    older = duplicates_check(True, extra_deliveries=3, redelivery_after_nack=1)  # no unrequested
    result(tmp_path / "runs", "dup", 1, checks=[older], semantics="at-least-once")
    result(tmp_path / "runs", "clean", 0, broker="elasticmq", checks=[duplicates_check(True)])
    runs = find_runs([tmp_path / "runs"])
    matrix = build_matrix(runs)
    kafka, elasticmq = sorted(matrix.rows, key=lambda row: row.key.broker != "kafka")
    assert (kafka.duplicates, elasticmq.duplicates) == (20, 0)  # 18 + (3 - 1) over 2 repeats
    markdown = markdown_report.render(runs, matrix)
    assert "✅ pass · 20 dup |" in markdown
    clean = next(line for line in markdown.splitlines() if line.startswith("| elasticmq |"))
    assert "dup" not in clean
    assert "pass</span> · 20 dup" in html_report.render(runs, matrix)
    assert "duplicates: extra_deliveries=20" in csv_report.render(runs, matrix)
