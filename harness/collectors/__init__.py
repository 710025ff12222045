"""Collectors: latency HdrHistograms, throughput per second, lag samples, live Prometheus
metrics, and their immutable summaries for result.json.

They are fed by the workload as it runs (or from the history afterwards, through the
vectorised ``*_from_ns`` helpers) and never talk to a broker themselves.
"""

from harness.collectors.lag import LagSample, LagSampler, LagSource
from harness.collectors.latency import (
    LatencyHistogram,
    LatencyKind,
    LatencyRecorder,
    add_ns,
    histogram_from_ns,
    new_histogram,
    percentiles,
)
from harness.collectors.live import LiveMetrics
from harness.collectors.summary import LatencySummary, ThroughputSummary, latency_summaries
from harness.collectors.throughput import ThroughputSeries, series_from_ns

__all__ = [
    "LagSample",
    "LagSampler",
    "LagSource",
    "LatencyHistogram",
    "LatencyKind",
    "LatencyRecorder",
    "LatencySummary",
    "LiveMetrics",
    "ThroughputSeries",
    "ThroughputSummary",
    "add_ns",
    "histogram_from_ns",
    "latency_summaries",
    "new_histogram",
    "percentiles",
    "series_from_ns",
]
