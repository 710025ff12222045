"""``brokerbench run SUITE.yaml``: broker x workload x repeat, one run directory each."""

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq  # type: ignore[import-untyped]

from harness.atomic import write_text_atomically
from harness.checkers.verdict import Verdict
from harness.drivers.base import LagProbe
from harness.errors import UserError
from harness.history.store import History, compact
from harness.run.figures import Window
from harness.run.fingerprint import fingerprint
from harness.run.result import LAG_FILE, SCHEMA, capabilities_dict, evaluate, write_result
from harness.run.search import Probe, SearchConfig, SearchResult, search_max_rate
from harness.run.single import Progress, RunOutcome, RunRequest, execute
from harness.settings import Settings
from harness.stack.services import local_broker_version
from harness.suite import Suite, load_suite
from harness.yamlconfig import validate_part
from workloads.flows.api import Flow
from workloads.flows.evaluate import flow_verdicts
from workloads.flows.registry import flow_class
from workloads.throughput import ThroughputConfig

WORKLOAD_GROUP = "brokerbench.workloads"


@dataclass(frozen=True)
class PlannedRun:
    broker: str
    workload: str
    repeat: int
    config: ThroughputConfig
    run_dir: Path
    kind: str = "throughput"

    @property
    def flow(self) -> type[Flow] | None:
        return None if self.kind == "throughput" else flow_class(self.kind)


def _workload_model(kind: str) -> type[ThroughputConfig]:
    """The config model of a workload kind: the raw-throughput config, or a flow's."""
    for entry in entry_points(group=WORKLOAD_GROUP, name=kind):
        loaded = entry.load()
        model: type[ThroughputConfig] = (
            loaded.config_model if isinstance(loaded, type) and issubclass(loaded, Flow) else loaded
        )
        return model
    known = ", ".join(sorted(e.name for e in entry_points(group=WORKLOAD_GROUP)))
    raise UserError(f"unknown workload kind {kind!r}: choose from {known}")


def plan_suite(path: Path, settings: Settings, output: Path) -> tuple[Suite, list[PlannedRun]]:
    """Validate the suite (file, line and field in every error) before any broker I/O."""
    suite = load_suite(path, settings)
    configs = {
        entry.name: validate_part(
            path, ("workloads", index, "params"), entry.params, _workload_model(entry.kind)
        )
        for index, entry in enumerate(suite.workloads)
    }
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    root = output / f"{suite.name}-{stamp}"
    runs = [
        PlannedRun(
            broker,
            entry.name,
            repeat,
            configs[entry.name],
            root / broker / entry.name / f"r{repeat}",
            kind=entry.kind,
        )
        for entry in suite.workloads
        for broker in suite.brokers
        for repeat in range(suite.repeats)
    ]
    return suite, runs


def flow_checks(
    kind: str, params: dict[str, Any], run_dir: Path, run_id: int
) -> Callable[[History], list[Verdict]] | None:
    """The flow's invariant checks for ``evaluate`` (None for raw throughput)."""
    if kind == "throughput":
        return None

    def check(history: History) -> list[Verdict]:
        return flow_verdicts(kind, params, run_dir, run_id, history)

    return check


