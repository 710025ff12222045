"""The driver contract against the memory TEST DOUBLE broker, well-behaved (no knobs): the same
suite every real broker passes, for what the memory driver declares. It shows the double is a
faithful broker before its knobs make it misbehave; it replaces no real-broker test."""

from collections.abc import Iterator

import pytest

from harness.drivers.base import Driver, LagProbe, OrderingScope
from harness.drivers.targets import open_driver
from tests.contract.contract import BatchedPathContract, DriverContract
from tests.memory_double import MemoryStack

pytestmark = pytest.mark.test_double


class TestMemoryTestDouble(DriverContract, BatchedPathContract):
    target = "memory"
    expected_ordering = OrderingScope.PARTITION
    expected_lag_probe = LagProbe.OFFSETS

    @pytest.fixture(scope="class")
    @classmethod
    def driver(cls, memory_stack: MemoryStack) -> Iterator[Driver]:
        driver = open_driver(cls.target, memory_stack.settings)
        yield driver
        driver.close()
