"""Immutable summaries of the collectors for result.json: plain JSON dicts in and out."""

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from harness.collectors.latency import LatencyHistogram, LatencyRecorder, encode, percentiles


@dataclass(frozen=True)
class LatencySummary:
    """One latency kind over the measured window.

    ``stats_ms`` holds p50 .. p99.99, max and mean in milliseconds (empty when ``count`` is 0);
    ``hdr`` is the cumulative histogram itself (hdrh's compressed base64), so repeats can be
    merged and any other percentile computed later.
    """

    kind: str
    count: int
    clamped: int
    saturated: int
    stats_ms: Mapping[str, float] = field(default_factory=dict)
    hdr: str = ""

    @classmethod
    def of(cls, kind: str, histogram: LatencyHistogram) -> "LatencySummary":
        cumulative = histogram.cumulative()
        stats = percentiles(cumulative)
        count = int(stats.pop("count"))
        return cls(
            kind=kind,
            count=count,
            clamped=histogram.clamped,
            saturated=histogram.saturated,
            stats_ms=stats if count else {},
            hdr=encode(cumulative),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "count": self.count,
            "clamped": self.clamped,
            "saturated": self.saturated,
            "unit": "ms",
            "stats": dict(self.stats_ms),
            "hdr": self.hdr,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "LatencySummary":
        if data.get("unit", "ms") != "ms":
            raise ValueError(f"unsupported latency unit {data['unit']!r}")
        return cls(
            kind=str(data["kind"]),
            count=int(data["count"]),
            clamped=int(data["clamped"]),
            saturated=int(data["saturated"]),
            stats_ms={str(k): float(v) for k, v in data["stats"].items()},
            hdr=str(data["hdr"]),
        )


def latency_summaries(recorder: LatencyRecorder) -> dict[str, LatencySummary]:
    """One summary per latency kind, keyed by the kind's name."""
    return {kind.value: LatencySummary.of(kind.value, histogram) for kind, histogram in recorder}


@dataclass(frozen=True)
class ThroughputSummary:
    """Messages and bytes per second over the whole seconds of a measured window.

    Rates are None when the window holds no whole second. MB is 10**6 bytes.
    """

    start_s: int
    """First whole second (Unix time) of the window."""
    seconds: int
    messages: int
    bytes: int
    mean_msgs_per_s: float | None
    min_msgs_per_s: float | None
    max_msgs_per_s: float | None
    mean_mb_per_s: float | None
    min_mb_per_s: float | None
    max_mb_per_s: float | None

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ThroughputSummary":
        def rate(name: str) -> float | None:
            value = data[name]
            return None if value is None else float(value)

        return cls(
            start_s=int(data["start_s"]),
            seconds=int(data["seconds"]),
            messages=int(data["messages"]),
            bytes=int(data["bytes"]),
            mean_msgs_per_s=rate("mean_msgs_per_s"),
            min_msgs_per_s=rate("min_msgs_per_s"),
            max_msgs_per_s=rate("max_msgs_per_s"),
            mean_mb_per_s=rate("mean_mb_per_s"),
            min_mb_per_s=rate("min_mb_per_s"),
            max_mb_per_s=rate("max_mb_per_s"),
        )
