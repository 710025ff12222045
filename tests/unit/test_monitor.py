"""The monitor folds the children's progress lines by role, not by label: producers' sends,
plain consumers' deliveries, services' handled events (``harness/run/monitor.py``)."""

import subprocess
from pathlib import Path
from typing import Any

import pytest

from harness.collectors.lag import LagSampler
from harness.collectors.live import LiveMetrics
from harness.errors import UserError
from harness.load.progress_line import ProgressLine
from harness.run.children import Child, Children, Role
from harness.run.load_slots import LoadSlots
from harness.run.monitor import LiveFeed, Monitor, Progress


class Process:
    """Stands in for a ``subprocess.Popen``: running until ``returncode`` is set."""

    def __init__(self, returncode: int | None = None) -> None:
        self.returncode = returncode

    def poll(self) -> int | None:
        return self.returncode


def add(children: Children, label: str, role: Role, line: ProgressLine, **process: Any) -> None:
    fake: Any = Process(**process)
    popen: subprocess.Popen[str] = fake
    log = children.run_dir / f"{label}.log"
    log.write_text("boom\n")
    children.children[label] = Child(label, role, popen, log, line)


def monitor_of(children: Children, entry_topic: str | None = None) -> Monitor:
    lag = LagSampler(lambda: None)
    live = LiveFeed(LiveMetrics("0", "kafka", "w"), 100, lag)
    slots = LoadSlots(children, [], None)
    return Monitor(children, Progress(), lambda _: None, live, entry_topic=entry_topic, slots=slots)


def test_lines_are_folded_by_role(tmp_path: Path) -> None:
    children = Children(tmp_path)
    add(children, "producer-0", Role.PRODUCER, ProgressLine(kind="progress", sent=10, failed=1))
    add(children, "producer-1", Role.PRODUCER, ProgressLine(kind="done", sent=5), returncode=0)
    add(children, "consumer-0", Role.CONSUMER, ProgressLine(kind="progress", received=12))
    monitor = monitor_of(children)
    monitor.slots.final_received["consumer-0"] = 14  # killed: its shard counts
    monitor.slots.killed.add("consumer-0")
    monitor.refresh()
    assert (monitor.state.sent, monitor.state.failed, monitor.state.received) == (15, 1, 14)
    assert monitor.quiescent()  # 14 received >= 14 sent ok


def test_a_flow_counts_its_services_handled_events(tmp_path: Path) -> None:
    children = Children(tmp_path)
    add(children, "producer-0", Role.PRODUCER, ProgressLine(kind="progress", sent=10))
    service = ProgressLine(kind="progress", handled={"clicks": 10}, idle_seconds=5.0)
    add(children, "consumer-0", Role.SERVICE, service)
    dead_letters = ProgressLine(kind="progress", handled={"clicks": 0}, idle_seconds=5.0)
    add(children, "consumer-1", Role.DEAD_LETTER_READER, dead_letters)
    monitor = monitor_of(children, entry_topic="clicks")
    monitor.refresh()
    assert (monitor.state.received, monitor.state.entry_received) == (10, 10)
    assert monitor.quiescent()


def test_a_consuming_process_that_died_fails_the_run_unless_killed(tmp_path: Path) -> None:
    children = Children(tmp_path)
    line = ProgressLine(kind="progress", errors=["no partitions"])
    add(children, "consumer-0", Role.SERVICE, line, returncode=1)
    add(children, "producer-0", Role.PRODUCER, ProgressLine(kind="done"), returncode=0)
    monitor = monitor_of(children)
    with pytest.raises(UserError, match="consumer-0 exited with code 1: no partitions"):
        monitor.wait_for(lambda: True, 1.0)
    monitor.slots.killed.add("consumer-0")
    assert monitor.wait_for(lambda: True, 1.0)