def finish_run(
    suite: Suite,
    planned: PlannedRun,
    outcome: RunOutcome,
    wall_seconds: float,
    suite_settings: Settings,
) -> dict[str, Any]:
    """Compact the history, check it and write result.json."""
    run_dir = planned.run_dir
    capabilities = outcome.driver.capabilities
    semantics = getattr(planned.config, "semantics", "at-least-once")
    broker_lag = capabilities.lag_probe is not LagProbe.DERIVED
    if broker_lag:
        pq.write_table(outcome.lag.table(), run_dir / LAG_FILE)
    compact(run_dir)
    ordering = capabilities.ordering(planned.config.ordered)
    window = Window(outcome.warmup_end_ns, outcome.end_ns)
    result = {
        "schema": SCHEMA,
        "run_id": f"{outcome.run_id:016x}",
        "suite": suite.name,
        "broker": planned.broker,
        "driver": outcome.driver.name,
        "proxy": suite.proxy,
        "repeat": planned.repeat,
        "workload": {
            "name": planned.workload,
            "kind": planned.kind,
            "params": planned.config.model_dump(mode="json"),
        },
        "semantics": semantics,
        "phases": {
            "start_ns": outcome.start_ns,
            "warmup_end_ns": outcome.warmup_end_ns,
            "end_ns": outcome.end_ns,
            "drain_end_ns": outcome.drain_end_ns,
            "drained": outcome.drained,
            "wall_seconds": round(wall_seconds, 1),
        },
        "ordering_scope": ordering.value,
        "capabilities": capabilities_dict(capabilities),
        "environment": fingerprint(
            broker_version=None
            if planned.broker in suite_settings.targets
            else local_broker_version(planned.broker, suite_settings)
        ),
        **evaluate(
            run_dir,
            ordering,
            window,
            planned.config.message_size,
            broker_lag,
            flow_checks=flow_checks(
                planned.kind, planned.config.model_dump(mode="json"), run_dir, outcome.run_id
            ),
            exactly_once=semantics == "exactly-once",
        ),
    }
    write_result(run_dir, result)
    return result


def run_suite(
    path: Path,
    settings: Settings,
    output: Path,
    *,
    metrics_port: int | None = None,
    on_progress: Callable[[PlannedRun, Progress], None],
    on_result: Callable[[PlannedRun, dict[str, Any]], None],
) -> list[PlannedRun]:
    suite, runs = plan_suite(path, settings, output)
    for planned in runs:

        def run_once(
            config: ThroughputConfig, run_dir: Path, planned: PlannedRun = planned
        ) -> dict[str, Any]:
            started = time.monotonic()
            request = RunRequest(
                suite=suite.name,
                workload=planned.workload,
                target=planned.broker,
                repeat=planned.repeat,
                config=config,
                settings=settings,
                proxy=suite.proxy,
                run_dir=run_dir,
                metrics_port=metrics_port,
                flow=planned.flow,
            )
            outcome = execute(request, _bind(on_progress, planned))
            probe = replace(planned, config=config, run_dir=run_dir)
            result = finish_run(suite, probe, outcome, time.monotonic() - started, settings)
            on_result(probe, result)
            return result

        if planned.config.search is None:
            run_once(planned.config, planned.run_dir)
        else:
            search_rate(planned, planned.config.search, run_once)
    return runs


def search_rate(
    planned: PlannedRun,
    search: SearchConfig,
    run_once: Callable[[ThroughputConfig, Path], dict[str, Any]],
) -> SearchResult:
    """Probe rates (one run folder each, ``rate-<N>``) and write ``search.json``."""

    def probe(rate: float) -> Probe:
        config = planned.config.model_copy(update={"rate": rate, "search": None})
        result = run_once(config, planned.run_dir / f"rate-{rate:.0f}")
        return Probe(
            rate,
            result["figures"]["throughput"]["sent"]["mean_msgs_per_s"] or 0.0,
            _backlog_at(result["figures"]["lag"], result["phases"]["end_ns"]),
        )

    found = search_max_rate(search, probe)
    write_text_atomically(
        planned.run_dir / "search.json", json.dumps(asdict(found), indent=2) + "\n"
    )
    return found


def _backlog_at(lag: dict[str, Any], time_ns: int) -> int | None:
    """The last sampled backlog at or before ``time_ns``."""
    known = [
        backlog
        for seconds, backlog in lag["samples"]
        if backlog is not None and lag["first_ns"] + seconds * 1e9 <= time_ns
    ]
    return known[-1] if known else None


def _bind(
    on_progress: Callable[[PlannedRun, Progress], None], planned: PlannedRun
) -> Callable[[Progress], None]:
    def report(progress: Progress) -> None:
        on_progress(planned, progress)

    return report
