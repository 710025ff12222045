"""Open-loop schedules: when each message is *meant* to be sent, whatever the broker does.

A producer that falls behind its schedule sends late and records how late (publish delay);
latency is measured from the intended time, so a stalled broker cannot hide its stall by
slowing the load down (no coordinated omission).
"""

from collections.abc import Iterator
from dataclasses import dataclass

NS_PER_S = 1_000_000_000


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

    def intended_times(self, start_ns: int, producer: int, producers: int) -> Iterator[int]:
        """Intended send times (ns) of one producer's share: the producers interleave evenly,
        producer ``i`` taking messages ``i, i + n, i + 2n, ...`` of the combined stream."""
        step_start = start_ns
        for step in self.steps:
            step_end = step_start + round(step.seconds * NS_PER_S)
            if step.rate > 0:
                interval = NS_PER_S / step.rate
                index = producer
                while True:
                    intended = step_start + round(index * interval)
                    if intended >= step_end:
                        break
                    yield intended
                    index += producers
            step_start = step_end


def constant(rate: float, seconds: float) -> Schedule:
    return Schedule((Step(rate, seconds),))
