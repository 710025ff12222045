from pathlib import Path

import pytest

from harness.errors import UserError
from harness.settings import Ports, Settings, load_settings
from harness.yamlconfig import load_model


def test_default_ports_are_distinct_and_overridable_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BROKERBENCH_PORT_KAFKA", "29092")
    settings = load_settings()
    assert settings.ports.kafka == 29092
    assert settings.ports.elasticmq == Ports().elasticmq


def test_two_services_on_one_port_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BROKERBENCH_PORT_MOTO", str(Ports().elasticmq))
    with pytest.raises(UserError, match=r"ports\.moto and ports\.elasticmq are both 9324"):
        load_settings()


def test_config_file_errors_name_the_line_of_the_field(tmp_path: Path) -> None:
    config = tmp_path / "brokerbench.yaml"
    config.write_text(
        "pubsub_project: demo\ntargets:\n  prod:\n    driver: kafka\n    settings: not-a-mapping\n"
    )
    with pytest.raises(UserError) as raised:
        load_model(config, Settings)
    assert str(raised.value).startswith(f"{config}:5: targets.prod.settings:")


def test_a_config_named_by_the_environment_must_exist(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BROKERBENCH_CONFIG", "/nonexistent/brokerbench.yaml")
    with pytest.raises(UserError, match="no such file"):
        load_settings()
