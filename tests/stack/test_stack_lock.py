"""``up`` and ``down`` take the home's stack lock: a second ``up`` waits for the first instead of
starting the same services again (which left the loser's process running without a pid file).

A stack of toxiproxy only (quick to start), in its own home, on ports shifted by 6000 (no other
test uses that shift; every port stays below Linux's ephemeral range)."""

import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from harness.settings import Ports
from harness.stack.lock import lock_file, stack_lock
from tests.conftest import missing_services
from tests.stack.cli import brokerbench, isolated_home

pytestmark = pytest.mark.broker

PORTS_SHIFTED_BY_6000 = {
    f"BROKERBENCH_PORT_{name.upper()}": str(port + 6000)
    for name, port in Ports().model_dump().items()
}
UP = ("up", "--only", "toxiproxy", "--provider", "local")


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    if "toxiproxy" in missing_services():
        pytest.skip(missing_services()["toxiproxy"])
    home = isolated_home(tmp_path / "home", "toxiproxy")
    monkeypatch.setenv("BROKERBENCH_HOME", str(home))  # the lock this process takes is there
    return home


def environment(home: Path) -> dict[str, str]:
    return {**os.environ, "BROKERBENCH_HOME": str(home), **PORTS_SHIFTED_BY_6000}


def start_up(env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "harness", *UP],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def toxiproxies_of(home: Path) -> list[psutil.Process]:
    """Live processes started in the home's toxiproxy folder (``processes.start`` sets cwd)."""
    service_dir = str(home / "state" / "toxiproxy")
    found = []
    for process in psutil.process_iter(["status"]):
        try:
            if process.info["status"] != psutil.STATUS_ZOMBIE and process.cwd() == service_dir:
                found.append(process)
        except psutil.Error:
            continue
    return found


def assert_nothing_left(home: Path) -> None:
    """No toxiproxy of this home runs after ``down`` (one left over is killed, then reported)."""
    left = toxiproxies_of(home)
    for process in left:
        process.kill()
    assert left == [], "down left a toxiproxy running (one that had lost its pid file)"


def holds_open(process: subprocess.Popen[str], path: Path) -> bool:
    try:
        return any(f.path == str(path) for f in psutil.Process(process.pid).open_files())
    except psutil.Error:
        return False


def test_up_waits_while_another_up_or_down_holds_the_lock(home: Path) -> None:
    env = environment(home)
    try:
        with stack_lock():
            waiting = start_up(env)
            while waiting.poll() is None and not holds_open(waiting, lock_file()):
                time.sleep(0.05)  # until it reaches the lock (or, without one, finishes)
            assert waiting.poll() is None, "up ran while the lock was held"
            assert not (home / "state" / "toxiproxy" / "pid.json").exists()
            assert toxiproxies_of(home) == []
        _, stderr = waiting.communicate(timeout=120)
        assert waiting.returncode == 0, stderr
        assert len(toxiproxies_of(home)) == 1
    finally:
        brokerbench("down", env=env)
        assert_nothing_left(home)


def test_two_ups_at_once_start_one_toxiproxy_and_down_leaves_nothing(home: Path) -> None:
    env = environment(home)
    try:
        ups = [start_up(env), start_up(env)]
        outcomes = [(up.communicate(timeout=120)[1], up.wait()) for up in ups]
        assert [code for _, code in outcomes] == [0, 0], outcomes
        (running,) = toxiproxies_of(home)
        status = brokerbench("status", "--only", "toxiproxy", env=env)
        assert status.returncode == 0, status.stdout + status.stderr
        assert str(running.pid) in status.stdout
    finally:
        down = brokerbench("down", env=env)
        assert_nothing_left(home)
    assert down.returncode == 0, down.stderr
