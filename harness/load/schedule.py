"""Open-loop schedules: when each message is *meant* to be sent, whatever the broker does.

A producer that falls behind its schedule sends late and records how late (publish delay);
latency is measured from the intended time, so a stalled broker cannot hide its stall by
slowing the load down (no coordinated omission).
"""

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

NS_PER_S = 1_000_000_000
CHUNK = 4096
"""Intended times computed at once by a ``Cursor``."""

Times = npt.NDArray[np.int64]


@dataclass(frozen=True)
class Step:
    rate: float
    """Messages per second, across all producers."""
    seconds: float


@dataclass(frozen=True)
class Schedule:
    """A piecewise-constant rate over time; a constant rate is one step."""

    steps: tuple[Step, ...]

    @property
    def seconds(self) -> float:
        return sum(step.seconds for step in self.steps)

    def expected_messages(self) -> int:
        return round(sum(step.rate * step.seconds for step in self.steps))

    def chunks(self, start_ns: int, producer: int, producers: int) -> Iterator[Times]:
        """Intended send times (ns) of one producer's share, in ascending arrays: the producers
        interleave evenly, producer ``i`` taking messages ``i, i + n, i + 2n, ...`` of the
        combined stream of each step."""
        step_start = start_ns
        for step in self.steps:
            step_end = step_start + round(step.seconds * NS_PER_S)
            if step.rate > 0:
                interval = NS_PER_S / step.rate
                first = producer
                while True:
                    indexes = np.arange(CHUNK, dtype=np.float64) * producers + first
                    times = step_start + np.rint(indexes * interval).astype(np.int64)
                    inside = times[times < step_end]
                    if len(inside):
                        yield inside
                    if len(inside) < len(times):
                        break
                    first += CHUNK * producers
            step_start = step_end

    def intended_times(self, start_ns: int, producer: int, producers: int) -> Iterator[int]:
        """``chunks`` one time at a time."""
        for chunk in self.chunks(start_ns, producer, producers):
            yield from chunk.tolist()

    def cursor(self, start_ns: int, producer: int, producers: int) -> "Cursor":
        return Cursor(self.chunks(start_ns, producer, producers))


class Cursor:
    """Hands out one producer's intended times in arrays of those already due."""

    def __init__(self, chunks: Iterator[Times]) -> None:
        self._chunks = chunks
        self._chunk: Times = np.empty(0, np.int64)
        self._position = 0

    def next_time(self) -> int | None:
        """The next intended time, or None when the schedule is exhausted."""
        if self._position >= len(self._chunk):
            chunk = next(self._chunks, None)
            if chunk is None:
                return None
            self._chunk, self._position = chunk, 0
        return int(self._chunk[self._position])

    def take_due(self, now_ns: int, limit: int) -> Times:
        """Up to ``limit`` intended times ``<= now_ns`` (empty if none is due yet)."""
        if self.next_time() is None:
            return self._chunk[:0]
        start = self._position
        stop = min(start + limit, len(self._chunk))
        due = start + int(np.searchsorted(self._chunk[start:stop], now_ns, side="right"))
        self._position = due
        return self._chunk[start:due]

    def count_rest(self) -> int:
        """How many intended times are left; exhausts the cursor."""
        rest = len(self._chunk) - self._position + sum(len(chunk) for chunk in self._chunks)
        self._chunk, self._position = np.empty(0, np.int64), 0
        return rest


def constant(rate: float, seconds: float) -> Schedule:
    return Schedule((Step(rate, seconds),))
