"""What ``result.json`` says about a run's history (the model, its schema and its file are
``harness.run.result_model``; docs/result.md documents them).

``analyze`` rebuilds everything below ``figures`` and ``checks`` from the stored history, so a
result can be re-checked, and re-checked with newer checkers, without brokers.
"""

from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import pyarrow as pa  # type: ignore[import-untyped]

from chaos.figures import read_scenario, scenario_section
from chaos.verdicts import adjust_for_faults
from harness.analysis import evaluation as bounded
from harness.checkers import HistoryIndex, all_valid, check_all, derive_backlog
from harness.checkers.verdict import Verdict
from harness.collectors.lag import LAG_SCHEMA
from harness.collectors.saturation import SATURATION_FILE, read_samples
from harness.drivers.base import Capabilities, OrderingScope
from harness.history.store import History, load
from harness.history.trusted import read_parquet
from harness.run.figures import (
    Window,
    counts,
    latency_figures,
    not_sent,
    throughput_figures,
    time_series,
)
from harness.run.result_model import (
    Check,
    Counts,
    DeclaredCapabilities,
    Evaluation,
    Figures,
    Lag,
    Saturation,
    ScenarioSection,
)
from harness.run.saturation import saturation_section

LAG_FILE = "lag.parquet"


def declared_capabilities(capabilities: Capabilities) -> DeclaredCapabilities:
    raw = asdict(capabilities)
    raw["exactly_once"] = sorted(capabilities.exactly_once)
    return DeclaredCapabilities.model_validate(raw)


def lag_series(lag: pa.Table) -> Lag:
    """The sampled backlog as [seconds since the first sample, messages or null] pairs."""
    times = lag["time_ns"].to_pylist()
    backlogs = lag["backlog"].to_pylist()
    sources = set(lag["source"].to_pylist())
    first = times[0] if times else 0
    known = [b for b in backlogs if b is not None]
    return Lag(
        first_ns=first,
        source=sources.pop() if len(sources) == 1 else sorted(sources),
        samples=[(round((t - first) / 1e9, 3), b) for t, b in zip(times, backlogs, strict=True)],
        max=max(known) if known else None,
        final=known[-1] if known else None,
    )


def evaluate(
    run_dir: Path,
    ordering: OrderingScope,
    window: Window,
    message_size: int,
    broker_lag: bool,
    *,
    flow_checks: Callable[[History], list[Verdict]] | None = None,
    exactly_once: bool = False,
) -> Evaluation:
    """Figures and verdicts from the run's stored history (and lag samples); a business
    flow's invariant checks (``flow_checks``) join the log-level ones. Stages: the checkers,
    the flow's checks, the scenario's per-fault figures, then the verdicts adjusted for what
    those faults explain (``chaos.verdicts.adjust_for_faults``)."""
    lag_path = run_dir / LAG_FILE
    broker_samples = (
        read_parquet(lag_path, LAG_SCHEMA, versioned=False)
        if broker_lag and lag_path.exists()
        else None
    )
    if bounded.applies(
        run_dir,
        has_flow_checks=flow_checks is not None,
        has_scenario=read_scenario(run_dir) is not None,
    ):
        found = bounded.evaluate_in_ranges(
            run_dir, ordering, window, message_size, broker_samples, exactly_once=exactly_once
        )
        return _evaluation(
            run_dir,
            window,
            found.verdicts,
            {**found.figures, "lag": lag_series(found.lag)},
            found.counts,
            not_sent(found.events),
            None,
        )
    history: History = load(run_dir)
    if broker_samples is not None:
        lag = broker_samples
    else:
        lag = derive_backlog(HistoryIndex(history.sends, history.receives))
    verdicts = check_all(
        history.sends,
        history.receives,
        history.events,
        ordering,
        lag=lag,
        exactly_once=exactly_once,
    )
    if flow_checks is not None:
        verdicts += flow_checks(history)
    scenario = scenario_section(run_dir, history, lag, ordering)
    if scenario is not None:  # the fault-aware verdict stage (chaos/verdicts.py)
        verdicts = adjust_for_faults(verdicts, history, scenario["faults"])
    figures = {
        "throughput": throughput_figures(history, window, message_size),
        "latency": latency_figures(history, window),
        "lag": lag_series(lag),
        "series": time_series(history),
    }
    return _evaluation(
        run_dir, window, verdicts, figures, counts(history), not_sent(history.events), scenario
    )


def _evaluation(  # noqa: PLR0917 - the parts both paths of evaluate find
    run_dir: Path,
    window: Window,
    verdicts: list[Verdict],
    found_figures: dict[str, object],
    found_counts: dict[str, int],
    unsent: int,
    scenario: dict[str, object] | None,
) -> Evaluation:
    figures = Figures.model_validate(found_figures)
    saturation_path = run_dir / SATURATION_FILE
    saturation = (
        saturation_section(
            read_samples(saturation_path),
            window,
            figures.series.origin_ns,
            figures.latency.e2e.stats.p99,
            unsent,
        )
        if saturation_path.exists()
        else None
    )
    return Evaluation(
        counts=Counts.model_validate(found_counts),
        figures=figures,
        valid=all_valid(verdicts),
        checks=[Check.model_validate(asdict(verdict)) for verdict in verdicts],
        scenario=None if scenario is None else ScenarioSection.model_validate(scenario),
        saturation=None if saturation is None else Saturation.model_validate(saturation),
    )
