"""Contract classes may run a subset of the contract (``only``: test names), e.g. the HTTP
brokers through toxiproxy (tests/contract/test_drivers.py). The rest is deselected, not skipped,
so CI's rule against skipped broker tests still holds for what runs."""

from collections.abc import Iterator

import pytest

from harness.drivers.kafka import KafkaDriver
from harness.drivers.targets import open_driver
from harness.settings import Settings
from harness.stack.manager import Stack


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    kept, deselected = [], []
    ran: dict[type, set[str]] = {}
    for item in items:
        cls = getattr(item, "cls", None)
        only = getattr(cls, "only", None)
        name = getattr(item, "originalname", item.name)
        (deselected if only is not None and name not in only else kept).append(item)
        if only is not None and cls is not None and name in only:
            ran.setdefault(cls, set()).add(name)
    for cls, names in ran.items():
        if missing := set(cls.only) - names:  # a renamed test would silently not run
            raise pytest.UsageError(f"{cls.__name__}.only names no test: {sorted(missing)}")
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = kept


@pytest.fixture
def kafka(stack: Stack, settings: Settings) -> Iterator[KafkaDriver]:
    """The Kafka driver on the local Kafka, directly (no proxy)."""
    driver = open_driver("kafka", settings)
    assert isinstance(driver, KafkaDriver)
    yield driver
    driver.close()
