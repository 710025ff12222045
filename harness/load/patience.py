"""Connecting a load process while a fault may be active (a chaos run can start or replace a
process while the broker is down or its proxy disabled)."""

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")
CONNECT_PATIENCE_SECONDS = 60.0


def with_patience(
    action: Callable[[], T], seconds: float = CONNECT_PATIENCE_SECONDS, pause: float = 0.5
) -> T:
    """``action()``, tried again every ``pause`` seconds while it raises, for up to ``seconds``;
    then its last error propagates."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return action()
        except Exception:
            if time.monotonic() >= deadline:
                raise
            time.sleep(pause)
