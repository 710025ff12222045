"""The user's own targets: names safe as folder names, never one of the built-in targets, and a
process or network fault never acts on a target the user defined (it would signal the local
broker while the load goes to a remote cluster)."""

from pathlib import Path

import pytest

from chaos.context import NemesisContext
from chaos.faults.base import NoParams
from chaos.faults.network import LinkDown
from chaos.faults.process import Crash, Pause
from harness.drivers.targets import is_local_broker
from harness.errors import UserError
from harness.run.suite_runner import plan_suite
from harness.settings import ExternalTarget, Settings, load_settings


def settings_file(tmp_path: Path, name: str) -> Path:
    config = tmp_path / "brokerbench.yaml"
    config.write_text(
        "targets:\n  prod:\n    driver: kafka\n    settings: {bootstrap_servers: 'h:9092'}\n"
        f"  {name}:\n    driver: kafka\n    settings: {{bootstrap_servers: 'h:9092'}}\n"
    )
    return config


@pytest.mark.parametrize("name", ["'../../x'", "'a/b'", "'..'", "'.hidden'", "'a b'", "''"])
def test_a_target_name_that_is_not_a_safe_folder_name_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    monkeypatch.setenv("BROKERBENCH_CONFIG", str(settings_file(tmp_path, name)))
    with pytest.raises(UserError) as raised:
        load_settings()
    message = str(raised.value)
    assert message.startswith(f"{tmp_path / 'brokerbench.yaml'}:5: targets."), message
    assert "a target name is 1 to 63 letters, digits" in message
    assert "\n" not in message


@pytest.mark.parametrize("name", ["kafka", "elasticmq", "moto", "pubsub", "memory"])
def test_a_user_target_named_like_a_built_in_one_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    monkeypatch.setenv("BROKERBENCH_CONFIG", str(settings_file(tmp_path, name)))
    with pytest.raises(UserError) as raised:
        load_settings()
    assert str(raised.value) == (
        f"{tmp_path / 'brokerbench.yaml'}:5: targets.{name}: Value error, {name!r} is a built-in "
        "target (the local stack's broker or the test double): give your own target another "
        f"name, e.g. '{name}-remote'"
    )


def test_a_safe_user_target_name_is_accepted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BROKERBENCH_CONFIG", str(settings_file(tmp_path, "kafka-eu_1.prod")))
    assert sorted(load_settings().targets) == ["kafka-eu_1.prod", "prod"]


SHADOWING = Settings.model_construct(
    targets={"kafka": ExternalTarget(driver="kafka", settings={"bootstrap_servers": "h:9092"})}
)
"""Settings built in code without validation, with a user target named like the local Kafka:
the faults must still tell them apart."""


def test_only_the_local_stacks_brokers_are_local() -> None:
    assert is_local_broker("kafka", Settings())
    assert not is_local_broker("kafka", SHADOWING)
    assert not is_local_broker("memory", Settings())
    assert not is_local_broker("prod", Settings())


@pytest.mark.parametrize("fault_class", [Crash, Pause, LinkDown])
def test_process_and_network_faults_refuse_a_user_target_named_like_a_local_broker(
    fault_class: type[Crash] | type[Pause] | type[LinkDown],
) -> None:
    fault = fault_class("f1", "broker", NoParams(), NemesisContext("kafka", SHADOWING))
    with pytest.raises(UserError, match=r"needs a broker of the local stack .* not 'kafka'"):
        fault.check()
    fault_class("f1", "broker", NoParams(), NemesisContext("kafka", Settings())).check()


def test_a_suite_with_broker_faults_on_a_user_target_is_refused_at_plan_time(
    tmp_path: Path,
) -> None:
    suite = tmp_path / "suite.yaml"
    suite.write_text(
        "name: s\nbrokers: [kafka]\nproxy: all\nscenarios: [broker-crash]\n"
        "workloads:\n  - name: w\n    params: {rate: 10, duration: 30}\n"
    )
    with pytest.raises(UserError, match=r"suite.yaml:4: .*'kafka' is an external target"):
        plan_suite(suite, SHADOWING, tmp_path / "runs")
    plan_suite(suite, Settings(), tmp_path / "runs")
