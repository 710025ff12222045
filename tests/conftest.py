"""Session-wide fixtures: the local stack (started here, or reused when already running) and
the rule that a broker test may not skip in CI."""

import os
from collections.abc import Iterator

import pytest

from harness.settings import Settings, load_settings
from harness.setup import artifacts
from harness.stack.manager import Stack
from tests.memory_double import MemoryStack, start_memory_stack

REQUIRE_BROKERS = bool(os.environ.get("CI") or os.environ.get("BROKERBENCH_REQUIRE_BROKERS"))
# Benchmarks measure, they do not test: `make bench` runs them, `make test` leaves them out.
collect_ignore = [] if os.environ.get("BROKERBENCH_BENCHMARKS") else ["benchmarks"]
_skipped_broker_tests: list[str] = []
REQUIRED_MARKERS = ("broker", "browser", "postgres")
"""Tests with these markers may skip locally where a runtime is absent, never in CI."""


def missing_services() -> dict[str, str]:
    """Services whose runtime is absent on this machine, with the reason."""
    missing = {}
    for artifact in artifacts.all_artifacts():
        if not artifact.installed:
            reason = (
                f"Pub/Sub emulator not found: {artifacts.PUBSUB_HOW_TO_GET}"
                if artifact.name == "pubsub"
                else f"{artifact.name} not installed: run `brokerbench setup`"
            )
            missing[artifact.name] = reason
    return missing


@pytest.fixture(scope="session")
def settings() -> Settings:
    return load_settings()


@pytest.fixture(scope="session")
def stack(settings: Settings) -> Iterator[Stack]:
    """The local stack with every installed service healthy; stopped afterwards only if this
    session started it."""
    missing = missing_services()
    if "toxiproxy" in missing:
        pytest.skip(missing["toxiproxy"])
    available = [
        name
        for name in ("toxiproxy", "kafka", "elasticmq", "moto", "pubsub")
        if name not in missing
    ]
    stack = Stack(settings, available)
    # Stop it afterwards only if none of it was running: a stack with one service paused or
    # crashed (another session's chaos test) is someone else's, which up() merely repairs.
    started_here = all(status.state == "stopped" for status in stack.status())
    stack.up()
    yield stack
    if started_here:
        stack.down()


@pytest.fixture(scope="session")
def memory_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MemoryStack]:
    """The memory TEST DOUBLE broker (tests/memory_double.py), apart from the session's stack."""
    yield from start_memory_stack(tmp_path_factory)


@pytest.fixture
def require_service(stack: Stack) -> "RequireService":
    return RequireService(stack)


class RequireService:
    def __init__(self, stack: Stack) -> None:
        self.stack = stack

    def __call__(self, name: str) -> None:
        missing = missing_services()
        if name in missing:
            pytest.skip(missing[name])


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped and any(marker in report.keywords for marker in REQUIRED_MARKERS):
        _skipped_broker_tests.append(report.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if REQUIRE_BROKERS and _skipped_broker_tests:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if REQUIRE_BROKERS and _skipped_broker_tests:
        terminalreporter.write_line(
            f"FAILED: {len(_skipped_broker_tests)} broker or browser test(s) skipped, which CI "
            f"does not allow (first: {_skipped_broker_tests[0]})",
            red=True,
        )
