"""Mistakes a new user makes get one line naming the fix, exit code 2, no traceback."""

import socket
from pathlib import Path

import pytest

from tests.stack.cli import SHIFTED_PORTS, brokerbench, environment, isolated_home, one_line_error

pytestmark = pytest.mark.alone  # the same shifted ports as test_lifecycle.py's second stack


@pytest.fixture
def empty_path(tmp_path: Path) -> str:
    """A PATH with no java, mvn or go on it."""
    directory = tmp_path / "bin"
    directory.mkdir()
    return str(directory)


def test_unknown_broker_names_the_choices(tmp_path: Path) -> None:
    line = one_line_error(brokerbench("check", "nats", env=environment(tmp_path)))
    assert "unknown broker 'nats'" in line
    assert "elasticmq, kafka, moto, pubsub" in line


def test_unknown_service_names_the_choices(tmp_path: Path) -> None:
    env = environment(tmp_path)
    for args in (("up", "--only", "kafka,rabbitmq"), ("logs", "rabbitmq")):
        line = one_line_error(brokerbench(*args, env=env))
        assert "unknown service 'rabbitmq'" in line
        assert "kafka" in line


def test_setup_without_maven_says_how_to_get_it(tmp_path: Path, empty_path: str) -> None:
    line = one_line_error(brokerbench("setup", env=environment(tmp_path, path=empty_path)))
    assert "mvn not found on PATH" in line
    assert "install Apache Maven" in line


def test_setup_without_go_says_how_to_get_it(tmp_path: Path, empty_path: str) -> None:
    home = isolated_home(tmp_path / "home", "kafka", "elasticmq")
    line = one_line_error(brokerbench("setup", env=environment(home, path=empty_path)))
    assert "go not found on PATH" in line


def test_setup_with_everything_cached_needs_no_tool_and_downloads_nothing(
    tmp_path: Path, empty_path: str
) -> None:
    home = isolated_home(tmp_path / "home", "kafka", "elasticmq", "toxiproxy", "registry")
    completed = brokerbench("setup", env=environment(home, path=empty_path))
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.count("cached") == 4


def test_up_without_java_says_how_to_get_it(tmp_path: Path, empty_path: str) -> None:
    home = isolated_home(tmp_path / "home", "kafka")
    env = environment(home, path=empty_path)
    line = one_line_error(brokerbench("up", "--only", "kafka", env=env))
    assert "java not found on PATH" in line
    assert "install a JDK" in line


def test_up_before_setup_says_run_setup(tmp_path: Path) -> None:
    line = one_line_error(brokerbench("up", "--only", "kafka", env=environment(tmp_path)))
    assert "kafka 4.4.0 is not installed: run `brokerbench setup`" in line


def test_missing_pubsub_emulator_says_how_to_get_it(tmp_path: Path) -> None:
    env = environment(tmp_path, BROKERBENCH_PUBSUB_EMULATOR_JAR=str(tmp_path / "nope.jar"))
    line = one_line_error(brokerbench("up", "--only", "pubsub", env=env))
    assert "BROKERBENCH_PUBSUB_EMULATOR_JAR" in line
    assert "no such file" in line


def test_port_taken_names_the_port_and_the_setting(tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", SHIFTED_PORTS["moto"]))
        squatter.listen()
        line = one_line_error(brokerbench("up", "--only", "moto", env=environment(tmp_path)))
    assert f"port {SHIFTED_PORTS['moto']} (moto) is already in use" in line
    assert "BROKERBENCH_PORT_MOTO" in line
    assert list(tmp_path.glob("state/*/pid.json")) == []


def test_bad_yaml_names_file_and_line(tmp_path: Path) -> None:
    config = tmp_path / "brokerbench.yaml"
    config.write_text("ports:\n  kafka: 9092\n  moto: [unclosed\n")
    line = one_line_error(brokerbench("status", env=environment(tmp_path), cwd=tmp_path))
    assert "brokerbench.yaml:" in line and "invalid YAML" in line


def test_unknown_setting_names_file_line_and_field(tmp_path: Path) -> None:
    config = tmp_path / "brokerbench.yaml"
    config.write_text("ports:\n  kafka: 9092\n  kafak: 9093\n")
    env = environment(tmp_path)
    line = one_line_error(brokerbench("status", env=env, cwd=tmp_path))
    assert "brokerbench.yaml:3: ports.kafak: Extra inputs are not permitted" in line


def test_bad_port_variable_is_one_line(tmp_path: Path) -> None:
    env = environment(tmp_path, BROKERBENCH_PORT_KAFKA="ninety")
    line = one_line_error(brokerbench("status", env=env))
    assert "BROKERBENCH_PORT_KAFKA=ninety" in line


def test_a_suite_with_an_unknown_broker_names_file_line_and_field(tmp_path: Path) -> None:
    suite = tmp_path / "suite.yaml"
    suite.write_text(
        "name: s\nbrokers:\n  - kafka\n  - nats\nworkloads:\n  - name: w\n    params: {rate: 1}\n"
    )
    line = one_line_error(brokerbench("run", str(suite), env=environment(tmp_path)))
    assert f"{suite}:2: brokers: Value error, unknown broker 'nats'" in line


def test_a_bad_workload_parameter_names_file_line_and_field(tmp_path: Path) -> None:
    suite = tmp_path / "suite.yaml"
    suite.write_text(
        "name: s\nbrokers: [kafka]\nworkloads:\n  - name: w\n    params:\n"
        "      rate: -5\n      duration: 3\n"
    )
    line = one_line_error(brokerbench("run", str(suite), env=environment(tmp_path)))
    assert f"{suite}:6: workloads.0.params.rate: Input should be greater than 0" in line


def test_a_missing_suite_file_is_one_line(tmp_path: Path) -> None:
    line = one_line_error(
        brokerbench("run", str(tmp_path / "nope.yaml"), env=environment(tmp_path))
    )
    assert "nope.yaml: cannot read" in line
