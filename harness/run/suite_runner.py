"""``brokerbench run SUITE.yaml``: broker x workload x repeat, one run directory each."""

import json
import secrets
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq  # type: ignore[import-untyped]

from chaos.scenario import Scenario, load_scenario
from harness.atomic import write_text_atomically
from harness.checkers.verdict import Verdict
from harness.distributed.cluster import Cluster
from harness.distributed.placed_children import cluster_children
from harness.distributed.refusals import refuse_undistributable
from harness.drivers.base import LagProbe, is_test_double
from harness.drivers.targets import is_local_broker, target_driver
from harness.errors import UserError
from harness.flows.api import Flow, FlowConfig
from harness.flows.evaluate import flow_verdicts
from harness.flows.fan_out import resolve_fan_out
from harness.flows.registry import flow_class, workload_model
from harness.history.store import History, compact
from harness.load.throughput import SearchConfig, ThroughputConfig
from harness.run.broker_warmup import WarmupProgress, shape_for, warm_up
from harness.run.children import Children
from harness.run.figures import Window
from harness.run.fingerprint import fingerprint
from harness.run.lifecycle import RunRecordedAsFailedError, identity, run_lifecycle
from harness.run.result import LAG_FILE, declared_capabilities, evaluate
from harness.run.result_model import (
    SCHEMA,
    BrokerWarmup,
    Environment,
    Phases,
    RunResult,
    Workload,
    read_distribution,
    write_result,
)
from harness.run.search import Probe, SearchResult, search_max_rate
from harness.run.single import Progress, RunOutcome, RunRequest, execute
from harness.run.suite_plan import PlannedEntry, SuitePlan, write_plan
from harness.run.topology import consumer_processes
from harness.run.warmup_policy import Reason, WarmupTracker, local_identity
from harness.settings import Settings
from harness.stack.services import local_broker_version
from harness.suite import Suite, load_suite
from harness.yamlconfig import validate_part, where


@dataclass(frozen=True)
class PlannedRun:
    broker: str
    workload: str
    repeat: int
    config: ThroughputConfig
    run_dir: Path
    kind: str = "throughput"
    scenario: Scenario | None = None
    """None: the baseline (no fault)."""

    @property
    def flow(self) -> type[Flow] | None:
        return None if self.kind == "throughput" else flow_class(self.kind)


def plan_suite(path: Path, settings: Settings, output: Path) -> tuple[Suite, list[PlannedRun]]:
    """Validate the suite (file, line and field in every error) before any broker I/O."""
    suite = load_suite(path, settings)
    configs = {
        entry.name: validate_part(
            path, ("workloads", index, "params"), entry.params, workload_model(entry.kind)
        )
        for index, entry in enumerate(suite.workloads)
    }
    scenarios = _load_scenarios(path, suite, configs, settings)
    refuse_undistributable(path, suite, configs, scenarios, settings)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    root = output / f"{suite.name}-{stamp}"
    runs = [
        PlannedRun(
            broker,
            entry.name,
            repeat,
            _for_broker(path, index, entry.kind, configs[entry.name], broker, settings),
            root / broker / entry.name / scenario.name / f"r{repeat}",
            kind=entry.kind,
            scenario=scenario,
        )
        for index, entry in enumerate(suite.workloads)
        for broker in suite.brokers
        for scenario in scenarios
        for repeat in range(suite.repeats)
    ]
    return suite, runs


def _for_broker(  # noqa: PLR0917 - one call site
    path: Path, index: int, kind: str, config: ThroughputConfig, broker: str, settings: Settings
) -> ThroughputConfig:
    """The workload's config as it runs on ``broker``: a flow's fan-out decided for it
    (``harness.flows.fan_out``; a refusal names the workload's place in the suite)."""
    if kind == "throughput" or not isinstance(config, FlowConfig):
        return config
    here = where(path, ("workloads", index))
    return resolve_fan_out(config, flow_class(kind), broker, settings, where=here)


def flow_checks(
    kind: str, params: dict[str, Any], run_dir: Path, run_id: int
) -> Callable[[History], list[Verdict]] | None:
    """The flow's invariant checks for ``evaluate`` (None for raw throughput)."""
    if kind == "throughput":
        return None

    def check(history: History) -> list[Verdict]:
        return flow_verdicts(kind, params, run_dir, run_id, history)

    return check


