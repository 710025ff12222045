"""Pid files and process groups: stop ends a service's whole group, and only ours."""

import contextlib
import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import psutil

from harness.stack import processes

SPAWNS_A_CHILD = (
    "import subprocess, sys, time; "
    "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)']); "
    "time.sleep(120)"
)


def test_stop_ends_the_whole_process_group(tmp_path: Path) -> None:
    record = processes.start(tmp_path, [sys.executable, "-c", SPAWNS_A_CHILD])
    parent = psutil.Process(record.pid)
    deadline = time.monotonic() + 10
    while not parent.children() and time.monotonic() < deadline:
        time.sleep(0.05)
    child = parent.children()[0]
    assert processes.is_alive(record)
    assert processes.stop(tmp_path, grace_seconds=5) is True
    assert not child.is_running() or child.status() == psutil.STATUS_ZOMBIE
    assert not (tmp_path / "pid.json").exists()
    assert processes.stop(tmp_path) is False


def test_a_reused_pid_is_never_signalled(tmp_path: Path) -> None:
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        record = processes.ProcessRecord(bystander.pid, started_at=1.0, argv=["x"], log="x")
        (tmp_path / "pid.json").write_text(json.dumps(asdict(record)))
        assert not processes.is_alive(record)
        assert processes.stop(tmp_path) is False
        assert bystander.poll() is None
    finally:
        bystander.kill()
        bystander.wait()


def shifted(
    record: processes.ProcessRecord, seconds: float, argv: list[str] | None = None
) -> processes.ProcessRecord:
    return replace(record, started_at=record.started_at + seconds, argv=argv or record.argv)


def test_a_clock_step_does_not_orphan_a_running_service(tmp_path: Path) -> None:
    """After the wall clock moved (the recorded start time is 90 s off), the process running
    the recorded command is still ours, is seen alive and is stopped; the same pid with a
    different command line is a stranger."""
    record = processes.start(tmp_path, [sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        stepped = shifted(record, 90.0)
        assert processes.is_alive(stepped)
        stranger = shifted(record, 90.0, argv=[sys.executable, "-c", "other"])
        assert not processes.is_alive(stranger)
        (tmp_path / "pid.json").write_text(json.dumps(asdict(stepped)))
        assert processes.stop(tmp_path, grace_seconds=5) is True
        assert not processes.is_alive(record)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(record.pid, 9)
