"""Locust's request statistics fed a batch of sends at a time.

``events.request.fire`` costs about 2 us per request (two ``StatsEntry.log`` calls); at
hundreds of thousands of sends a second that was a fifth of a producer's CPU. ``log_sends``
makes the same updates for many requests at once, so Locust's stats, web UI and master/worker
aggregation still show true counts, rates and response-time distributions. Failures are few and
go through Locust's own ``log_error``.
"""

import time

import numpy as np
from locust import stats as locust_stats
from locust.stats import RequestStats, StatsEntry

from harness.history.send_log import Harvest


def log_sends(
    stats: RequestStats, method: str, name: str, harvest: Harvest, message_size: int
) -> None:
    """``RequestStats.log_request`` for each send of ``harvest`` (``message_size`` bytes each,
    its publish latency as the response time), then ``log_error`` for each failed one."""
    response_ms = harvest.publish_ms
    content_length = message_size * len(response_ms)
    errors = harvest.errors
    if len(response_ms):
        rounded, counts = np.unique(np.rint(response_ms), return_counts=True)
        buckets: dict[int, int] = {}
        for value, count in zip(rounded.tolist(), counts.tolist(), strict=True):
            bucket = locust_stats.bucket_response_time(value)
            buckets[bucket] = buckets.get(bucket, 0) + count
        total = float(response_ms.sum())
        low, high = float(response_ms.min()), float(response_ms.max())
        for entry in (stats.total, stats.get(name, method)):
            _log_many(entry, len(response_ms), total, low, high, buckets, content_length)
    for error in errors:
        stats.log_error(method, name, error)


def _log_many(  # noqa: PLR0917 - the figures StatsEntry.log keeps
    entry: StatsEntry,
    count: int,
    total_ms: float,
    low_ms: float,
    high_ms: float,
    buckets: dict[int, int],
    content_length: int,
) -> None:
    """What ``count`` calls of ``StatsEntry.log`` would leave behind."""
    now = time.time()
    second = int(now)
    if (
        entry.use_response_times_cache
        and entry.last_request_timestamp
        and second > int(entry.last_request_timestamp)
    ):
        entry._cache_response_times(second - 1)
    entry.num_requests += count
    entry.num_reqs_per_sec[second] += count
    entry.last_request_timestamp = now
    entry.total_response_time += total_ms  # type: ignore[assignment]
    # Locust annotates response times as int but keeps the floats its events carry.
    low = low_ms if entry.min_response_time is None else min(entry.min_response_time, low_ms)
    entry.min_response_time = low  # type: ignore[assignment]
    entry.max_response_time = max(entry.max_response_time, high_ms)  # type: ignore[assignment]
    for bucket, bucket_count in buckets.items():
        entry.response_times[bucket] += bucket_count
    entry.total_content_length += content_length
