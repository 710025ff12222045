"""Ctrl-C in the middle of `brokerbench run` stops every load process it started."""

import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from harness.stack.manager import Stack

pytestmark = pytest.mark.broker

LONG_SUITE = """
name: interrupted
brokers: [kafka]
workloads:
  - name: long
    params: {rate: 100, duration: 120, producers: 1, consumers: 1, partitions: 1}
"""


def load_processes_under(run_root: Path) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter(["cmdline"]):
        try:
            cmdline = " ".join(process.info["cmdline"] or [])
        except psutil.Error:
            continue
        if "harness.load." in cmdline and str(run_root) in cmdline:
            found.append(process)
    return found


def test_sigint_mid_run_leaves_no_load_process(stack: Stack, tmp_path: Path) -> None:
    suite = tmp_path / "suite.yaml"
    suite.write_text(LONG_SUITE)
    output = tmp_path / "runs"
    run = subprocess.Popen(
        [sys.executable, "-m", "harness", "run", str(suite), "-o", str(output),
         "--metrics-port", "0", "--no-broker-warmup"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while len(load_processes_under(output)) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert len(load_processes_under(output)) == 2, "producer and consumer never started"
    run.send_signal(signal.SIGINT)
    _, stderr = run.communicate(timeout=60)
    assert run.returncode == 130, stderr
    assert stderr.strip().splitlines()[-1] == "interrupted"
    assert load_processes_under(output) == []
