"""compose/ starts the same stack as `brokerbench up`: same host ports, proxies and listeners."""

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.settings import LOOPBACK, Ports, Settings
from harness.stack.manager import BROKERS, proxy_specs
from harness.stack.services import Kafka, Service, all_services, opt_in_services

COMPOSE_DIR = Path(__file__).resolve().parents[2] / "compose"

# Properties whose value legitimately differs in the container (bind addresses, paths, quorum).
CONTAINER_SPECIFIC = {
    "listeners",
    "advertised.listeners",
    "controller.quorum.bootstrap.servers",
    "log.dirs",
}


def _compose() -> dict[str, Any]:
    document = yaml.safe_load((COMPOSE_DIR / "docker-compose.yml").read_text(encoding="utf-8"))
    assert isinstance(document, dict)
    return document


def _services() -> dict[str, Any]:
    services = _compose()["services"]
    assert isinstance(services, dict)
    return services


def _toxiproxy_config() -> list[dict[str, Any]]:
    document = json.loads((COMPOSE_DIR / "toxiproxy.json").read_text(encoding="utf-8"))
    assert isinstance(document, list)
    return document


def _published(service: dict[str, Any]) -> list[tuple[str, int, int]]:
    """(host ip, host port, container port) of each short-syntax `ports` entry."""
    published = []
    for entry in service.get("ports", []):
        assert isinstance(entry, str), f"use the short syntax HOST_IP:HOST:CONTAINER: {entry!r}"
        host_ip, host_port, container_port = entry.split(":")
        published.append((host_ip, int(host_port), int(container_port)))
    return published


def _split(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host, int(port)


def _listeners(value: str) -> dict[str, tuple[str, int]]:
    """``NAME://host:port,...`` as {name: (host, port)}."""
    result = {}
    for item in value.split(","):
        name, _, address = item.strip().partition("://")
        result[name] = _split(address)
    return result


def _kafka_environment() -> dict[str, str]:
    environment = _services()["kafka"]["environment"]
    assert isinstance(environment, dict), "kafka.environment must be a mapping"
    return {str(key): str(value) for key, value in environment.items()}


def _env_name(key: str) -> str:
    """The apache/kafka image's rule: '_' -> '__', '-' -> '___', '.' -> '_', then KAFKA_."""
    escaped = key.replace("_", "__").replace("-", "___").replace(".", "_")
    return "KAFKA_" + escaped.upper()


def test_compose_has_one_container_per_local_service() -> None:
    local = {service.name for service in all_services(Settings())}
    assert set(_services()) == local


@pytest.mark.parametrize("service", all_services(Settings()), ids=lambda s: s.name)
def test_published_ports_are_the_local_stacks_on_loopback(service: Service) -> None:
    published = _published(_services()[service.name])
    assert published, f"{service.name} publishes no ports"
    for host_ip, host_port, container_port in published:
        assert host_ip == LOOPBACK, f"{service.name} publishes {host_port} on {host_ip}"
        assert host_port == container_port, f"{service.name}: {host_port}->{container_port}"
    defaults = Ports().model_dump()
    expected = {defaults[field] for field in service.port_fields}
    assert {host_port for _, host_port, _ in published} == expected


def test_every_ports_setting_is_published_once() -> None:
    """Every port but the opt-in services' (the memory test double runs locally only)."""
    host_ports = [port for svc in _services().values() for _, port, _ in _published(svc)]
    local_only = {field for service in opt_in_services(Settings()) for field in service.port_fields}
    ports = {field: port for field, port in Ports().model_dump().items() if field not in local_only}
    assert sorted(host_ports) == sorted(ports.values())


def test_toxiproxy_config_matches_proxy_specs() -> None:
    config = {proxy["name"]: proxy for proxy in _toxiproxy_config()}
    specs = {spec.name: spec for spec in proxy_specs(Settings())}
    assert list(config) == list(specs)
    services = _services()
    for name, spec in specs.items():
        listen_host, listen_port = _split(config[name]["listen"])
        upstream_host, upstream_port = _split(config[name]["upstream"])
        assert listen_host == "0.0.0.0"
        assert listen_port == _split(spec.listen)[1]
        assert upstream_port == _split(spec.upstream)[1]
        assert upstream_host == name and upstream_host in services
        assert config[name].get("enabled", True) is spec.enabled
    assert _split(config["kafka"]["upstream"])[1] == Ports().kafka_proxied_listener


def test_toxiproxy_loads_the_config_and_waits_for_the_brokers() -> None:
    toxiproxy = _services()["toxiproxy"]
    command = toxiproxy["command"]
    assert command[command.index("-host") + 1] == "0.0.0.0"
    config_path = command[command.index("-config") + 1]
    assert f"./toxiproxy.json:{config_path}:ro" in toxiproxy["volumes"]
    depends_on = toxiproxy["depends_on"]
    assert set(depends_on) == set(BROKERS)
    assert all(rule["condition"] == "service_healthy" for rule in depends_on.values())


def test_kafka_listeners_mirror_the_local_ones() -> None:
    ports = Ports()
    environment = _kafka_environment()
    listeners = _listeners(environment["KAFKA_LISTENERS"])
    advertised = _listeners(environment["KAFKA_ADVERTISED_LISTENERS"])
    assert listeners == {
        "PLAINTEXT": ("0.0.0.0", ports.kafka),
        "CONTROLLER": ("0.0.0.0", ports.kafka_controller),
        "TOXI": ("0.0.0.0", ports.kafka_proxied_listener),
    }
    assert advertised["TOXI"] == (LOOPBACK, ports.kafka_proxy)
    assert advertised["PLAINTEXT"] == (LOOPBACK, ports.kafka)
    assert advertised["CONTROLLER"] == ("kafka", ports.kafka_controller)
    assert environment["KAFKA_CONTROLLER_QUORUM_VOTERS"] == f"1@kafka:{ports.kafka_controller}"
    assert _services()["kafka"]["hostname"] == "kafka"


def test_kafka_properties_mirror_the_local_ones() -> None:
    environment = _kafka_environment()
    properties = dict(
        line.split("=", 1) for line in Kafka(Settings()).properties().splitlines() if line
    )
    for key, value in properties.items():
        if key in CONTAINER_SPECIFIC:
            continue
        assert environment.get(_env_name(key)) == value, key
