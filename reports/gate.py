"""The regression gate: current runs against a baseline, matched by (broker, workload,
scenario); the repeats of a key are the sample.

- Correctness: any check with ``valid: false`` in a current run fails, whatever the numbers.
- Performance: a metric regresses when its median is worse by at least the policy's minimum
  effect (relative and absolute) *and* the one-sided Mann-Whitney U test says so at ``alpha``.
- Too few repeats to ever reach ``alpha``, a key missing from the current side, or a current
  run that failed (could not execute: ``error`` in its result): cannot decide. So are a
  key's metrics when any of its runs, on either side, was harness-bound
  (result.json ``saturation.harness_bound``): those figures measured the harness, not the
  broker. Environments that differ (host, CPUs, broker and client versions): cannot compare,
  unless allowed.
"""

import json
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, NamedTuple

from harness.errors import UserError
from reports.completeness import Unfinished
from reports.load import RunKey, StoredRun, by_key
from reports.policy import GatePolicy, MetricRule
from reports.stats import Change, change, coefficient_of_variation, smallest_p

Status = Literal["pass", "improved", "regression", "violation", "undecided", "noisy", "new"]
FAILING: set[Status] = {"regression", "violation"}
PASS, REGRESSION, CANNOT_DECIDE = 0, 1, 2
EPSILON = 1e-12
"""p-values are compared to alpha with this slack (1/20 is not exactly 0.05 in binary)."""


class CannotCompareError(UserError):
    """The two sides must not be compared (exit 2, one line)."""


class GateCrashedError(UserError):
    """The gate itself failed: it cannot decide (exit 2, one line), never a regression."""

    @classmethod
    def of(cls, error: Exception) -> "GateCrashedError":
        text = " ".join(str(error).split())[:300]
        return cls(
            f"gate: cannot decide: the gate crashed ({type(error).__name__}: {text}); "
            "this is a bug in brokerbench: please report it with the inputs"
        )


@dataclass(frozen=True)
class Outcome:
    """One row of the gate: a metric or a correctness check of one key."""

    key: RunKey
    what: str
    status: Status
    why: str
    baseline: str = "-"
    current: str = "-"
    change: Change | None = None


class Shown(NamedTuple):
    baseline: str
    current: str


@dataclass
class GateResult:
    outcomes: list[Outcome] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        statuses = {outcome.status for outcome in self.outcomes}
        if statuses & FAILING:
            return REGRESSION
        if "undecided" in statuses:
            return CANNOT_DECIDE
        return PASS

    @property
    def verdict(self) -> str:
        failing = [o for o in self.outcomes if o.status in FAILING]
        undecided = [o for o in self.outcomes if o.status == "undecided"]
        if failing:
            return f"FAIL: {len(failing)} regression(s) or violation(s)"
        if undecided:
            first = undecided[0]
            return f"cannot decide: {first.key.label()}: {first.what}: {first.why}" + (
                f" (and {len(undecided) - 1} more)" if len(undecided) > 1 else ""
            )
        return "pass"


def environment_differences(
    baseline: list[StoredRun], current: list[StoredRun], keys: list[str]
) -> list[str]:
    """``key: baseline value != current value`` for every fingerprint key that differs."""
    found = []
    for name in keys:
        before = {json.dumps(run.environment.get(name), sort_keys=True) for run in baseline}
        after = {json.dumps(run.environment.get(name), sort_keys=True) for run in current}
        if before != after:
            found.append(f"{name}: {' | '.join(sorted(before))} != {' | '.join(sorted(after))}")
    return found


def _compare_metric(
    key: RunKey, name: str, rule: MetricRule, *, base: list[StoredRun], cur: list[StoredRun],
    policy: GatePolicy, result: GateResult,
) -> Outcome:  # fmt: skip
    b = [v for v in (run.number(rule.path) for run in base) if v is not None]
    c = [v for v in (run.number(rule.path) for run in cur) if v is not None]
    sizes = f"{len(b)} vs {len(c)} repeats"
    if not b or not c:
        return Outcome(key, name, "undecided", f"missing ({rule.path})")
    shown = Shown(
        f"{statistics.median(b):.4g} (n={len(b)})", f"{statistics.median(c):.4g} (n={len(c)})"
    )
    if min(len(b), len(c)) < policy.min_repeats or smallest_p(len(b), len(c)) > policy.alpha:
        why = (
            f"{sizes}; needs >= {policy.min_repeats} on each side, and enough to reach "
            f"p <= {policy.alpha}"
        )
        return Outcome(key, name, "undecided", why, *shown)
    for side, sample in (("baseline", b), ("current", c)):
        cv = coefficient_of_variation(sample)
        if cv is not None and cv > policy.max_cv:
            result.warnings.append(
                f"{key.label()}: {name} is unstable in the {side}: std dev is {cv:.0%} of the "
                f"mean (> {policy.max_cv:.0%}); more repeats or a quieter machine would help"
            )
    found = change(b, c, rule.better)
    beyond = found.worse_by >= rule.min_effect and found.worse_by_abs >= rule.min_abs
    effect = (
        f"{found.worse_by:+.0%} worse" if found.worse_by >= 0 else f"{-found.worse_by:.0%} better"
    )
    limits = f"min effect {rule.min_effect:.0%}" + (
        f" and {rule.min_abs:g} absolute" if rule.min_abs else ""
    )
    if beyond and found.p_worse <= policy.alpha + EPSILON:
        why = f"{effect} ({limits}), p={found.p_worse:.3f} <= {policy.alpha}"
        return Outcome(key, name, "regression", why, *shown, found)
    if beyond:
        why = f"{effect} but p={found.p_worse:.3f} > {policy.alpha}: too noisy to decide"
        status: Status = "undecided" if policy.noisy == "undecided" else "noisy"
        if status == "noisy":
            result.warnings.append(f"{key.label()}: {name}: {why}")
        return Outcome(key, name, status, why, *shown, found)
    better_beyond = -found.worse_by >= rule.min_effect and -found.worse_by_abs >= rule.min_abs
    if better_beyond and found.p_better <= policy.alpha + EPSILON:
        return Outcome(key, name, "improved", f"{effect}, p={found.p_better:.3f}", *shown, found)
    return Outcome(key, name, "pass", f"{effect} (within {limits})", *shown, found)


