"""A count of sends not yet completed, that ``flush`` can wait on."""

import threading
import time


class InFlight:
    def __init__(self) -> None:
        self._count = 0
        self._changed = threading.Condition()

    def add(self, count: int = 1) -> None:
        with self._changed:
            self._count += count

    def done(self, count: int = 1) -> None:
        with self._changed:
            self._count -= count
            if self._count <= 0:
                self._changed.notify_all()

    def wait(self, timeout: float) -> int:
        """Wait until none is in flight or ``timeout`` passes; returns how many remain."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while self._count > 0:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._changed.wait(remaining)
            return self._count
