"""Session-wide fixtures: the local stack (started here, or reused when already running) and
the rule that a broker test may not skip in CI.

Under pytest-xdist (``make test`` runs the tests without the ``alone`` marker on several
workers, then the ``alone`` ones by themselves) every worker asks for the stack: the first to
take the lock starts it, the others find it running; the process that ran the session (the
controller) stops it at the end if this session started it."""

import os
import signal
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from filelock import FileLock

from harness import paths
from harness.settings import Settings, load_settings
from harness.setup import artifacts
from harness.stack.manager import Stack
from tests.memory_double import MemoryStack, start_memory_stack

REQUIRE_BROKERS = bool(os.environ.get("CI") or os.environ.get("BROKERBENCH_REQUIRE_BROKERS"))
# Benchmarks measure, they do not test: `make bench` runs them, `make test` leaves them out.
collect_ignore = [] if os.environ.get("BROKERBENCH_BENCHMARKS") else ["benchmarks"]
_skipped_broker_tests: list[str] = []

# A shell without job control starts a background command (`make test &`) with SIGINT ignored,
# and an ignored signal stays ignored across exec: every `brokerbench` these tests start would
# then shrug off the Ctrl-C that the interrupt tests send it. A handled SIGINT is reset to the
# default at exec, so the children get Python's own KeyboardInterrupt again.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
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


STARTED_MARK = "BROKERBENCH_TEST_STACK_STARTED"
"""A file, named by the controller for its workers, that exists once this session started
the stack."""


def installed_stack(settings: Settings) -> Stack:
    """The local stack's installed services (toxiproxy and the real brokers)."""
    missing = missing_services()
    names = ("toxiproxy", "kafka", "elasticmq", "moto", "pubsub")
    return Stack(settings, [name for name in names if name not in missing])


def is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def pytest_configure(config: pytest.Config) -> None:
    # `brokerbench report` appends to the job summary when this is set (GitHub Actions): the
    # tests' reports must not land in CI's summary; the tests that want it set it themselves.
    os.environ.pop("GITHUB_STEP_SUMMARY", None)
    if not is_worker(config):
        # Unique, not just the pid: pids wrap, and a mark left by a killed session must never
        # make a later one stop a stack it did not start.
        mark = Path(tempfile.gettempdir()) / f"brokerbench-tests-{uuid.uuid4().hex}-stack-started"
        os.environ[STARTED_MARK] = str(mark)


@pytest.fixture(scope="session")
def stack(settings: Settings) -> Iterator[Stack]:
    """The local stack with every installed service healthy (stopped at the session's end
    only if this session started it: see ``pytest_sessionfinish``)."""
    missing = missing_services()
    if "toxiproxy" in missing:
        pytest.skip(missing["toxiproxy"])
    stack = installed_stack(settings)
    paths.home().mkdir(parents=True, exist_ok=True)
    with FileLock(paths.home() / "tests-stack.lock"):
        # Started here only if none of it was running: a stack with one service paused or
        # crashed (another session's chaos test) is someone else's, which up() merely repairs.
        if all(status.state == "stopped" for status in stack.status()):
            Path(os.environ[STARTED_MARK]).touch()
        stack.up()
    yield stack


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


@pytest.hookimpl(trylast=True)  # after the session's fixtures were torn down
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if REQUIRE_BROKERS and _skipped_broker_tests:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    started = Path(os.environ.get(STARTED_MARK, "/nonexistent"))
    if not is_worker(session.config) and started.exists():
        installed_stack(load_settings()).down()
        started.unlink()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if REQUIRE_BROKERS and _skipped_broker_tests:
        terminalreporter.write_line(
            f"FAILED: {len(_skipped_broker_tests)} broker or browser test(s) skipped, which CI "
            f"does not allow (first: {_skipped_broker_tests[0]})",
            red=True,
        )
