"""A run's resources are released in reverse order on every path (``harness/run/session.py``),
and the load processes' progress lines are one typed model (``ProgressLine``), told apart by
their role (``harness/run/children.py``). No broker: a fake driver stands in for one."""

import io
import sys
import textwrap
import time
from contextlib import redirect_stdout
from pathlib import Path

import pytest

from harness.drivers.base import (
    Capabilities,
    DeadLetterSupport,
    Destination,
    DestinationSpec,
    LagProbe,
    OrderingScope,
)
from harness.load.plan import ConsumerPlan
from harness.load.progress_line import ProgressLine, emit, parse
from harness.load.throughput import ThroughputConfig
from harness.run import session as session_module
from harness.run.children import Children, Role
from harness.run.saturation import progress_fields
from harness.run.session import RunRequest, RunSession
from harness.settings import Settings

SLEEPER = """
import json, sys, time
print(json.dumps({"kind": "ready", "consumer": 0, "unknown": 1}), flush=True)
print("not a progress line", flush=True)
print(json.dumps({"kind": "progress", "consumer": 0, "received": 7}), flush=True)
time.sleep(120)
"""


class FakeDriver:
    name = "fake"
    capabilities = Capabilities(
        ordering_when_ordered=OrderingScope.PARTITION,
        ordering_when_unordered=OrderingScope.PARTITION,
        dead_letter=next(iter(DeadLetterSupport)),
        exactly_once=frozenset(),
        lag_probe=LagProbe.DERIVED,
    )

    def __init__(self, log: list[str], fail_on_create: int | None = None) -> None:
        self.log = log
        self.fail_on_create = fail_on_create
        self.created = 0
        self.children: Children | None = None

    def create_destination(self, spec: DestinationSpec) -> Destination:
        self.created += 1
        if self.created == self.fail_on_create:
            raise RuntimeError("the broker said no")
        return Destination(spec, spec.name)

    def delete_destination(self, destination: Destination) -> None:
        assert self.children is not None
        stopped = all(child.exited for child in self.children.children.values())
        self.log.append(f"deleted {destination.address}, children stopped: {stopped}")

    def backlog(self, destination: Destination, group: str) -> int | None:
        return 0

    def close(self) -> None:
        self.log.append("driver closed")


@pytest.fixture
def request_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> RunRequest:
    monkeypatch.setenv("BROKERBENCH_HOME", str(tmp_path / "home"))
    (tmp_path / "modules").mkdir()
    (tmp_path / "modules" / "bb_sleeper.py").write_text(textwrap.dedent(SLEEPER))
    monkeypatch.setenv("PYTHONPATH", str(tmp_path / "modules"))
    config = ThroughputConfig(rate=10, duration=1)
    return RunRequest(
        "suite", "load", "kafka", 0, config, Settings(), "none", tmp_path / "run",
        sample_saturation=False,
    )  # fmt: skip


def test_an_error_mid_run_releases_everything_in_reverse_order(
    request_in: RunRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    log: list[str] = []
    driver = FakeDriver(log)
    monkeypatch.setattr(session_module, "open_driver", lambda *_: driver)
    session = RunSession(request_in)
    with pytest.raises(KeyboardInterrupt), session:
        driver.children = session.children
        child = session.children.start(
            "consumer-0",
            Role.CONSUMER,
            "bb_sleeper",
            ConsumerPlan(run=session.shared, consumer_id=0),
        )
        session.callback(lambda: log.append("caller's first"))
        session.callback(lambda: log.append(f"child running: {not child.exited}"))
        deadline = time.monotonic() + 30
        while child.last.received == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        raise KeyboardInterrupt  # Ctrl-C
    assert child.exited
    assert child.last == ProgressLine(kind="progress", consumer=0, received=7)
    assert session.children.consuming() == [child]
    assert session.children.of(Role.PRODUCER) == []
    topic = session.entry_plan.name
    assert log == [
        "child running: True",
        "caller's first",
        f"deleted {topic}, children stopped: True",
        "driver closed",
    ]
    assert (request_in.run_dir / "scenario.json").exists()
    session.close()  # idempotent
    assert len(log) == 4


def test_a_failure_while_acquiring_releases_what_was_acquired(
    request_in: RunRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    log: list[str] = []
    monkeypatch.setattr(session_module, "open_driver", lambda *_: FakeDriver(log, fail_on_create=1))
    with pytest.raises(RuntimeError, match="the broker said no"), RunSession(request_in):
        pytest.fail("the session should not have opened")
    assert log == ["driver closed"]


def test_a_progress_line_round_trips_and_anything_else_is_skipped() -> None:
    line = ProgressLine(kind="progress", sent=10, failed=1, late_ms_p99=2.5, not_sent=0)
    out = io.StringIO()
    with redirect_stdout(out):
        emit(line)
    assert parse(out.getvalue()) == line
    assert '"received"' not in out.getvalue()  # defaults are not printed
    assert parse("hello\n") is None
    assert parse("[1, 2]\n") is None
    assert parse('{"kind": "sleeping"}') is None


def test_the_sampler_gets_only_the_fields_a_process_reported() -> None:
    producer = ProgressLine(kind="progress", late_ms_p99=1.0, late_ms_max=2.0, not_sent=0)
    assert progress_fields(producer) == {"late_ms_p99": 1.0, "late_ms_max": 2.0, "not_sent": 0}
    consumer = ProgressLine(kind="progress", received=5, poll_gap_ms_max=40.0)
    assert progress_fields(consumer) == {"poll_gap_ms_max": 40.0}


def test_roles_not_labels_tell_children_apart() -> None:
    assert [role.consumes for role in Role] == [False, True, True, True]
    assert {role.saturation_role for role in Role if role.consumes} == {"consumer"}
    assert sys.executable  # children run with this interpreter
