"""The gate's policy file (YAML, validated with file:line errors) and its defaults."""

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field

from harness.models import FrozenModel
from harness.yamlconfig import load_model

Fraction = Annotated[float, Field(ge=0)]


class MetricRule(FrozenModel):
    """One performance figure the gate compares, per repeat, between baseline and current."""

    path: str
    """Dotted path into result.json, e.g. ``figures.latency.e2e.stats.p99``."""
    better: Literal["higher", "lower"]
    min_effect: Fraction
    """Smallest relative change that counts as a regression (0.1 = 10 % worse medians)."""
    min_abs: Fraction = 0.0
    """...and smallest absolute change, in the figure's unit (ms for latencies)."""


DEFAULT_METRICS: dict[str, MetricRule] = {
    "throughput": MetricRule(
        path="figures.throughput.sent.mean_msgs_per_s", better="higher", min_effect=0.10
    ),
    "e2e p50": MetricRule(
        path="figures.latency.e2e.stats.p50", better="lower", min_effect=0.25, min_abs=5.0
    ),
    "e2e p99": MetricRule(
        path="figures.latency.e2e.stats.p99", better="lower", min_effect=0.50, min_abs=25.0
    ),
    "publish p50": MetricRule(
        path="figures.latency.publish.stats.p50", better="lower", min_effect=0.25, min_abs=5.0
    ),
}

DEFAULT_ENVIRONMENT = ["host", "cpus", "broker_version", "clients"]


class GatePolicy(FrozenModel):
    alpha: Annotated[float, Field(gt=0, lt=1)] = 0.05
    """Significance level of the one-sided Mann-Whitney U test per metric."""
    min_repeats: Annotated[int, Field(ge=2, le=1000)] = 3
    """Fewer repeats on either side: cannot decide (exit 2). Also undecidable whenever even
    the most extreme ordering of the samples could not reach ``alpha``."""
    max_cv: Fraction = 0.10
    """Warn (pyperf-style) when a sample's standard deviation exceeds this share of its mean."""
    noisy: Literal["warn", "undecided"] = "warn"
    """A change beyond the minimum effect that is not significant: only warn, or make the
    whole gate undecided (exit 2)."""
    environment: list[str] = Field(default_factory=lambda: list(DEFAULT_ENVIRONMENT))
    """Fingerprint keys (result.json ``environment``) that must match across the two sides."""
    metrics: dict[str, MetricRule] = Field(default_factory=lambda: dict(DEFAULT_METRICS))
    """Replaces the default metrics when given."""


def load_policy(path: Path | None) -> GatePolicy:
    return GatePolicy() if path is None else load_model(path, GatePolicy)
