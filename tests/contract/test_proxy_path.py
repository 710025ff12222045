"""Through toxiproxy, each broker's data path really goes through the proxy: disabling the
proxy (link down) makes sends fail, enabling it again heals them."""

import time
import uuid
from typing import Any

import pytest

from harness.drivers import batching
from harness.drivers.base import DestinationSpec, Outcome, SendResult
from harness.drivers.targets import open_driver
from harness.settings import Settings
from harness.stack.manager import Stack
from harness.stack.services import Toxiproxy
from tests.conftest import missing_services
from tests.contract.contract import Completions

pytestmark = [pytest.mark.broker, pytest.mark.alone]  # disables the shared proxies

# Short timeouts so a send through a dead link reports its failure within seconds.
FAST_FAILURE: dict[str, dict[str, Any]] = {
    "kafka": {"producer_config": {"message.timeout.ms": 4000}},
    "elasticmq": {},
    "moto": {},
    "pubsub": {"publish_timeout": 4.0},
}


def send_one(driver: Any, destination: Any, key: str) -> SendResult:
    producer = driver.producer(destination)
    results: list[SendResult] = []
    producer.send(key, f"{key}:0:".encode(), results.append)
    producer.flush(30)
    producer.close()
    assert len(results) == 1
    return results[0]


def send_batch_of(driver: Any, destination: Any, key: str, count: int) -> Completions:
    """``count`` messages in one ``send_batch``; each index is reported exactly once."""
    producer = driver.producer(destination)
    completions = Completions(count)
    payloads = [f"{key}:{n}:".encode() for n in range(count)]
    batching.send_batch(producer, [key] * count, payloads, 0, completions)
    producer.flush(30)
    producer.close()
    assert completions.reported_twice == []
    assert None not in completions.outcomes, "an index was never reported"
    return completions


@pytest.mark.parametrize("target", ["kafka", "elasticmq", "moto", "pubsub"])
def test_disabling_the_proxy_breaks_the_data_path_and_enabling_heals_it(
    target: str, stack: Stack, settings: Settings
) -> None:
    if target in missing_services():
        pytest.skip(missing_services()[target])
    toxiproxy = Toxiproxy(settings).client()
    driver = open_driver(target, settings, via_proxy=True, overrides=FAST_FAILURE[target])
    destination = driver.create_destination(DestinationSpec(f"bb-proxy-{uuid.uuid4().hex[:8]}"))
    try:
        assert send_one(driver, destination, "before").ok
        toxiproxy.set_enabled(target, False)
        try:
            started = time.monotonic()
            during = send_one(driver, destination, "during")
            assert during.outcome in (Outcome.FAIL, Outcome.UNKNOWN), during
            assert time.monotonic() - started < 30
            during_batch = send_batch_of(driver, destination, "during-batch", 12)
            assert set(during_batch.outcomes) <= {Outcome.FAIL, Outcome.UNKNOWN}
        finally:
            toxiproxy.set_enabled(target, True)
        assert send_one(driver, destination, "after").ok
        assert send_batch_of(driver, destination, "after-batch", 12).outcomes == [Outcome.OK] * 12
    finally:
        driver.delete_destination(destination)
        driver.close()
    assert all(proxy.enabled for proxy in toxiproxy.proxies().values())


def test_kafka_through_the_proxy_is_told_to_stay_on_the_proxy(
    stack: Stack, settings: Settings
) -> None:
    """The TOXI listener advertises toxiproxy's port, so no connection bypasses the proxy."""
    from confluent_kafka.admin import AdminClient

    through_proxy = AdminClient({"bootstrap.servers": f"127.0.0.1:{settings.ports.kafka_proxy}"})
    brokers = through_proxy.list_topics(timeout=10).brokers.values()
    assert [(b.host, b.port) for b in brokers] == [("127.0.0.1", settings.ports.kafka_proxy)]
    direct = AdminClient({"bootstrap.servers": f"127.0.0.1:{settings.ports.kafka}"})
    brokers = direct.list_topics(timeout=10).brokers.values()
    assert [(b.host, b.port) for b in brokers] == [("127.0.0.1", settings.ports.kafka)]