NETWORK_ACTIONS_MODULE = "chaos.faults.network"


def _load_scenarios(
    path: Path, suite: Suite, configs: dict[str, ThroughputConfig], settings: Settings
) -> list[Scenario]:
    """Each scenario, checked against the suite: its faults fit in every workload's schedule,
    network faults have a proxy path to act on, killed load processes exist."""
    from chaos.faults.registry import fault_class

    scenarios: list[Scenario] = []
    for index, reference in enumerate(suite.scenarios):
        scenario = load_scenario(reference, path.parent)
        here = where(path, ("scenarios", index))
        if any(s.name == scenario.name for s in scenarios):
            raise UserError(f"{here}: scenarios: two scenarios are named {scenario.name!r}")
        for name, config in configs.items():
            seconds = sum(step.seconds for step in config.load_steps())
            if config.search is None and scenario.end_seconds > seconds:
                raise UserError(
                    f"{here}: scenario {scenario.name!r} has faults until "
                    f"{scenario.end_seconds:g} s, after workload {name!r}'s {seconds:g} s load: "
                    "lengthen the load or move the faults"
                )
            kind = next(entry.kind for entry in suite.workloads if entry.name == name)
            flow = None if kind == "throughput" else flow_class(kind)
            for window in scenario.windows():
                _check_target(here, scenario, window.spec.action, window.target, config, flow)
        broker_faults = [
            w.spec.action
            for w in scenario.windows()
            if fault_class(w.spec.action).default_target == "broker" and w.target == "broker"
        ]
        external = [b for b in suite.brokers if not is_local_broker(b, settings)]
        if broker_faults and external:
            raise UserError(
                f"{here}: scenario {scenario.name!r} has broker faults ({broker_faults[0]}) but "
                f"{external[0]!r} is an external target (no proxy, no process to signal): run "
                "it with scenarios that only kill load processes, or in another suite"
            )
        _refuse_node_faults_without_a_cluster(here, scenario, suite, settings)
        networked = [
            f.action
            for f in scenario.faults
            if fault_class(f.action).__module__ == NETWORK_ACTIONS_MODULE
        ]
        if networked and suite.proxy == "none":
            raise UserError(
                f"{here}: scenario {scenario.name!r} has network faults ({networked[0]}) but "
                "the suite's proxy is none: set proxy: all (or producers / consumers)"
            )
        scenarios.append(scenario)
    return scenarios


def _refuse_node_faults_without_a_cluster(
    here: str, scenario: Scenario, suite: Suite, settings: Settings
) -> None:
    """Node faults act on a node of the local Kafka cluster: refused for any other broker."""
    from chaos.faults.registry import fault_class

    node_faults = [f.action for f in scenario.faults if fault_class(f.action).cluster_only]
    if not node_faults:
        return
    cluster = settings.stack.kafka.is_cluster
    for broker in suite.brokers:
        if broker == "kafka" and is_local_broker(broker, settings) and cluster:
            continue
        why = (
            "the local Kafka is one node: set stack.kafka.nodes: 3 in brokerbench.yaml"
            if broker == "kafka"
            else f"{broker!r} is not the local Kafka cluster (one process, no nodes)"
        )
        raise UserError(
            f"{here}: scenario {scenario.name!r} has node faults ({node_faults[0]}) but {why}"
        )


def _check_target(  # noqa: PLR0917 - one call site
    here: str,
    scenario: Scenario,
    action: str,
    target: str,
    config: ThroughputConfig,
    flow: type[Flow] | None,
) -> None:
    slots = {
        "consumer-kill": [f"consumer-{i}" for i in range(consumer_processes(config, flow))],
        "producer-crash": [f"producer-{i}" for i in range(config.processes)],
    }.get(action)
    if slots is not None and target not in slots:
        raise UserError(
            f"{here}: scenario {scenario.name!r}: {action} target {target!r} does not exist "
            f"in this workload: choose from {', '.join(slots)}"
        )


