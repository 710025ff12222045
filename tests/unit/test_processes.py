"""Pid files and process groups: stop ends a service's whole group, and only ours."""

import json
import subprocess
import sys
import time
from dataclasses import asdict
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
