"""Property: whatever a suite file (or brokerbench.yaml, or a scenario file) holds, validating
it either succeeds or ends in one line naming the file (``harness.errors.UserError``); never a
traceback. Generated inputs: random YAML structures, a valid suite with one part replaced by a
value of another type, random text, garbage bytes. In-process, no broker I/O."""

from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chaos.scenario import Scenario, load_scenario
from harness.errors import UserError
from harness.run.suite_runner import plan_suite
from harness.settings import Settings, load_settings
from harness.yamlconfig import load_model

VALID_SUITE: dict[str, Any] = {
    "name": "s",
    "brokers": ["kafka", "elasticmq"],
    "proxy": "all",
    "repeats": 2,
    "scenarios": ["baseline", "link-down"],
    "broker_warmup": {"enabled": True, "min_messages": 10, "max_seconds": 5},
    "workloads": [
        {"name": "t", "params": {"rate": 10, "duration": 30, "warmup": 1}},
        {"name": "f", "kind": "tracker", "params": {"steps": [{"rate": 5, "seconds": 30}]}},
    ],
}

VALID_SETTINGS: dict[str, Any] = {
    "ports": {"kafka": 29092},
    "targets": {
        "prod": {"driver": "kafka", "settings": {"bootstrap_servers": "h:9092"}},
        "memory-lossy": {"driver": "memory", "settings": {"lose": 0.01, "seed": 7}},
    },
}
VALID_SCENARIO: dict[str, Any] = {
    "name": "sc",
    "hypothesis": {"throughput_within_percent": 20, "recover_within_seconds": 30},
    "faults": [
        {"action": "latency", "at": 1, "duration": 2, "params": {"latency_ms": 50}},
        {"action": "crash", "at": 4, "duration": 1, "target": "broker"},
    ],
}

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
    | st.sampled_from(["kafka", "throughput", "tracker", "baseline", "all", "../x", "rate"])
)
structures = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(max_size=8) | st.integers(), children, max_size=4)
    ),
    max_leaves=12,
)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path into a nested dict/list document (the root included)."""
    found = [prefix]
    if isinstance(value, dict):
        for key, child in value.items():
            found.extend(_paths(child, (*prefix, key)))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found.extend(_paths(child, (*prefix, index)))
    return found


def _replaced(document: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    head, rest = path[0], path[1:]
    if isinstance(document, dict):
        return {**document, head: _replaced(document[head], rest, value)}
    copy = list(document)
    copy[head] = _replaced(copy[head], rest, value)
    return copy


@st.composite
def one_bad_part(draw: st.DrawFn, valid: dict[str, Any]) -> bytes:
    """The valid document with one part (a field, a list item, a whole section) replaced."""
    path = draw(st.sampled_from(_paths(valid)))
    return yaml.safe_dump(_replaced(valid, path, draw(structures))).encode()


any_text = (  # YAML syntax soup, any Unicode text, any bytes
    st.text(alphabet=st.sampled_from(list(":-[]{}&*!|>'\"%@`#,? \n\tab1.")), max_size=60).map(
        str.encode
    )
    | st.text(max_size=40).map(lambda text: text.encode("utf-8", "surrogatepass"))
    | st.binary(max_size=60)
)


def documents(valid: dict[str, Any]) -> st.SearchStrategy[bytes]:
    return structures.map(yaml.safe_dump).map(str.encode) | one_bad_part(valid) | any_text


EXAMPLES = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def assert_one_line_about(path: Path, error: UserError) -> None:
    message = str(error)
    assert message.startswith(str(path)), message
    assert "\n" not in message and "\r" not in message, message


@EXAMPLES
@given(content=documents(VALID_SUITE))
def test_any_suite_file_is_planned_or_refused_in_one_line(tmp_path: Path, content: bytes) -> None:
    suite = tmp_path / "suite.yaml"
    suite.write_bytes(content)
    try:
        plan_suite(suite, Settings(), tmp_path / "runs")
    except UserError as error:
        assert_one_line_about(suite, error)


@EXAMPLES
@given(content=documents(VALID_SETTINGS))
def test_any_settings_file_is_loaded_or_refused_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: bytes
) -> None:
    config = tmp_path / "brokerbench.yaml"
    config.write_bytes(content)
    monkeypatch.setenv("BROKERBENCH_CONFIG", str(config))
    try:
        load_settings()
    except UserError as error:
        assert_one_line_about(config, error)


@EXAMPLES
@given(content=documents(VALID_SCENARIO))
def test_any_scenario_file_is_loaded_or_refused_in_one_line(tmp_path: Path, content: bytes) -> None:
    scenario = tmp_path / "scenario.yaml"
    scenario.write_bytes(content)
    try:
        load_scenario(str(scenario))
    except UserError as error:
        assert_one_line_about(scenario, error)


def test_the_generators_valid_documents_are_valid(tmp_path: Path) -> None:
    suite = tmp_path / "suite.yaml"
    suite.write_text(yaml.safe_dump(VALID_SUITE))
    _, runs = plan_suite(suite, Settings(), tmp_path / "runs")
    assert len(runs) == 2 * 2 * 2 * 2
    config = tmp_path / "brokerbench.yaml"
    config.write_text(yaml.safe_dump(VALID_SETTINGS))
    assert sorted(load_model(config, Settings).targets) == ["memory-lossy", "prod"]
    scenario = tmp_path / "scenario.yaml"
    scenario.write_text(yaml.safe_dump(VALID_SCENARIO))
    assert len(load_model(scenario, Scenario).faults) == 2
