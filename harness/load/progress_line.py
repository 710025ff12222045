"""What a load process reports on stdout, one JSON line a second: the ``ProgressLine``.

Producers, consumers and flow services build their lines with this model and print them with
``emit``; the orchestrator (``harness/run/children.py``) parses each line once with ``parse``.
Both ends name the fields through the model, so renaming one fails in mypy, not silently at
run time. A field a kind of process does not report keeps its default (``None`` for the
saturation figures: not reported is not zero).
"""

import sys
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError

LineKind = Literal["ready", "progress", "done"]


class ProgressLine(BaseModel):
    """One progress line. ``kind``: ``ready`` (connected; a producer then waits to be told the
    start), ``progress`` (once a second), ``done`` (the last line, after a clean stop); None
    only for the placeholder of a process that has printed nothing yet."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    kind: LineKind | None = None
    consumer: int | None = None
    """A consuming process's consumer id."""

    # producers
    sent: int = 0
    """Sends completed (ok or failed)."""
    failed: int = 0
    late_ms_p99: float | None = None
    """How late the sends of the last second were (saturation)."""
    late_ms_max: float | None = None
    not_sent: int | None = None
    """Messages left unsent at the run's bound."""
    errors: list[str] = []
    """A process's own summary of what made it fail (its ``done`` line)."""

    # plain consumers
    received: int = 0
    """This run's deliveries so far."""
    tick: int = 0
    """The line's number (a consumer's ``e2e_ms`` are fed to the live metrics once)."""
    e2e_ms: list[float] = []
    """A sample of the last second's end-to-end latencies."""
    poll_gap_ms_max: float | None = None
    """The longest time between a poll returning and the next poll, over the last second."""
    foreign: int = 0
    """Deliveries of another run's messages (ignored)."""

    # flow services (and dead-letter readers)
    handled: dict[str, int] = {}
    """Events handled (acked for the first time, or dead-lettered) per topic."""
    nacked: int = 0
    published: dict[str, int] = {}
    """Events published from the outbox (acknowledged by the broker) per topic."""
    unpublished: int = 0
    """Events still in the outbox."""
    idle_seconds: float = 0.0
    """Since the service last polled something."""


NOTHING_YET = ProgressLine()
"""The latest line of a process that has printed none."""


def emit(line: ProgressLine) -> None:
    """Print ``line`` on stdout (the fields left at their defaults are not printed)."""
    sys.stdout.write(line.model_dump_json(exclude_defaults=True) + "\n")
    sys.stdout.flush()


def parse(raw: str) -> ProgressLine | None:
    """The line a process printed, or None when it is not a progress line (e.g. a library
    printing on stdout)."""
    try:
        return ProgressLine.model_validate_json(raw)
    except ValidationError:
        return None
