"""Rollback always runs: Ctrl-C during a fault heals it; after a SIGKILL of the harness mid-fault
`brokerbench chaos heal` removes every toxic, enables every proxy and continues a paused broker.

The scenario holds three faults at once on ElasticMQ's proxy (a latency toxic both ways and the
link down) and a pause of moto (no other test uses moto)."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from chaos.state import all_state_files, read_all_entries
from harness.settings import Settings
from harness.stack.manager import Stack
from harness.stack.toxiproxy import Client

pytestmark = [pytest.mark.broker, pytest.mark.alone]  # faults the shared proxies and moto

SCENARIO = """
name: stuck
faults:
  - {action: latency, at: 1, duration: 60, params: {latency_ms: 100, stream: both}}
  - {action: link-down, at: 1.5, duration: 60}
  - {action: pause, at: 1.5, duration: 60, target: moto}
"""
SUITE = """
name: heal
brokers: [elasticmq]
proxy: all
scenarios: [stuck.yaml]
workloads:
  - name: w
    params: {rate: 50, duration: 70, warmup: 0, consumers: 1}
"""


def start_run(tmp_path: Path) -> subprocess.Popen[str]:
    (tmp_path / "stuck.yaml").write_text(SCENARIO)
    (tmp_path / "suite.yaml").write_text(SUITE)
    return subprocess.Popen(
        [sys.executable, "-m", "harness", "run", str(tmp_path / "suite.yaml"),
         "-o", str(tmp_path / "runs"), "--metrics-port", "0", "--no-broker-warmup"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def moto_status(stack: Stack) -> str:
    (status,) = [s for s in stack.status() if s.name == "moto"]
    assert status.pid is not None
    return str(psutil.Process(status.pid).status())


def wait_for_all_faults(toxiproxy: Client, run: subprocess.Popen[str], stack: Stack) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and run.poll() is None:
        proxy = toxiproxy.proxies()["elasticmq"]
        entries = read_all_entries()
        if not proxy.enabled and len(proxy.toxics) == 2 and len(entries) == 4:
            assert moto_status(stack) == psutil.STATUS_STOPPED
            return
        time.sleep(0.2)
    raise AssertionError(f"faults never all active (run exit {run.poll()})")


def assert_nothing_left(toxiproxy: Client, stack: Stack) -> None:
    for proxy in toxiproxy.proxies().values():
        assert proxy.enabled, proxy
        assert proxy.toxics == (), proxy
    assert not all_state_files()
    assert moto_status(stack) != psutil.STATUS_STOPPED


def test_ctrl_c_mid_fault_heals_everything(
    stack: Stack, settings: Settings, tmp_path: Path
) -> None:
    toxiproxy = Client(port=settings.ports.toxiproxy)
    run = start_run(tmp_path)
    wait_for_all_faults(toxiproxy, run, stack)
    run.send_signal(signal.SIGINT)
    _, stderr = run.communicate(timeout=90)
    assert run.returncode == 130, stderr
    assert_nothing_left(toxiproxy, stack)


def test_chaos_heal_cleans_up_after_a_killed_harness(
    stack: Stack, settings: Settings, tmp_path: Path
) -> None:
    toxiproxy = Client(port=settings.ports.toxiproxy)
    run = start_run(tmp_path)
    try:
        wait_for_all_faults(toxiproxy, run, stack)
        orphans = psutil.Process(run.pid).children(recursive=True)
        run.kill()
        run.communicate(timeout=30)
        for orphan in orphans:  # the load processes run in their own sessions
            orphan.kill()
        assert not toxiproxy.proxies()["elasticmq"].enabled, "the fault should have outlived it"
        assert len(read_all_entries()) == 4
        healed = subprocess.run(
            [sys.executable, "-m", "harness", "chaos", "heal"],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert healed.returncode == 0, healed.stderr
        assert_nothing_left(toxiproxy, stack)
    finally:
        if run.poll() is None:
            os.kill(run.pid, signal.SIGKILL)