def _correctness(key: RunKey, current: list[StoredRun]) -> list[Outcome]:
    outcomes = []
    names = list(dict.fromkeys(check.name for run in current for check in run.checks))
    for name in names:
        failed = [
            (run, check)
            for run in current
            for check in run.checks
            if check.name == name and check.valid is False
        ]
        unknown = [
            run
            for run in current
            for check in run.checks
            if check.name == name and check.valid is None
        ]
        if failed:
            run, check = failed[0]
            why = f"valid false in {len(failed)} run(s), e.g. r{run.repeat}: {check.notes}"
            outcomes.append(Outcome(key, f"check {name}", "violation", why))
        else:
            note = (
                f"unknown in {len(unknown)} run(s)"
                if unknown
                else f"valid in {len(current)} run(s)"
            )
            outcomes.append(Outcome(key, f"check {name}", "pass", note))
    return outcomes


def _harness_bound(
    key: RunKey, baseline: list[StoredRun], current: list[StoredRun], result: GateResult
) -> str:
    """'' when no run of the key was harness-bound; else which were ('baseline r1, current
    r0'), each with a warning giving its reasons."""
    bound = [
        (side, run)
        for side, runs in (("baseline", baseline), ("current", current))
        for run in runs
        if run.harness_bound
    ]
    for side, run in bound:
        reasons = "; ".join(run.harness_bound_reasons) or "no reason recorded"
        result.warnings.append(
            f"{key.label()}: {side} r{run.repeat} was harness-bound ({run.path}): {reasons}"
        )
    return ", ".join(f"{side} r{run.repeat}" for side, run in bound)


def run_gate(
    baseline: list[StoredRun],
    current: list[StoredRun],
    policy: GatePolicy,
    allow_env_mismatch: bool = False,
    unfinished: Sequence[Unfinished] = (),
) -> GateResult:
    """Compare; raises CannotCompareError when nothing matches or environments differ.
    ``unfinished``: the current side's runs that did not finish (``reports.completeness``;
    failed runs with a result are found in ``current`` too): each makes its key undecided."""
    base_keys, cur_keys = by_key(baseline), by_key(current)
    shared = [key for key in base_keys if key in cur_keys]
    if not shared:
        raise CannotCompareError(
            "cannot compare: no (broker, workload, scenario) is in both the baseline and the "
            "current runs"
        )
    result = GateResult()
    for key in shared:
        differences = environment_differences(base_keys[key], cur_keys[key], policy.environment)
        if differences and not allow_env_mismatch:
            raise CannotCompareError(
                f"cannot compare {key.label()}: environments differ ({'; '.join(differences)}); "
                "pass --allow-env-mismatch to compare anyway"
            )
        for difference in differences:
            result.warnings.append(f"{key.label()}: environment differs: {difference}")
    for key, runs in cur_keys.items():
        result.outcomes.extend(_correctness(key, runs))
        if key not in base_keys:
            result.outcomes.append(Outcome(key, "baseline", "new", "not in the baseline"))
            continue
        bound = _harness_bound(key, base_keys[key], runs, result)
        for name, rule in policy.metrics.items():
            compared = _compare_metric(
                key, name, rule, base=base_keys[key], cur=runs, policy=policy,
                result=GateResult() if bound else result,
            )  # fmt: skip
            if bound:
                why = f"harness-bound run(s) {bound}: not the broker's figures ({compared.status} "
                why += "otherwise)"
                compared = Outcome(key, name, "undecided", why, compared.baseline, compared.current)
            result.outcomes.append(compared)
    for key in base_keys:
        if key not in cur_keys:
            why = "in the baseline but not in the current runs"
            result.outcomes.append(Outcome(key, "current", "undecided", why))
    result.outcomes.extend(_unfinished(current, unfinished))
    return result


def _unfinished(current: list[StoredRun], unfinished: Sequence[Unfinished]) -> list[Outcome]:
    """An undecided outcome per current run that did not finish: failed (its result has an
    ``error``), interrupted, running or missing."""
    outcomes = [
        Outcome(run.key, "run", "undecided", f"r{run.repeat} failed, it could not execute: "
                f"{run.error}")
        for run in current
        if run.error is not None
    ]  # fmt: skip
    counted = {run.path for run in current if run.error is not None}
    for run in unfinished:
        if run.path not in counted:
            where = run.key or RunKey(run.label, "-", "-")
            why = f"{run.label} is {run.state}: {run.why}"
            outcomes.append(Outcome(where, "run", "undecided", why))
    return outcomes
