"""A worker's clock offset to the master, estimated NTP-style over the control channel.

One round trip: the master notes ``t_send``, the worker answers with its own clock ``t_worker``,
the master notes ``t_recv``. If the message took as long each way, the worker read its clock at
the master's ``(t_send + t_recv) / 2``, so ``offset = t_worker - (t_send + t_recv) / 2``; however
the round trip ``rtt`` split, the true offset lies within ``rtt / 2`` of that. Of several round
trips the one with the smallest ``rtt`` is kept (the least queueing, the tightest bound).
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass

UNCERTAINTY_BOUND_NS = 1_000_000
"""A run whose cross-machine latencies carry more clock uncertainty than this (1 ms) is flagged
in result.json (``distribution.clock_uncertain``); it is not a failure."""
ROUNDS = 8
"""Round trips per worker at each run's start."""


@dataclass(frozen=True)
class ClockSample:
    """One round trip: the master's clock at send and receive, the worker's in between."""

    t_send: int
    t_worker: int
    t_recv: int

    @property
    def rtt(self) -> int:
        return self.t_recv - self.t_send


@dataclass(frozen=True)
class ClockOffset:
    offset_ns: int
    """Worker clock minus master clock: a worker time ``t`` is ``t - offset_ns`` on the master."""
    uncertainty_ns: int
    """The true offset is within this of ``offset_ns`` (half the best round trip)."""
    samples: int


def estimate(samples: Sequence[ClockSample]) -> ClockOffset:
    """The offset from the round trip with the smallest ``rtt``."""
    usable = [sample for sample in samples if sample.rtt >= 0]
    if not usable:
        raise ValueError("no usable round trip to estimate a clock offset from")
    best = min(usable, key=lambda sample: sample.rtt)
    offset = best.t_worker - (best.t_send + best.t_recv) // 2
    return ClockOffset(offset, (best.rtt + 1) // 2, len(usable))


def measure(
    round_trip: Callable[[], int], now: Callable[[], int], rounds: int = ROUNDS
) -> ClockOffset:
    """``rounds`` round trips: ``round_trip`` asks the worker for its clock and returns it,
    ``now`` is the master's clock (both injected, so a test drives them with a fake clock)."""
    samples = []
    for _ in range(rounds):
        t_send = now()
        t_worker = round_trip()
        samples.append(ClockSample(t_send, t_worker, now()))
    return estimate(samples)