def finish_run(
    suite: Suite,
    planned: PlannedRun,
    outcome: RunOutcome,
    wall_seconds: float,
    suite_settings: Settings,
    *,
    broker_warmup: BrokerWarmup | None = None,
) -> RunResult:
    """Compact the history, check it and write result.json. ``broker_warmup``: what warmed
    the broker before this run (``phases.broker_warmup``), None if nothing did."""
    run_dir = planned.run_dir
    capabilities = outcome.driver.capabilities
    semantics = getattr(planned.config, "semantics", "at-least-once")
    broker_lag = capabilities.lag_probe is not LagProbe.DERIVED
    if broker_lag:
        pq.write_table(outcome.lag.table(), run_dir / LAG_FILE)
    compact(run_dir)
    ordering = capabilities.ordering(planned.config.ordered)
    window = Window(outcome.warmup_end_ns, outcome.end_ns)
    params = planned.config.model_dump(mode="json")
    result = RunResult(
        schema_name=SCHEMA,
        run_id=f"{outcome.run_id:016x}",
        suite=suite.name,
        broker=planned.broker,
        driver=outcome.driver.name,
        proxy=suite.proxy,
        repeat=planned.repeat,
        workload=Workload(name=planned.workload, kind=planned.kind, params=params),
        semantics=semantics,
        phases=Phases(
            start_ns=outcome.start_ns,
            warmup_end_ns=outcome.warmup_end_ns,
            end_ns=outcome.end_ns,
            drain_end_ns=outcome.drain_end_ns,
            drained=outcome.drained,
            wall_seconds=round(wall_seconds, 1),
            broker_warmup=broker_warmup,
        ),
        ordering_scope=ordering.value,
        capabilities=declared_capabilities(capabilities),
        environment=Environment.model_validate(
            fingerprint(
                broker_version=None
                if planned.broker in suite_settings.targets
                else local_broker_version(planned.broker, suite_settings),
                test_double=is_test_double(outcome.driver),
            )
        ),
    ).evaluated(
        evaluate(
            run_dir,
            ordering,
            window,
            planned.config.message_size,
            broker_lag,
            flow_checks=flow_checks(planned.kind, params, run_dir, outcome.run_id),
            exactly_once=semantics == "exactly-once",
        )
    )
    distribution = read_distribution(run_dir)
    if distribution is not None:
        result = result.model_copy(update={"distribution": distribution})
    write_result(run_dir, result)
    return result


def run_suite(
    path: Path,
    settings: Settings,
    output: Path,
    *,
    metrics_port: int | None = None,
    on_progress: Callable[[PlannedRun, Progress], None],
    on_result: Callable[[PlannedRun, RunResult], None],
    broker_warmup: bool = True,
    on_warmup: Callable[[PlannedRun, Reason, WarmupProgress], None] = lambda *_: None,
    on_failure: Callable[[PlannedRun, str], None] = lambda *_: None,
    fail_fast: bool = False,
    cluster: Cluster | None = None,
) -> list[PlannedRun]:
    """Every planned run in order (the plan is written first: ``suite-plan.json``).
    ``broker_warmup=False`` turns the suite's broker warm-up off (``--no-broker-warmup``);
    ``on_warmup`` hears of a warm-up's progress. A run that cannot execute is recorded as
    failed (``harness/run/lifecycle.py``), ``on_failure`` hears why, and the suite goes on,
    unless ``fail_fast``. ``cluster``: the master and workers of a suite with a
    ``distribution:`` (``harness/distributed/``), where the load processes are placed."""
    suite, runs = plan_suite(path, settings, output)
    if runs:
        write_plan(runs[0].run_dir.parents[3], suite_plan(suite, runs))
    warmups = (
        WarmupTracker(lambda target: local_identity(target, settings))
        if broker_warmup and suite.broker_warmup.enabled
        else None
    )
    for planned in runs:

        def run_once(
            config: ThroughputConfig, run_dir: Path, planned: PlannedRun = planned
        ) -> RunResult:
            run_id = secrets.randbits(63)
            known = _identity(suite, settings, planned, config, run_id)
            with run_lifecycle(run_dir, known):
                warmed = None
                if warmups is not None:
                    warmed = _warm_up_if_needed(
                        suite, settings, warmups, planned, config, on_warmup
                    )
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
                    scenario=planned.scenario,
                    run_id=run_id,
                    make_children=Children if cluster is None else cluster_children(cluster),
                )
                outcome = execute(request, _bind(on_progress, planned))
                probe = replace(planned, config=config, run_dir=run_dir)
                if warmups is not None:
                    warmups.ran(planned.broker, planned.scenario)
                result = finish_run(
                    suite, probe, outcome, time.monotonic() - started, settings,
                    broker_warmup=warmed,
                )  # fmt: skip
            on_result(probe, result)
            return result

        try:
            if planned.config.search is None:
                run_once(planned.config, planned.run_dir)
            else:
                search_rate(planned, planned.config.search, run_once)
        except RunRecordedAsFailedError as failed:
            on_failure(replace(planned, run_dir=failed.run_dir), failed.error)
            if fail_fast:
                break
    return runs


