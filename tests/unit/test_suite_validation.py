"""Suite files a user gets wrong are refused before any broker I/O, in one line naming the file
and line: not UTF-8, a key given twice, a rate that is not a finite positive number, two
workloads sharing a name (and so a run folder), an unknown workload kind."""

from pathlib import Path

import pytest

from harness.errors import UserError
from harness.run.suite_runner import plan_suite
from harness.settings import Settings
from tests.stack.cli import brokerbench, environment, one_line_error

HEAD = "name: s\nbrokers: [kafka]\nworkloads:\n"
FIRST = "  - name: w\n    params: {rate: 10, duration: 2}\n"


def refusal(tmp_path: Path, content: str | bytes) -> str:
    """The one-line error of planning the suite ``content``."""
    suite = tmp_path / "suite.yaml"
    if isinstance(content, str):
        content = content.encode()
    suite.write_bytes(content)
    with pytest.raises(UserError) as raised:
        plan_suite(suite, Settings(), tmp_path / "runs")
    message = str(raised.value)
    assert "\n" not in message, message
    assert message.startswith(f"{suite}:"), message
    return message.removeprefix(f"{suite}:")


def test_a_suite_that_is_not_utf8_names_the_file_and_line(tmp_path: Path) -> None:
    message = refusal(tmp_path, HEAD.encode() + b"  - name: caf\xe9\n    params: {rate: 1}\n")
    assert message == "4: not UTF-8 text (byte 0xe9): save the file as UTF-8"


def test_a_key_given_twice_is_refused_at_its_second_line(tmp_path: Path) -> None:
    content = HEAD + "  - name: w\n    params:\n      rate: 10\n      duration: 2\n      rate: 99\n"
    assert refusal(tmp_path, content) == (
        "8: key 'rate' is given twice in one mapping (first at line 6): keep one"
    )


def test_a_top_level_key_given_twice_is_refused(tmp_path: Path) -> None:
    content = HEAD + FIRST + "brokers: [elasticmq]\n"
    assert refusal(tmp_path, content).startswith("6: key 'brokers' is given twice")


def test_the_same_mapping_reached_twice_by_an_alias_is_not_a_duplicate(tmp_path: Path) -> None:
    suite = tmp_path / "suite.yaml"
    suite.write_text(
        "name: s\nbrokers: [kafka]\nworkloads:\n  - name: a\n    params: &p {rate: 10}\n"
        "  - name: b\n    params: *p\n"
    )
    _, runs = plan_suite(suite, Settings(), tmp_path / "runs")
    assert [run.workload for run in runs] == ["a", "b"]


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (".inf", "Input should be a finite number"),
        ("-.inf", "Input should be a finite number"),
        (".nan", "Input should be a finite number"),
        ("-5", "Input should be greater than 0"),
    ],
)
def test_a_rate_must_be_a_finite_positive_number(tmp_path: Path, value: str, problem: str) -> None:
    content = HEAD + f"  - name: w\n    params:\n      rate: {value}\n"
    assert refusal(tmp_path, content) == f"6: workloads.0.params.rate: {problem}"


def test_an_infinite_step_rate_or_duration_is_refused(tmp_path: Path) -> None:
    steps = HEAD + "  - name: w\n    params:\n      steps: [{rate: .inf, seconds: 5}]\n"
    assert refusal(tmp_path, steps) == (
        "6: workloads.0.params.steps.0.rate: Input should be a finite number"
    )
    duration = HEAD + "  - name: w\n    params:\n      rate: 5\n      duration: .inf\n"
    assert refusal(tmp_path, duration) == (
        "7: workloads.0.params.duration: Input should be a finite number"
    )


@pytest.mark.parametrize(
    ("params", "field", "problem"),
    [
        ("{rate: 10, duration: 1e300}", "duration", "Input should be less than or equal to 604800"),
        ("{rate: 1.0e12}", "rate", "Input should be less than or equal to 100000000"),
        ("{rate: 10, warmup: 1.0e9}", "warmup", "Input should be less than or equal to 604800"),
    ],
)
def test_durations_and_rates_too_large_for_the_schedule_are_refused(
    tmp_path: Path, params: str, field: str, problem: str
) -> None:
    content = HEAD + f"  - name: w\n    params: {params}\n"
    assert refusal(tmp_path, content) == f"5: workloads.0.params.{field}: {problem}"


def test_two_workloads_with_one_name_are_refused_naming_both_lines(tmp_path: Path) -> None:
    content = HEAD + FIRST + "  - name: w\n    kind: tracker\n    params: {rate: 5}\n"
    assert refusal(tmp_path, content) == (
        "6: workloads.1.name: 'w' is also the name of the workload at line 4 (it names the run "
        "folders): give each workload its own name"
    )


def test_an_unknown_workload_kind_names_the_file_line_and_choices(tmp_path: Path) -> None:
    content = HEAD + FIRST + "  - name: x\n    kind: trakcer\n    params: {rate: 5}\n"
    message = refusal(tmp_path, content)
    assert message.startswith(
        "7: workloads.1.kind: Value error, unknown workload kind 'trakcer': choose from "
    )
    assert "throughput" in message
    assert "tracker" in message


def test_a_yaml_reader_error_is_one_line_with_the_line(tmp_path: Path) -> None:
    assert refusal(tmp_path, HEAD + FIRST + "  - name: \x07\n").startswith("6: invalid YAML (")


def test_brokerbench_run_refuses_a_bad_suite_in_one_line_exit_2(tmp_path: Path) -> None:
    suite = tmp_path / "suite.yaml"
    for content in (b"name: s\xff\n", (HEAD + FIRST + "  - name: w\n    params: {rate: 1}\n")):
        suite.write_bytes(content if isinstance(content, bytes) else content.encode())
        completed = brokerbench("run", str(suite), "-o", str(tmp_path / "runs"),
                                env=environment(tmp_path / "home"))  # fmt: skip
        assert one_line_error(completed).startswith(f"error: {suite}:")
    assert not (tmp_path / "runs").exists()
