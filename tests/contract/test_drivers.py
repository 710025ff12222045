"""The driver contract against each real local broker, directly and through toxiproxy.

Through toxiproxy, Kafka runs the whole contract (its clients follow the advertised listener,
which must name the proxy: tests/contract/test_proxy_path.py). The HTTP brokers (SQS, Pub/Sub)
run only ``PROXY_SMOKE`` there: toxiproxy forwards their requests byte for byte, so the rest
of the contract would repeat the direct run at about a minute and a half of CI time."""

from typing import ClassVar

import pytest

from harness.drivers.base import LagProbe, OrderingScope
from tests.contract.contract import BatchedPathContract, DriverContract, FifoDeduplicationContract

pytestmark = pytest.mark.broker

PROXY_SMOKE = frozenset(
    {
        "test_every_message_arrives_once_exactly_as_sent",
        "test_batched_path_delivers_every_message_once",
    }
)
"""What an HTTP broker's driver runs through toxiproxy: one message path and the batched one."""


class TestKafka(DriverContract, BatchedPathContract):
    target = "kafka"
    expected_ordering = OrderingScope.PARTITION
    expected_lag_probe = LagProbe.OFFSETS


class TestKafkaThroughProxy(TestKafka):
    via_proxy: ClassVar[bool] = True


class TestElasticMq(DriverContract, BatchedPathContract, FifoDeduplicationContract):
    target = "elasticmq"
    expected_ordering = OrderingScope.MESSAGE_GROUP
    expected_lag_probe = LagProbe.QUEUE_ATTRIBUTES


class TestElasticMqThroughProxy(TestElasticMq):
    via_proxy: ClassVar[bool] = True
    only: ClassVar[frozenset[str]] = PROXY_SMOKE


class TestMoto(DriverContract, BatchedPathContract, FifoDeduplicationContract):
    target = "moto"
    expected_ordering = OrderingScope.MESSAGE_GROUP
    expected_lag_probe = LagProbe.QUEUE_ATTRIBUTES


class TestMotoThroughProxy(TestMoto):
    via_proxy: ClassVar[bool] = True
    only: ClassVar[frozenset[str]] = PROXY_SMOKE


class TestPubSub(DriverContract, BatchedPathContract):
    target = "pubsub"
    expected_ordering = OrderingScope.ORDERING_KEY
    expected_lag_probe = LagProbe.DERIVED


class TestPubSubThroughProxy(TestPubSub):
    via_proxy: ClassVar[bool] = True
    only: ClassVar[frozenset[str]] = PROXY_SMOKE