def suite_plan(suite: Suite, runs: list[PlannedRun]) -> SuitePlan:
    """What the suite sets out to run, run folders relative to its output folder."""
    root = runs[0].run_dir.parents[3]
    return SuitePlan(
        suite=suite.name,
        runs=[
            PlannedEntry(
                broker=run.broker,
                workload=run.workload,
                scenario=run.scenario.name if run.scenario else "baseline",
                repeat=run.repeat,
                run_dir=run.run_dir.relative_to(root).as_posix(),
                search=run.config.search is not None,
            )
            for run in runs
        ],
    )


def _identity(
    suite: Suite, settings: Settings, planned: PlannedRun, config: ThroughputConfig, run_id: int
) -> dict[str, Any]:
    return identity(
        suite.name,
        planned.broker,
        target_driver(planned.broker, settings),
        suite.proxy,
        planned.repeat,
        {"name": planned.workload, "kind": planned.kind, "params": config.model_dump(mode="json")},
        getattr(config, "semantics", "at-least-once"),
        config.ordered,
        planned.scenario.name if planned.scenario else "baseline",
        run_id,
    )


def _warm_up_if_needed(  # noqa: PLR0917 - one call site
    suite: Suite,
    settings: Settings,
    warmups: WarmupTracker,
    planned: PlannedRun,
    config: ThroughputConfig,
    on_warmup: Callable[[PlannedRun, Reason, WarmupProgress], None],
) -> BrokerWarmup | None:
    """Warm ``planned.broker`` up if it has not been since it (re)started; what the warm-up did
    (result.json ``phases.broker_warmup``) or None."""
    reason = warmups.reason(planned.broker)
    if reason is None or is_test_double(target_driver(planned.broker, settings)):
        return None  # a test double has no JIT to warm
    on_warmup(planned, reason, WarmupProgress(0.0, 0, 0, None))
    outcome = warm_up(
        planned.broker,
        settings,
        shape_for(config, suite.broker_warmup.min_messages, suite.broker_warmup.max_seconds),
        producers_via_proxy=suite.proxy in ("all", "producers"),
        consumers_via_proxy=suite.proxy in ("all", "consumers"),
        progress=lambda progress: on_warmup(planned, reason, progress),
    )
    warmups.warmed(planned.broker)
    return BrokerWarmup(
        reason=reason,
        seconds=outcome.seconds,
        messages=outcome.received,
        settled=outcome.settled,
        e2e_p50_ms=[None if p50 is None else round(p50, 3) for p50 in outcome.window_p50_ms],
    )


def search_rate(
    planned: PlannedRun,
    search: SearchConfig,
    run_once: Callable[[ThroughputConfig, Path], RunResult],
) -> SearchResult:
    """Probe rates (one run folder each, ``rate-<N>``) and write ``search.json``."""

    def probe(rate: float) -> Probe:
        config = planned.config.model_copy(update={"rate": rate, "search": None})
        result = run_once(config, planned.run_dir / f"rate-{rate:.0f}")
        return Probe(
            rate,
            result.figures.throughput.sent.mean_msgs_per_s or 0.0,
            result.figures.lag.backlog_at(result.phases.end_ns),
            harness_bound=result.harness_bound,
            not_sent=result.counts.not_sent or 0,
        )

    found = search_max_rate(search, probe)
    write_text_atomically(
        planned.run_dir / "search.json", json.dumps(asdict(found), indent=2) + "\n"
    )
    return found


def _bind(
    on_progress: Callable[[PlannedRun, Progress], None], planned: PlannedRun
) -> Callable[[Progress], None]:
    def report(progress: Progress) -> None:
        on_progress(planned, progress)

    return report
