"""``up`` / ``status`` / ``down`` of a whole second stack on shifted ports and its own home:
idempotent start, a broker killed behind the harness's back, restart, nothing left behind."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.conftest import missing_services
from tests.stack.cli import (
    SHIFTED_PORTS,
    brokerbench,
    environment,
    isolated_home,
    one_line_error,
)

pytestmark = pytest.mark.broker


def status_of(env: dict[str, str]) -> tuple[int, dict[str, Any]]:
    completed = brokerbench("status", "--json", env=env)
    return completed.returncode, json.loads(completed.stdout)


def services_by_name(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {service["name"]: service for service in document["services"]}


def processes_under(home: Path) -> list[psutil.Process]:
    """Live processes whose command line mentions ``home`` (every service's does)."""
    found = []
    for process in psutil.process_iter(["cmdline", "status"]):
        try:
            if process.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            if any(str(home) in part for part in process.info["cmdline"] or []):
                found.append(process)
        except psutil.Error:
            continue
    return found


@pytest.fixture
def home(tmp_path: Path) -> Path:
    missing = missing_services()
    if missing:
        pytest.skip("; ".join(missing.values()))
    return isolated_home(tmp_path / "home", "kafka", "elasticmq", "toxiproxy")


def test_up_is_idempotent_restarts_a_killed_broker_and_down_leaves_nothing(home: Path) -> None:
    env = environment(home)
    try:
        first = brokerbench("up", env=env)
        assert first.returncode == 0, first.stderr
        code, document = status_of(env)
        assert code == 0
        services = services_by_name(document)
        assert {name: s["state"] for name, s in services.items()} == dict.fromkeys(
            ("toxiproxy", "kafka", "elasticmq", "moto", "pubsub"), "healthy"
        )
        assert services["kafka"]["ports"]["kafka"] == SHIFTED_PORTS["kafka"]
        upstream = f"127.0.0.1:{SHIFTED_PORTS['kafka_proxied_listener']}"
        assert document["proxies"]["kafka"]["upstream"] == upstream
        pids = {name: s["pid"] for name, s in services.items()}

        again = brokerbench("up", env=env)
        assert again.returncode == 0, again.stderr
        assert {n: s["pid"] for n, s in services_by_name(status_of(env)[1]).items()} == pids

        os.killpg(pids["kafka"], signal.SIGKILL)
        assert psutil.wait_procs([psutil.Process(pids["kafka"])], timeout=10)[1] == []
        code, document = status_of(env)
        assert code == 1
        kafka = services_by_name(document)["kafka"]
        assert kafka["state"] == "crashed"
        assert "brokerbench up" in kafka["detail"]
        assert "unreachable" in one_line_error(brokerbench("check", "kafka", env=env))

        restarted = brokerbench("up", env=env)
        assert restarted.returncode == 0, restarted.stderr
        after = {n: s["pid"] for n, s in services_by_name(status_of(env)[1]).items()}
        assert after["kafka"] != pids["kafka"]
        assert {n: p for n, p in after.items() if n != "kafka"} == {
            n: p for n, p in pids.items() if n != "kafka"
        }
        check = brokerbench("check", "kafka", "--via-proxy", env=env)
        assert check.returncode == 0, check.stderr
    finally:
        stopped = brokerbench("down", env=env)
    assert stopped.returncode == 0, stopped.stderr
    assert processes_under(home) == []
    assert list(home.glob("state/*/pid.json")) == []
    code, document = status_of(env)
    assert {s["state"] for s in document["services"]} == {"stopped"}


def test_interrupted_up_stops_what_it_started(home: Path) -> None:
    env = environment(home)
    process = subprocess.Popen(
        [sys.executable, "-m", "harness", "up", "--only", "toxiproxy,kafka"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not list(home.glob("state/kafka/pid.json")) and time.monotonic() < deadline:
            time.sleep(0.05)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() != 130:  # whatever the interrupt left running goes, pass or fail
            process.kill()
            process.wait()
            brokerbench("down", env=env)
    assert process.returncode == 130, stderr
    assert processes_under(home) == []
    assert list(home.glob("state/*/pid.json")) == []
