"""The stack in containers on a real Docker engine: every service healthy, every broker
reachable directly and through toxiproxy, the proxy really on the data path, ``status`` and
``down`` from another process.

Marker ``containers``: skipped, with the reason, where no Docker engine answers. It is not one
of the CI-required markers (tests/conftest.py), so a skip here never hides a failure of the
local path, which the rest of the suite covers. The ports are the session's shifted by 300
and the home is private, so these containers never meet the session's local stack.
"""

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.drivers.base import DestinationSpec, Outcome, Received
from harness.drivers.targets import open_driver
from harness.settings import Ports, Settings, load_settings
from harness.stack.provider import engine_problem, recorded_provider
from harness.stack.services import Toxiproxy
from tests.contract.test_proxy_path import FAST_FAILURE, send_one

pytestmark = pytest.mark.containers
SHIFT = 300
BROKERS = ("kafka", "elasticmq", "moto", "pubsub")


@pytest.fixture(scope="module")
def container_settings() -> Settings:
    base = load_settings()
    shifted = Ports(**{name: port + SHIFT for name, port in base.ports.model_dump().items()})
    return base.model_copy(update={"ports": shifted})


@pytest.fixture(scope="module")
def container_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    problem = engine_problem()
    if problem is not None:
        pytest.skip(f"containers provider needs a Docker engine: {problem}")
    home = tmp_path_factory.mktemp("containers-home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("BROKERBENCH_HOME", str(home))
        yield home


@pytest.fixture(scope="module")
def container_stack(container_home: Path, container_settings: Settings) -> Iterator[object]:
    from harness.stack.containers import ContainerProvider

    provider = ContainerProvider(container_settings, reap_on_exit=True)
    try:
        provider.up()
        yield provider
    finally:
        provider.down()


def _cli(home: Path, settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, BROKERBENCH_HOME=str(home))
    env |= {f"BROKERBENCH_PORT_{k.upper()}": str(v) for k, v in settings.ports.model_dump().items()}
    return subprocess.run(
        [sys.executable, "-m", "harness", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def test_every_service_is_healthy_and_the_provider_recorded(container_stack: object) -> None:
    from harness.stack.containers import ContainerProvider

    assert isinstance(container_stack, ContainerProvider)
    statuses = container_stack.status()
    assert {s.name: s.state for s in statuses} == dict.fromkeys(("toxiproxy", *BROKERS), "healthy")
    assert recorded_provider() == "containers"
    assert set(container_stack.proxies()) == set(BROKERS)


@pytest.mark.parametrize("via_proxy", [False, True], ids=["direct", "proxy"])
@pytest.mark.parametrize("target", BROKERS)
def test_round_trip(
    container_stack: object, container_settings: Settings, target: str, via_proxy: bool
) -> None:
    driver = open_driver(target, container_settings, via_proxy=via_proxy)
    destination = driver.create_destination(DestinationSpec(f"bb-ct-{uuid.uuid4().hex[:8]}"))
    try:
        assert send_one(driver, destination, "k").ok
        consumer = driver.consumer(destination, "default")
        received: list[Received] = []
        deadline = time.monotonic() + 60
        while not received and time.monotonic() < deadline:
            received = consumer.poll(1, 1.0)
        consumer.ack(received)
        consumer.close()
        assert [message.key for message in received] == ["k"]
    finally:
        driver.delete_destination(destination)
        driver.close()


def test_kafka_through_the_proxy_is_told_to_stay_on_the_proxy(
    container_stack: object, container_settings: Settings
) -> None:
    from confluent_kafka.admin import AdminClient

    port = container_settings.ports.kafka_proxy
    brokers = AdminClient({"bootstrap.servers": f"127.0.0.1:{port}"}).list_topics(timeout=10)
    assert [(b.host, b.port) for b in brokers.brokers.values()] == [("127.0.0.1", port)]


@pytest.mark.parametrize("target", ["kafka", "elasticmq"])
def test_disabling_the_proxy_breaks_the_data_path(
    container_stack: object, container_settings: Settings, target: str
) -> None:
    toxiproxy = Toxiproxy(container_settings).client()
    driver = open_driver(target, container_settings, via_proxy=True, overrides=FAST_FAILURE[target])
    destination = driver.create_destination(DestinationSpec(f"bb-ct-{uuid.uuid4().hex[:8]}"))
    try:
        assert send_one(driver, destination, "before").ok
        toxiproxy.set_enabled(target, False)
        try:
            during = send_one(driver, destination, "during")
            assert during.outcome in (Outcome.FAIL, Outcome.UNKNOWN), during
        finally:
            toxiproxy.set_enabled(target, True)
        assert send_one(driver, destination, "after").ok
    finally:
        driver.delete_destination(destination)
        driver.close()


def test_cli_status_and_down_find_the_containers(
    container_stack: object, container_home: Path, container_settings: Settings
) -> None:
    status = _cli(container_home, container_settings, "status", "--json")
    assert status.returncode == 0, status.stderr
    document = json.loads(status.stdout)
    assert document["provider"] == "containers"
    assert {s["state"] for s in document["services"]} == {"healthy"}
    down = _cli(container_home, container_settings, "down")
    assert down.returncode == 0, down.stderr
    after = _cli(container_home, container_settings, "status", "--provider", "containers", "--json")
    assert {s["state"] for s in json.loads(after.stdout)["services"]} == {"stopped"}
    assert recorded_provider() is None
    import docker

    client = docker.from_env()
    try:
        label = f"brokerbench.home={container_home}"
        assert client.containers.list(all=True, filters={"label": label}) == []
        assert client.networks.list(filters={"label": label}) == []
    finally:
        client.close()
