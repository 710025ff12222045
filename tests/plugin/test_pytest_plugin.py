"""The pytest plugin as a user's suite sees it: loaded through the ``pytest11`` entry point,
``brokerbench_stack`` reusing the running stack and ``brokerbench_driver`` giving connected
drivers, next to this repository's own ``stack`` and ``settings`` fixtures."""

import os
from pathlib import Path

import pytest

from harness import paths
from harness.drivers.base import DestinationSpec, Driver, Received
from harness.pytest_plugin import OpenDriver
from harness.stack.manager import Stack
from harness.stack.provider import StackProvider

pytest_plugins = ["pytester"]
ROOT = Path(__file__).resolve().parents[2]
# Read at import: once the `pytester` fixture is up, HOME points at a temporary directory.
BROKERBENCH_HOME = paths.home()

USER_SUITE = """
import time, uuid
from harness.drivers.base import DestinationSpec

def test_round_trip(brokerbench_stack, brokerbench_driver):
    assert brokerbench_stack.name == "local"
    for via_proxy in (False, True):
        driver = brokerbench_driver("elasticmq", via_proxy=via_proxy)
        name = f"bb-plugin-{uuid.uuid4().hex[:8]}"
        destination = driver.create_destination(DestinationSpec(name))
        results = []
        producer = driver.producer(destination)
        producer.send("k", b"hello", results.append)
        producer.flush(30)
        producer.close()
        assert [r.ok for r in results] == [True]
        consumer = driver.consumer(destination, "default")
        received, deadline = [], time.monotonic() + 30
        while not received and time.monotonic() < deadline:
            received = consumer.poll(1, 1.0)
        consumer.ack(received)
        consumer.close()
        driver.delete_destination(destination)
        assert [m.payload for m in received] == [b"hello"]
"""


def _round_trip(driver: Driver) -> list[Received]:
    destination = driver.create_destination(DestinationSpec("bb-plugin-inline"))
    try:
        producer = driver.producer(destination)
        producer.send("k", b"inline", lambda _: None)
        producer.flush(30)
        producer.close()
        consumer = driver.consumer(destination, "default")
        received: list[Received] = []
        for _ in range(30):
            received = consumer.poll(1, 1.0)
            if received:
                break
        consumer.ack(received)
        consumer.close()
        return received
    finally:
        driver.delete_destination(destination)


@pytest.mark.broker
def test_plugin_fixtures_beside_the_repos_own(
    stack: Stack, brokerbench_stack: StackProvider, brokerbench_driver: OpenDriver
) -> None:
    """No name clash: this repo's `stack` runs, the plugin's provider reuses it."""
    assert brokerbench_stack.name == "local"
    assert all(s.state == "healthy" for s in brokerbench_stack.status())
    received = _round_trip(brokerbench_driver("elasticmq"))
    assert [m.payload for m in received] == [b"inline"]


@pytest.mark.broker
def test_a_user_suite_gets_connected_drivers(
    stack: Stack, pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTHONPATH", f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    # The user's suite must find this session's downloads and running stack.
    monkeypatch.setenv("BROKERBENCH_HOME", str(BROKERBENCH_HOME))
    pytester.makepyfile(test_user_suite=USER_SUITE)
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--brokerbench-provider", "auto"
    )
    result.assert_outcomes(passed=1)
    # The session reused the running stack, so it left it running.
    assert all(s.state == "healthy" for s in stack.status())
