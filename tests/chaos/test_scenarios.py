"""Scenario files and suites with scenarios: validated before any broker I/O, errors naming the
file and line; the run layout gains a scenario level."""

from pathlib import Path

import pytest

from chaos.faults.network import LatencyParams
from chaos.faults.registry import fault_classes
from chaos.scenario import bundled_names, fault_params, load_scenario
from harness.errors import UserError
from harness.run.suite_runner import plan_suite
from harness.settings import Settings, load_settings

REQUIRED = {"baseline", "latency", "link-down", "broker-pause", "broker-crash", "consumer-kill"}
WORKLOAD = """
workloads:
  - name: w
    params: {rate: 100, duration: 8, consumers: 2}
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_every_bundled_scenario_loads_and_the_required_ones_are_there() -> None:
    assert set(bundled_names()) >= REQUIRED
    for name in bundled_names():
        scenario = load_scenario(name)
        assert scenario.name == name
        for window in scenario.windows():
            assert window.end_s > window.start_s
            fault_params(window.spec)
    assert load_scenario("baseline").faults == []


def test_the_issue_s_fault_actions_are_registered() -> None:
    wanted = {"latency", "bandwidth", "blackhole", "reset-peer", "slow-close", "slicer",
              "limit-data", "link-down", "pause", "crash", "restart", "consumer-kill",
              "producer-crash"}  # fmt: skip
    assert wanted <= set(fault_classes())


def test_params_are_validated_by_the_fault_s_model(tmp_path: Path) -> None:
    path = write(tmp_path, "s.yaml", "name: s\nfaults:\n  - action: latency\n    at: 1\n"
                 "    duration: 1\n    params:\n      latency_ms: -5\n")  # fmt: skip
    with pytest.raises(UserError, match=r"s\.yaml:7: faults\.0\.params\.latency_ms"):
        load_scenario(str(path))
    ok = write(tmp_path, "ok.yaml", "name: ok\nfaults:\n  - {action: latency, at: 1, "
               "duration: 1, params: {latency_ms: 200, stream: both}}\n")  # fmt: skip
    params = fault_params(load_scenario(str(ok)).faults[0])
    assert isinstance(params, LatencyParams)
    assert (params.latency_ms, params.stream) == (200, "both")


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        ("{action: nuke, at: 1, duration: 1}", r":3: faults\.0\.action: .*unknown fault action"),
        ("{action: pause, at: 1, duration: 1, repeat: 3}", r":3: faults\.0: .*needs every"),
        ("{action: pause, at: 1, duration: 2, repeat: 2, every: 1}", r"longer than duration"),
        ("{action: pause, duration: 1}", r":3: faults\.0\.at: Field required"),
    ],
)
def test_bad_schedules_name_file_and_line(tmp_path: Path, fault: str, message: str) -> None:
    path = write(tmp_path, "bad.yaml", f"name: bad\nfaults:\n  - {fault}\n")
    with pytest.raises(UserError, match=message):
        load_scenario(str(path))


def test_an_unknown_scenario_name_lists_the_bundled_ones(tmp_path: Path) -> None:
    suite = write(
        tmp_path, "suite.yaml", "name: s\nbrokers: [kafka]\nscenarios: [nope]\n" + WORKLOAD
    )
    with pytest.raises(UserError) as raised:
        plan_suite(suite, Settings(), tmp_path)
    text = str(raised.value)
    assert "\n" not in text
    assert text.startswith(f"{suite}:3: scenarios: ")
    assert "unknown scenario 'nope'" in text
    assert all(name in text for name in REQUIRED)


@pytest.mark.parametrize(
    ("suite_lines", "message"),
    [
        ("proxy: none\nscenarios: [baseline, latency]\n", r":4: .*network faults.*proxy: all"),
        ("proxy: all\nscenarios: [baseline, own.yaml]\n", r":4: .*after workload 'w'"),
        ("proxy: all\nscenarios: [kill5.yaml]\n", r"target 'consumer-5' does not exist"),
    ],
)
def test_scenarios_are_checked_against_the_suite(
    tmp_path: Path, suite_lines: str, message: str
) -> None:
    write(tmp_path, "own.yaml", "name: own\nfaults:\n  - {action: pause, at: 7, duration: 2}\n")
    write(tmp_path, "kill5.yaml", "name: kill5\nfaults:\n"
          "  - {action: consumer-kill, at: 1, duration: 1, target: consumer-5}\n")  # fmt: skip
    suite = write(tmp_path, "suite.yaml", "name: s\nbrokers: [kafka]\n" + suite_lines + WORKLOAD)
    with pytest.raises(UserError, match=message):
        plan_suite(suite, Settings(), tmp_path)


def test_runs_expand_broker_x_workload_x_scenario_x_repeat(tmp_path: Path) -> None:
    write(tmp_path, "own.yaml", "name: own\nfaults:\n  - {action: crash, at: 1, duration: 2}\n")
    suite = write(
        tmp_path,
        "suite.yaml",
        "name: s\nbrokers: [kafka, elasticmq]\nproxy: all\nrepeats: 2\n"
        "scenarios: [baseline, link-down, own.yaml]\n" + WORKLOAD,
    )
    _, runs = plan_suite(suite, Settings(), tmp_path)
    assert len(runs) == 2 * 3 * 2
    layouts = {run.run_dir.relative_to(run.run_dir.parents[3]).as_posix() for run in runs}
    assert "kafka/w/link-down/r1" in layouts
    assert "elasticmq/w/own/r0" in layouts
    assert {run.scenario.name for run in runs if run.scenario} == {"baseline", "link-down", "own"}


def test_a_suite_without_scenarios_runs_the_baseline(tmp_path: Path) -> None:
    suite = write(tmp_path, "suite.yaml", "name: s\nbrokers: [kafka]\n" + WORKLOAD)
    _, runs = plan_suite(suite, Settings(), tmp_path)
    assert [run.run_dir.parts[-2:] for run in runs] == [("baseline", "r0")]


def test_broker_faults_on_an_external_target_are_refused_before_any_io(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = write(
        tmp_path, "brokerbench.yaml",
        "targets:\n  cloud:\n    driver: sqs\n    settings: {region: eu-west-1}\n",
    )  # fmt: skip
    monkeypatch.setenv("BROKERBENCH_CONFIG", str(config))
    suite = write(
        tmp_path, "suite.yaml", "name: s\nbrokers: [cloud]\nproxy: all\nscenarios: [broker-pause]\n"
        + WORKLOAD,
    )  # fmt: skip
    with pytest.raises(UserError, match=r":4: .*'cloud' is an external target"):
        plan_suite(suite, load_settings(), tmp_path)
