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
import pytest

from chaos import state as chaos_state
from harness.run import run_state
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
    """``record`` as a pid file written before ``since_boot`` (wall-clock start only), its
    start time ``seconds`` off."""
    return replace(
        record, started_at=record.started_at + seconds, argv=argv or record.argv, since_boot=None
    )


def test_a_clock_step_does_not_orphan_a_service_of_an_older_pid_file(tmp_path: Path) -> None:
    """A pid file with only the wall-clock start: after the clock moved (the recorded start
    time is 90 s off), the process running the recorded command is still ours, is seen alive
    and is stopped; the same pid with a different command line is a stranger."""
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


def step_the_clock(monkeypatch: pytest.MonkeyPatch, seconds: float) -> None:
    """What a step of the system clock does to psutil: wall-clock start times and the boot
    time both move by the step (the kernel's boot-relative start does not)."""
    create_time, boot_time = psutil.Process.create_time, psutil.boot_time
    monkeypatch.setattr(psutil.Process, "create_time", lambda p: create_time(p) + seconds)
    monkeypatch.setattr(psutil, "boot_time", lambda: boot_time() + seconds)


def test_a_clock_step_leaves_every_identity_record_true(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pid files, run states and fault state files name their process by its start since the
    boot: after a 90 s clock step the same process is still theirs, whatever its command line,
    and a record whose boot-relative start differs is a stranger's."""
    record = processes.start(tmp_path, [sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        run_state.mark_running(tmp_path, {})
        state = run_state.read_state(tmp_path)
        assert state is not None and state.pid_since_boot is not None
        faults_file = tmp_path / "faults.json"
        chaos_state.add_entries([], faults_file)
        step_the_clock(monkeypatch, 90.0)
        assert processes.is_alive(replace(record, argv=["another", "command"]))
        assert state.effective is run_state.RunState.RUNNING
        assert chaos_state.read_harness_faults(faults_file).owner_runs()
        assert record.since_boot is not None
        assert not processes.is_alive(replace(record, since_boot=record.since_boot + 90.0))
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(record.pid, 9)
