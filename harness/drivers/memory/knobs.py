"""The memory broker's misbehaviour knobs and the ``memory`` driver's endpoint settings.

A target's settings in brokerbench.yaml, for example::

    targets:
      memory-lossy: {driver: memory, settings: {lose: 0.01, seed: 7}}

The knobs travel with ``create_destination`` and the broker applies them to that destination
only, so one broker process serves a well-behaved target and misbehaving ones side by side.
Each is a fraction of the messages appended to the destination, decided by a generator seeded
with ``seed``: for a given seed the n-th message appended to a destination always meets the
same fate.
"""

import random
from dataclasses import dataclass
from typing import Annotated

from pydantic import Field

from harness.models import FrozenModel, Port

Fraction = Annotated[float, Field(ge=0.0, le=1.0)]
DEFAULT_PORT = 9350
"""``Ports.memory``'s default (kept equal by a unit test)."""


class Knobs(FrozenModel):
    """How a destination misbehaves. All zero: a well-behaved broker."""

    lose: Fraction = 0.0
    """Acknowledge the send (with a partition and offset), never deliver it: *lost*."""
    lose_only_for: str | None = None
    """With ``lose``: lose the message for this group only and deliver it to the others (a
    fan-out subscriber missing events: the ``subscribers`` check)."""
    duplicate: Fraction = 0.0
    """Deliver it twice, the same partition and offset both times: *redelivery*."""
    reorder: Fraction = 0.0
    """Hold it back until the next message of its key in its partition, and deliver that one
    first: a *reorder* (released alone after ``REORDER_HOLD_SECONDS`` if none comes)."""
    delay: Fraction = 0.0
    """Make it deliverable only ``delay_ms`` after it was appended. Its partition waits behind
    it (order is kept): latency, no violation."""
    delay_ms: Annotated[int, Field(ge=0, le=60_000)] = 200
    refuse_consumers: bool = False
    """Refuse every consumer that joins a group of the destination: consumer processes die at
    their start, a run that cannot execute (``failed``)."""
    seed: int = 0

    @property
    def misbehaves(self) -> bool:
        return any((self.lose, self.duplicate, self.reorder, self.delay))


class MemoryEndpoint(Knobs):
    """The ``memory`` driver's endpoint: the broker's port on 127.0.0.1 (default: the stack's
    ``ports.memory``; the broker binds nothing else), timeouts and the knobs."""

    port: Port = DEFAULT_PORT
    visibility_timeout: Annotated[float, Field(gt=0)] = 30.0
    """Seconds a delivered, unacked message stays with its consumer before it is redelivered."""
    request_timeout: Annotated[float, Field(gt=0)] = 30.0
    """A request's bound on the socket (a poll's own wait is added)."""


@dataclass(frozen=True, slots=True)
class Fate:
    lost: bool = False
    duplicated: bool = False
    reordered: bool = False
    delayed: bool = False


WELL_BEHAVED = Fate()


class Fates:
    """Draws each appended message's fate from ``random.Random(seed)``, in append order."""

    def __init__(self, knobs: Knobs) -> None:
        self.knobs = knobs
        self._random = random.Random(knobs.seed)

    def next(self) -> Fate:
        knobs = self.knobs
        if not knobs.misbehaves:
            return WELL_BEHAVED
        draw = self._random.random
        # Always four draws, so one knob's setting does not shift another's decisions.
        lose, duplicate, reorder, delay = draw(), draw(), draw(), draw()
        if lose < knobs.lose:
            return Fate(lost=True)
        return Fate(
            duplicated=duplicate < knobs.duplicate,
            reordered=reorder < knobs.reorder,
            delayed=delay < knobs.delay,
        )
