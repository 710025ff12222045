"""Statistics of the gate: compare per-repeat figures of a baseline and a current sample.

The test is scipy's one-sided Mann-Whitney U (rank-based, no normality assumed: latency
percentiles are skewed and repeats are few). Ties are handled by an exact permutation test.
A significant change is a regression only if it is also larger than the metric's minimum
effect, so a tiny but consistent shift does not fail a build.
"""

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from scipy import stats

PERMUTATIONS = 99_999
"""Enough to enumerate every split exactly up to 9 vs 9 repeats."""


def smallest_p(n_baseline: int, n_current: int) -> float:
    """The smallest one-sided p-value any two samples of these sizes can give: all of one
    above all of the other. Above alpha, the test cannot decide whatever the data."""
    if n_baseline == 0 or n_current == 0:
        return 1.0
    return 1 / math.comb(n_baseline + n_current, n_current)


def p_worse(
    baseline: Sequence[float], current: Sequence[float], worse: Literal["higher", "lower"]
) -> float:
    """One-sided p-value that ``current`` tends to be ``worse`` (higher or lower) than
    ``baseline``."""
    alternative = "greater" if worse == "higher" else "less"
    tied = len(set(baseline) | set(current)) < len(baseline) + len(current)
    method = stats.PermutationMethod(n_resamples=PERMUTATIONS, rng=0) if tied else "exact"
    result = stats.mannwhitneyu(current, baseline, alternative=alternative, method=method)
    p = float(result.pvalue)
    return 1.0 if math.isnan(p) else p


def coefficient_of_variation(sample: Sequence[float]) -> float | None:
    if len(sample) < 2:
        return None
    mean = statistics.fmean(sample)
    return statistics.stdev(sample) / abs(mean) if mean else None


@dataclass(frozen=True)
class Change:
    baseline_median: float
    current_median: float
    worse_by: float
    """Relative change of the medians in the bad direction (0.2 = 20 % worse; negative: better)."""
    worse_by_abs: float
    """Same, absolute, in the figure's unit."""
    p_worse: float
    p_better: float


def change(
    baseline: Sequence[float], current: Sequence[float], better: Literal["higher", "lower"]
) -> Change:
    base, cur = statistics.median(baseline), statistics.median(current)
    worse_abs = (cur - base) if better == "lower" else (base - cur)
    relative = worse_abs / abs(base) if base else (math.inf if worse_abs > 0 else 0.0)
    worse: Literal["higher", "lower"] = "higher" if better == "lower" else "lower"
    return Change(
        baseline_median=base,
        current_median=cur,
        worse_by=relative,
        worse_by_abs=worse_abs,
        p_worse=p_worse(baseline, current, worse),
        p_better=p_worse(baseline, current, better),
    )
