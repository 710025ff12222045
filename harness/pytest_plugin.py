"""brokerbench's pytest plugin (entry point ``pytest11``), for users' own test suites.

``brokerbench_stack`` (session) starts the stack, or reuses one already running in this home,
with the provider chosen by ``--brokerbench-provider`` or ``$BROKERBENCH_PROVIDER`` (default
``auto``: containers when a Docker engine answers, else local processes); it stops the stack at
the end only if it started it. ``brokerbench_driver`` (per test) opens drivers by target name
and closes them after the test::

    def test_round_trip(brokerbench_driver):
        driver = brokerbench_driver("kafka")               # or via_proxy=True
        destination = driver.create_destination(DestinationSpec("orders"))
        ...

``--brokerbench-only kafka,toxiproxy`` starts a subset. Settings come from brokerbench.yaml
and ``BROKERBENCH_*`` as for the command line. The names are prefixed so they never clash with
a suite's own ``stack`` or ``settings`` fixtures.
"""

import os
from collections.abc import Iterator
from typing import Protocol

import pytest

from harness.drivers.base import Driver
from harness.settings import Settings, load_settings
from harness.stack.provider import CHOICES, Choice, StackProvider, open_provider

PROVIDER_VARIABLE = "BROKERBENCH_PROVIDER"


class OpenDriver(Protocol):
    def __call__(self, target: str, *, via_proxy: bool = False) -> Driver: ...


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("brokerbench")
    group.addoption(
        "--brokerbench-provider",
        choices=CHOICES,
        default=None,
        help=f"who runs brokerbench_stack (default ${PROVIDER_VARIABLE} or auto)",
    )
    group.addoption(
        "--brokerbench-only",
        default=None,
        help="comma-separated services for brokerbench_stack (default: all)",
    )


def _choice(config: pytest.Config) -> Choice:
    value = config.getoption("brokerbench_provider") or os.environ.get(PROVIDER_VARIABLE, "auto")
    if value not in CHOICES:
        raise pytest.UsageError(f"{PROVIDER_VARIABLE}={value}: choose from {', '.join(CHOICES)}")
    return value  # type: ignore[return-value]  # checked against CHOICES just above


@pytest.fixture(scope="session")
def brokerbench_settings() -> Settings:
    return load_settings()


@pytest.fixture(scope="session")
def brokerbench_stack(
    request: pytest.FixtureRequest, brokerbench_settings: Settings
) -> Iterator[StackProvider]:
    """The stack, healthy; stopped afterwards only if this session started it."""
    only_option = request.config.getoption("brokerbench_only")
    only = [name.strip() for name in only_option.split(",")] if only_option else None
    provider = open_provider(brokerbench_settings, only, _choice(request.config), reap_on_exit=True)
    already_running = all(status.state == "healthy" for status in provider.status())
    provider.up()
    yield provider
    if not already_running:
        provider.down()


@pytest.fixture
def brokerbench_driver(
    brokerbench_stack: StackProvider, brokerbench_settings: Settings
) -> Iterator[OpenDriver]:
    """A function opening a connected driver for a target name; all closed after the test."""
    from harness.drivers.targets import open_driver

    opened: list[Driver] = []

    def open_target(target: str, *, via_proxy: bool = False) -> Driver:
        driver = open_driver(target, brokerbench_settings, via_proxy=via_proxy)
        opened.append(driver)
        return driver

    yield open_target
    for driver in reversed(opened):
        driver.close()


__all__ = ["OpenDriver", "brokerbench_driver", "brokerbench_settings", "brokerbench_stack"]
