from collections.abc import Callable

from harness.load.throughput import SearchConfig
from harness.run.search import Probe, search_max_rate


def fake_probe(limit: float, tried: list[float]) -> Callable[[float], Probe]:
    """A broker that sustains up to ``limit`` msg/s and builds a backlog above it."""

    def probe(rate: float) -> Probe:
        tried.append(rate)
        achieved = min(rate, limit)
        backlog = 0 if rate <= limit else int((rate - limit) * 10)
        return Probe(rate, achieved, backlog)

    return probe


def test_the_search_brackets_the_limit_within_the_precision() -> None:
    tried: list[float] = []
    config = SearchConfig(start=1000, factor=2, precision=0.05)
    result = search_max_rate(config, fake_probe(5300, tried))
    assert result.max_sustained_rate is not None
    # within the precision below the limit, and within the tolerance above it
    assert 5300 * 0.95 <= result.max_sustained_rate <= 5300 / (1 - config.tolerance)
    assert tried[:4] == [1000, 2000, 4000, 8000]
    assert len(tried) < 12


def test_a_broker_slower_than_the_start_rate_is_found_below_it() -> None:
    tried: list[float] = []
    config = SearchConfig(start=1000, precision=0.1)
    result = search_max_rate(config, fake_probe(300, tried))
    assert result.max_sustained_rate is not None
    assert 300 * 0.9 <= result.max_sustained_rate <= 300 / (1 - config.tolerance)


def test_the_ceiling_ends_the_search() -> None:
    tried: list[float] = []
    result = search_max_rate(SearchConfig(start=1000, max_rate=4000), fake_probe(1e9, tried))
    assert result.max_sustained_rate == 4000
    assert tried == [1000, 2000, 4000]


def test_a_search_stopped_by_unsent_messages_says_the_harness_was_the_limit() -> None:
    def probe(rate: float) -> Probe:
        # The producers cannot send more than 3000 msg/s; the broker would take anything.
        return Probe(rate, min(rate, 3000.0), 0, not_sent=max(0, int(rate - 3000)))

    result = search_max_rate(SearchConfig(start=1000, precision=0.05), probe)
    assert result.limited_by == "harness"
    assert result.max_sustained_rate is not None and result.max_sustained_rate <= 3000
    assert search_max_rate(SearchConfig(start=1000), fake_probe(5300, [])).limited_by == "broker"
