"""The testcontainers provider runs what compose/ runs: images, commands, environment, ports,
files, network aliases and proxies, all checked without Docker."""

from typing import Any

import pytest

from harness.settings import LOOPBACK, Ports, Settings
from harness.stack.container_specs import (
    ANY_ADDRESS,
    ELASTICMQ_CONFIG_PATH,
    ContainerSpec,
    container_proxy_specs,
    container_specs,
    elasticmq_config,
)
from harness.stack.manager import proxy_specs
from harness.stack.services import all_services, opt_in_services
from tests.unit.test_compose_consistency import (
    COMPOSE_DIR,
    _listeners,
    _published,
    _services,
    _split,
    _toxiproxy_config,
)

SPECS = container_specs(Settings())
# Settings with every port moved, as a user with BROKERBENCH_PORT_* has them.
SHIFTED = Settings(ports=Ports(**{k: v + 7000 for k, v in Ports().model_dump().items()}))


def _compose_service(spec: ContainerSpec) -> dict[str, Any]:
    service = _services()[spec.service]
    assert isinstance(service, dict)
    return service


def _non_comment_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip() and not line.startswith("#")]


def test_one_spec_per_compose_service_in_the_local_start_order() -> None:
    assert [spec.service for spec in SPECS] == [s.name for s in all_services(Settings())]
    assert {spec.service for spec in SPECS} == set(_services())


@pytest.mark.parametrize("spec", SPECS, ids=lambda spec: spec.service)
def test_image_is_the_compose_image(spec: ContainerSpec) -> None:
    assert spec.image == _compose_service(spec)["image"]


@pytest.mark.parametrize("spec", SPECS, ids=lambda spec: spec.service)
def test_published_ports_are_the_compose_ports(spec: ContainerSpec) -> None:
    published = {
        (host_ip, host, inside) for host_ip, host, inside in _published(_compose_service(spec))
    }
    assert published == {(LOOPBACK, port, port) for port in spec.ports.values()}


@pytest.mark.parametrize("spec", SPECS, ids=lambda spec: spec.service)
def test_environment_is_the_compose_environment(spec: ContainerSpec) -> None:
    compose = _compose_service(spec).get("environment", {})
    assert spec.environment == {str(key): str(value) for key, value in compose.items()}


@pytest.mark.parametrize("spec", SPECS, ids=lambda spec: spec.service)
def test_command_is_the_compose_command(spec: ContainerSpec) -> None:
    command = _compose_service(spec).get("command")
    if spec.service == "toxiproxy":
        # compose loads the proxies from a file; the provider creates them through the API.
        at = command.index("-config")
        command = command[:at] + command[at + 2 :]
    assert spec.command == (tuple(command) if command is not None else None)


@pytest.mark.parametrize("spec", SPECS, ids=lambda spec: spec.service)
def test_network_alias_is_the_compose_service_name(spec: ContainerSpec) -> None:
    assert spec.network_aliases == (spec.service,)


def test_elasticmq_config_is_the_mounted_compose_file() -> None:
    (spec,) = [spec for spec in SPECS if spec.service == "elasticmq"]
    assert f"./elasticmq.conf:{ELASTICMQ_CONFIG_PATH}:ro" in _compose_service(spec)["volumes"]
    compose_file = (COMPOSE_DIR / "elasticmq.conf").read_text(encoding="utf-8")
    assert _non_comment_lines(spec.files[ELASTICMQ_CONFIG_PATH]) == _non_comment_lines(compose_file)


def test_proxies_are_the_compose_toxiproxy_json() -> None:
    specs = [
        {"name": p.name, "listen": p.listen, "upstream": p.upstream, "enabled": p.enabled}
        for p in container_proxy_specs(Settings())
    ]
    assert specs == _toxiproxy_config()


def test_every_proxy_upstream_is_a_network_alias() -> None:
    aliases = {alias for spec in SPECS for alias in spec.network_aliases}
    for proxy in container_proxy_specs(SHIFTED):
        host, _ = _split(proxy.upstream)
        assert host in aliases


def test_shifted_settings_move_every_port_inside_and_out() -> None:
    specs = {spec.service: spec for spec in container_specs(SHIFTED)}
    p = SHIFTED.ports
    published = sorted(port for spec in specs.values() for port in spec.ports.values())
    local_only = {field for service in opt_in_services(SHIFTED) for field in service.port_fields}
    ports = [port for field, port in p.model_dump().items() if field not in local_only]
    assert published == sorted(ports), "every port but the memory test double's (local only)"
    kafka = specs["kafka"].environment
    assert _listeners(kafka["KAFKA_LISTENERS"]) == {
        "PLAINTEXT": (ANY_ADDRESS, p.kafka),
        "CONTROLLER": (ANY_ADDRESS, p.kafka_controller),
        "TOXI": (ANY_ADDRESS, p.kafka_proxied_listener),
    }
    advertised = _listeners(kafka["KAFKA_ADVERTISED_LISTENERS"])
    # A client that bootstraps through the proxy is told to keep using the proxy's host port.
    assert advertised["TOXI"] == (LOOPBACK, p.kafka_proxy)
    assert advertised["PLAINTEXT"] == (LOOPBACK, p.kafka)
    assert kafka["KAFKA_CONTROLLER_QUORUM_VOTERS"] == f"1@kafka:{p.kafka_controller}"
    assert specs["moto"].command == ("-p", str(p.moto))
    assert f"--host-port={ANY_ADDRESS}:{p.pubsub}" in (specs["pubsub"].command or ())
    assert specs["toxiproxy"].command == ("-host", ANY_ADDRESS, "-port", str(p.toxiproxy))
    assert f"port = {p.elasticmq}" in elasticmq_config(SHIFTED)
    assert f"bind-port = {p.elasticmq}" in elasticmq_config(SHIFTED)


def test_container_proxies_are_the_local_proxies_with_aliases() -> None:
    local = proxy_specs(SHIFTED)
    containers = container_proxy_specs(SHIFTED)
    assert [p.name for p in containers] == [p.name for p in local]
    for mine, theirs in zip(containers, local, strict=True):
        assert _split(mine.listen) == (ANY_ADDRESS, _split(theirs.listen)[1])
        assert _split(mine.upstream) == (mine.name, _split(theirs.upstream)[1])
    kafka = next(p for p in containers if p.name == "kafka")
    assert _split(kafka.upstream)[1] == SHIFTED.ports.kafka_proxied_listener
