"""Max-rate search: the highest rate a broker sustains without an unbounded backlog.

Each probe is a full run at one constant rate. A rate is *sustained* when the producers kept
to the schedule (sent every message by the run's bound, and acknowledged throughput within
``tolerance`` of the target) and the consumers kept up (the backlog at the end of the schedule
is under ``backlog_seconds`` worth of messages). A probe whose producers left messages unsent
failed because the harness could not keep up, not the broker: the result says which limit was
found (``limited_by``). The search multiplies the rate by ``factor`` until a probe fails, then
bisects between the last sustained rate and the first failed one until they are within
``precision``.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from harness.load.throughput import SearchConfig

MAX_SHRINK_STEPS = 4


@dataclass(frozen=True)
class Probe:
    rate: float
    achieved: float
    """Acknowledged messages per second over the measured window."""
    final_backlog: int | None
    """Messages not yet consumed when the schedule ended (None if unknown)."""
    not_sent: int = 0
    """Messages the producers could not send by the run's bound: the harness fell behind."""
    harness_bound: bool | None = None
    """The probe's ``saturation.harness_bound`` verdict: a rate that failed while the harness
    was the limit says more about the harness than about the broker."""

    def sustained(self, config: SearchConfig) -> bool:
        kept_schedule = self.not_sent == 0 and self.achieved >= self.rate * (1 - config.tolerance)
        kept_up = (
            self.final_backlog is None or self.final_backlog <= self.rate * config.backlog_seconds
        )
        return kept_schedule and kept_up


@dataclass(frozen=True)
class SearchResult:
    max_sustained_rate: float | None
    probes: list[Probe]
    limited_by: Literal["broker", "harness"] | None = None
    """What stopped the search: the lowest failed rate failed while the harness was the limit
    (its producers left messages unsent, or the run was harness-bound: the broker's limit may
    be higher still) or because the broker did not keep up (``broker``); None when no probe
    failed (``max_rate`` reached)."""


def _limit(probes: list[Probe], config: SearchConfig) -> Literal["broker", "harness"] | None:
    failed = [probe for probe in probes if not probe.sustained(config)]
    if not failed:
        return None
    lowest = min(failed, key=lambda probe: probe.rate)
    return "harness" if lowest.not_sent > 0 or lowest.harness_bound else "broker"


def search_max_rate(config: SearchConfig, probe: Callable[[float], Probe]) -> SearchResult:
    probes: list[Probe] = []

    def sustained(rate: float) -> bool:
        probes.append(probe(rate))
        return probes[-1].sustained(config)

    good: float | None = None
    bad: float | None = None
    rate = config.start
    while rate <= config.max_rate:  # grow until a rate fails
        if not sustained(rate):
            bad = rate
            break
        good, rate = rate, rate * config.factor
    if bad is None:
        return SearchResult(good, probes, _limit(probes, config))
    floor = config.start / config.factor**MAX_SHRINK_STEPS
    while good is None:  # even the start rate failed: shrink
        rate = bad / config.factor
        if rate < floor:
            return SearchResult(None, probes, _limit(probes, config))
        if sustained(rate):
            good = rate
        else:
            bad = rate
    while (bad - good) / bad > config.precision:  # bisect
        middle = (good + bad) / 2
        if sustained(middle):
            good = middle
        else:
            bad = middle
    return SearchResult(good, probes, _limit(probes, config))
