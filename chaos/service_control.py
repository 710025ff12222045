"""Control of the local stack's broker services for faults and their heal: continue a paused
service's process group, start a stopped one again.

Its own module so that ``chaos.heal`` (which the fault protocol uses) and the process faults
both use it without importing each other.
"""

import contextlib
import os
import signal
import time

import psutil

from harness.settings import Settings
from harness.stack import processes
from harness.stack.manager import Stack

STOP_PATIENCE_SECONDS = 5.0
"""How long a SIGSTOPped process may take to be seen stopped (delivery is asynchronous)."""

RESTART_PATIENCE_SECONDS = 180.0
"""How long a restarted broker may take to answer (a JVM on a busy machine can take a while)."""


def pause_group(group: int) -> None:
    """SIGSTOP a process group and return once its leader is stopped, so that a fault window
    starts when nothing answers any more, not when the signal was merely sent."""
    os.killpg(group, signal.SIGSTOP)
    leader = psutil.Process(group)
    deadline = time.monotonic() + STOP_PATIENCE_SECONDS
    while leader.status() != psutil.STATUS_STOPPED:
        if time.monotonic() > deadline:
            raise RuntimeError(f"process {group} was sent SIGSTOP but did not stop")
        time.sleep(0.01)


def continue_service(settings: Settings, service: str) -> None:
    """SIGCONT the service's process group (harmless if it was not stopped)."""
    record = processes.recorded(Stack(settings).service(service).directory)
    if record is not None and processes.is_alive(record):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(record.pid, signal.SIGCONT)


def start_again(settings: Settings, service: str) -> None:
    """``up`` for one service, waiting longer than a normal start for it to answer."""
    stack = Stack(settings, [service])
    for started in stack.services:
        started.startup_timeout = max(started.startup_timeout, RESTART_PATIENCE_SECONDS)
    stack.up()
