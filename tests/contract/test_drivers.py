"""The driver contract against each real local broker, directly and through toxiproxy."""

from typing import ClassVar

import pytest

from harness.drivers.base import LagProbe, OrderingScope
from tests.contract.contract import BatchedPathContract, DriverContract, FifoDeduplicationContract

pytestmark = pytest.mark.broker


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


class TestMoto(DriverContract, BatchedPathContract, FifoDeduplicationContract):
    target = "moto"
    expected_ordering = OrderingScope.MESSAGE_GROUP
    expected_lag_probe = LagProbe.QUEUE_ATTRIBUTES


class TestMotoThroughProxy(TestMoto):
    via_proxy: ClassVar[bool] = True


class TestPubSub(DriverContract, BatchedPathContract):
    target = "pubsub"
    expected_ordering = OrderingScope.ORDERING_KEY
    expected_lag_probe = LagProbe.DERIVED


class TestPubSubThroughProxy(TestPubSub):
    via_proxy: ClassVar[bool] = True
