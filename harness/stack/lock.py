"""One ``up`` or ``down`` at a time per home: ``<home>/state/stack.lock``.

Without it, two ``up`` started together both find a service stopped and both start it; the
loser's process can be left running with its pid file overwritten (nothing would stop it). The
lock is an advisory ``flock`` on the file: the kernel releases it when the holder exits, even
when it is killed, so a crashed ``up`` never leaves the home locked. A second ``up`` or ``down``
waits for the first, then sees what it did (``up`` is idempotent)."""

import fcntl
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from harness import paths


def lock_file() -> Path:
    return paths.state_dir() / "stack.lock"


@contextmanager
def stack_lock(report: Callable[[str], None] = lambda _: None) -> Iterator[None]:
    """Hold the home's stack lock for the block, waiting (and saying so) while another process
    holds it. Ctrl-C (or SIGTERM, see ``harness.cli``) interrupts the wait."""
    path = lock_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            report(f"waiting for another brokerbench up or down on {paths.home()} to finish")
            fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)  # releases the lock
