"""``result.json`` as one typed, frozen model: ``RunResult`` (docs/result.md documents each key).

The run writes it (``suite_runner.finish_run``, ``analyze``) and ``cli``, ``suite_runner`` and
``reports`` read it, all through this model; the schema name and the file name are defined
here only. No pyarrow: reading results must not need the history's dependencies.

Sections whose keys the code reads are typed, so a rename fails in mypy; open-ended ones (a
check's counts and examples, a flow's parameters, the scenario's hypothesis, the saturation
series and thresholds) stay ``dict[str, Any]``.

Written and read back, a result keeps its bytes' shape: a model dumps only the keys that were
set (``exclude_unset``), in the order declared here (the writers' order), and keeps keys it
does not know (``extra="allow"``, after the known ones).

Read leniently (``read_result``, ``load_result``) a result from another version of the same
major schema still loads:

- a key written before it existed is unset: its default stands for unknown (None, an empty
  list or dict, or a section whose keys are all unknown); ``saturation`` stays None;
- a key added by a newer writer is kept, untyped;
- a known key whose value does not fit its type (e.g. ``harness_bound: "yes"``) is dropped, so
  it reads as unknown, not as a crash; in a list or a dict only the item that does not fit is
  (a check or a fault without a ``name``);
- refused, with a one-line ``UserError`` naming the file: another major schema, or a required
  key (``schema``, ``broker``, ``workload.name``) missing or malformed.

Built by the writers (no lenient context), nothing is dropped: a writer whose values do not
fit the types fails at once.
"""

import json
import math
from pathlib import Path
from typing import Any, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    ValidationError,
    ValidationInfo,
    field_serializer,
    model_validator,
)
from pydantic.fields import FieldInfo

from harness import redaction
from harness.atomic import write_text_atomically
from harness.errors import UserError

SCHEMA = "brokerbench.result/1"
"""The schema written; readers accept any minor of its major (``brokerbench.result/1.x``)."""
RESULT_FILE = "result.json"
ANALYSIS_FILE = "analysis.json"
DISTRIBUTION_FILE = "distribution.json"
"""A run across machines: its ``distribution`` section, written when its load processes stop
(``harness/distributed/placed_children.py``), put into result.json by ``finish_run``."""
"""Where ``brokerbench analyze`` writes its re-check (a result of the same schema) unless told
to replace ``result.json`` (``--write``)."""

LENIENT = {"lenient": True}
"""The validation context of a read: drop what does not fit instead of failing."""

Number = int | float
"""A figure kept as written: a ``float`` field would turn a written 3 into 3.0."""


def schema_supported(schema: object) -> bool:
    return isinstance(schema, str) and (schema == SCHEMA or schema.startswith(f"{SCHEMA}."))


class Section(BaseModel):
    """A part of result.json: frozen, unknown keys kept, lenient when read (module docstring)."""

    model_config = ConfigDict(frozen=True, extra="allow", validate_by_name=True)

    @model_validator(mode="wrap")
    @classmethod
    def _lenient(
        cls, data: Any, handler: ModelWrapValidatorHandler[Any], info: ValidationInfo
    ) -> Any:
        """In a lenient read, drop what does not fit and validate again: the item of a list or
        dict that does not fit, else the key (unless required). The innermost section drops
        first: a bad ``saturation.harness_bound.value`` loses only that value."""
        lenient = isinstance(info.context, dict) and info.context.get("lenient") is True
        if not lenient or not isinstance(data, dict):
            return handler(data)
        fields = {(field.alias or name): field for name, field in cls.model_fields.items()}
        remaining = dict(data)
        while True:
            try:
                return handler(remaining)
            except ValidationError as exc:
                if not _drop_misfits(remaining, fields, exc):
                    raise

    def document(self) -> dict[str, Any]:
        """The section as written to result.json: the keys that were set, known ones first."""
        return self.model_dump(by_alias=True, exclude_unset=True)


def _drop_misfits(data: dict[str, Any], fields: dict[str, FieldInfo], exc: ValidationError) -> bool:
    """Drop from ``data`` (in place) what ``exc`` found not to fit: the items of a list or a
    dict, else whole keys that are not required. False: nothing could be dropped."""
    items: dict[str, set[int | str]] = {}
    keys: set[str] = set()
    for error in exc.errors():
        loc = error["loc"]
        key = loc[0] if loc else None
        if not isinstance(key, str) or key not in data or key not in fields:
            continue
        container = data[key]
        if len(loc) > 1 and isinstance(container, list | dict) and _holds(container, loc[1]):
            items.setdefault(key, set()).add(loc[1])
        elif not fields[key].is_required():
            keys.add(key)
    for key, dropped in items.items():
        container = data[key]
        if isinstance(container, list):
            data[key] = [item for index, item in enumerate(container) if index not in dropped]
        else:
            data[key] = {k: v for k, v in container.items() if k not in dropped}
    for key in keys:
        del data[key]
    return bool(items or keys)


def _holds(container: list[Any] | dict[str, Any], item: int | str) -> bool:
    if isinstance(container, list):
        return isinstance(item, int) and 0 <= item < len(container)
    return item in container


# --- the run ---------------------------------------------------------------------------------


class Workload(Section):
    name: str
    kind: str = "throughput"
    params: dict[str, Any] = Field(default_factory=dict)
    """The resolved parameters (each workload kind has its own)."""


class BrokerWarmup(Section):
    """What warmed the broker just before this run (``phases.broker_warmup``)."""

    reason: str | None = None
    seconds: Number | None = None
    messages: int | None = None
    settled: bool | None = None
    e2e_p50_ms: list[float | None] = Field(default_factory=list)


class Phases(Section):
    start_ns: int | None = None
    warmup_end_ns: int | None = None
    end_ns: int | None = None
    drain_end_ns: int | None = None
    drained: bool | None = None
    wall_seconds: Number | None = None
    broker_warmup: BrokerWarmup | None = None
    """None: the broker was not warmed just before this run."""


class DeclaredCapabilities(Section):
    """The driver's declared capabilities (``harness.drivers.base.Capabilities``), as values."""

    ordering_when_ordered: str | None = None
    ordering_when_unordered: str | None = None
    dead_letter: str | None = None
    exactly_once: list[str] = Field(default_factory=list)
    lag_probe: str | None = None
    fifo_deduplication: bool | None = None
    partitions: bool | None = None


class Environment(Section):
    """The fingerprint (``harness.run.fingerprint``): results are compared like with like."""

    host: str | None = None
    os: str | None = None
    machine: str | None = None
    cpus: int | None = None
    python: str | None = None
    brokerbench: str | None = None
    git_commit: str | None = None
    clients: dict[str, str] = Field(default_factory=dict)
    broker_version: str | None = None
    stack_provider: str | None = None
    test_double: bool | None = None
    """True: the target was brokerbench's in-memory test double, not a real broker."""

    def get(self, name: str) -> Any:
        """The value written under ``name`` (a key this model does not name included), or
        None."""
        return self.document().get(name)


# --- what the history says -------------------------------------------------------------------


class Counts(Section):
    sent: int | None = None
    ok: int | None = None
    failed: int | None = None
    unknown: int | None = None
    received: int | None = None
    not_sent: int | None = None


class ThroughputFigure(Section):
    start_s: int | None = None
    seconds: int | None = None
    messages: int | None = None
    bytes: int | None = None
    mean_msgs_per_s: float | None = None
    min_msgs_per_s: float | None = None
    max_msgs_per_s: float | None = None
    mean_mb_per_s: float | None = None
    min_mb_per_s: float | None = None
    max_mb_per_s: float | None = None


class Throughput(Section):
    sent: ThroughputFigure = Field(default_factory=ThroughputFigure)
    """Acknowledged sends, by ack time."""
    received: ThroughputFigure = Field(default_factory=ThroughputFigure)
    """Deliveries, by receive time."""


class LatencyStats(Section):
    """Milliseconds; empty (every value unknown) when nothing was measured."""

    p50: float | None = None
    p75: float | None = None
    p90: float | None = None
    p95: float | None = None
    p99: float | None = None
    p99_9: float | None = Field(default=None, alias="p99.9")
    p99_99: float | None = Field(default=None, alias="p99.99")
    max: float | None = None
    mean: float | None = None


class LatencyFigure(Section):
    kind: str | None = None
    count: int | None = None
    clamped: int | None = None
    saturated: int | None = None
    unit: str | None = None
    stats: LatencyStats = Field(default_factory=LatencyStats)
    hdr: str | None = None
    """The HdrHistogram (base64, microseconds), mergeable across repeats."""


class Latency(Section):
    publish: LatencyFigure = Field(default_factory=LatencyFigure)
    publish_corrected: LatencyFigure = Field(default_factory=LatencyFigure)
    """Absent (every value unknown) from results written before it existed."""
    publish_delay: LatencyFigure = Field(default_factory=LatencyFigure)
    e2e: LatencyFigure = Field(default_factory=LatencyFigure)
    e2e_uncorrected: LatencyFigure = Field(default_factory=LatencyFigure)


class Lag(Section):
    first_ns: int | None = None
    source: str | list[str] | None = None
    samples: list[tuple[float, int | None]] = Field(default_factory=list)
    """[seconds since ``first_ns``, backlog or None]."""
    max: int | None = None
    final: int | None = None

    @field_serializer("samples")
    def _as_written(self, samples: list[tuple[float, int | None]]) -> list[list[float | None]]:
        return [list(sample) for sample in samples]  # JSON's pairs, as read

    def backlog_at(self, time_ns: int | None) -> int | None:
        """The last sampled backlog at or before ``time_ns``."""
        if time_ns is None or self.first_ns is None:
            return None
        first = self.first_ns
        known = [b for s, b in self.samples if b is not None and first + s * 1e9 <= time_ns]
        return known[-1] if known else None


class Series(Section):
    """Per second over the whole run: ``t`` is seconds since ``origin_ns``."""

    origin_ns: int | None = None
    t: list[Number] = Field(default_factory=list)
    sent: list[int] = Field(default_factory=list)
    received: list[int] = Field(default_factory=list)
    e2e_p50_ms: list[float | None] = Field(default_factory=list)
    e2e_p99_ms: list[float | None] = Field(default_factory=list)


class Figures(Section):
    throughput: Throughput = Field(default_factory=Throughput)
    latency: Latency = Field(default_factory=Latency)
    lag: Lag = Field(default_factory=Lag)
    series: Series = Field(default_factory=Series)


class Check(Section):
    """One checker's verdict (``harness.checkers.verdict.Verdict``), whoever wrote it."""

    name: str
    valid: bool | None = None
    counts: dict[str, Any] = Field(default_factory=dict)
    examples: list[Any] = Field(default_factory=list)
    notes: str = ""


class Recovery(Section):
    throughput_seconds: Number | None = None
    lag_seconds: Number | None = None
    lag_notes: str | None = None


class FaultWindow(Section):
    """One fault the scenario injected and its figures (``chaos.figures.fault_figures``)."""

    name: str
    action: str | None = None
    target: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    start_ns: int | None = None
    end_ns: int | None = None
    non_durable: bool | None = None
    heal_error: str | None = None
    healed: bool | None = None
    duration_seconds: Number | None = None
    errors: int | None = None
    unknown: int | None = None
    unavailable_seconds: Number | None = None
    unavailable: dict[str, Any] = Field(default_factory=dict)
    pre_fault_msgs_per_s: Number | None = None
    recovery: Recovery = Field(default_factory=Recovery)
    anomalies: dict[str, Any] = Field(default_factory=dict)
    expected_losses: dict[str, Any] = Field(default_factory=dict)

    def details(self) -> dict[str, Any]:
        """Everything written but the name, action and target."""
        return {k: v for k, v in self.document().items() if k not in {"name", "action", "target"}}


class ScenarioSection(Section):
    """The fault scenario followed; absent from a result: the baseline, no fault."""

    name: str = "baseline"
    description: str | None = None
    hypothesis: dict[str, Any] = Field(default_factory=dict)
    faults: list[FaultWindow] = Field(default_factory=list)


class HarnessBound(Section):
    value: bool | None = Field(default=None, strict=True)
    """Only JSON true / false / null: anything else reads as unknown."""
    reasons: list[str] = Field(default_factory=list)


class MeanMax(Section):
    mean: Number | None = None
    max: Number | None = None


class RoleSummary(Section):
    processes: int | None = None
    mean_cpu_percent: Number | None = None
    max_cpu_percent: Number | None = None
    cpu_seconds: Number | None = None


class SaturationSummary(Section):
    """Over the measured window."""

    seconds: int | None = None
    machine_cpu_percent: MeanMax = Field(default_factory=MeanMax)
    roles: dict[str, RoleSummary] = Field(default_factory=dict)
    harness_cpu_seconds: Number | None = None
    late_ms_p99: Number | None = None
    late_ms_max: Number | None = None
    poll_gap_ms_max: Number | None = None
    not_sent: Number | None = None


class Saturation(Section):
    """Was the harness, not the broker, the limit? (docs/result.md, ``saturation``)."""

    cpu_count: int | None = None
    interval_s: Number | None = None
    notes: list[str] = Field(default_factory=list)
    series: dict[str, Any] = Field(default_factory=dict)
    summary: SaturationSummary = Field(default_factory=SaturationSummary)
    harness_bound: HarnessBound = Field(default_factory=HarnessBound)
    thresholds: dict[str, Any] = Field(default_factory=dict)


class Evaluation(Section):
    """What ``harness.run.result.evaluate`` computes from a stored history: the part of a
    result that ``analyze`` recomputes. ``scenario`` and ``saturation`` are None where the
    run has none (no ``scenario.json``, no ``saturation.parquet``)."""

    counts: Counts
    figures: Figures
    valid: bool | None
    checks: list[Check]
    scenario: ScenarioSection | None = None
    saturation: Saturation | None = None


# --- the document ----------------------------------------------------------------------------


class WorkerClock(Section):
    """One worker of a run across machines (``brokerbench worker``) and its clock."""

    name: str
    host: str | None = None
    offset_ns: int | None = None
    """Its clock minus the master's (NTP-style, the best of ``samples`` round trips); taken
    out of its shards' time columns before compaction."""
    uncertainty_ns: int | None = None
    samples: int | None = None
    producers: list[str] = Field(default_factory=list)
    consumers: list[str] = Field(default_factory=list)


class DistributionSection(Section):
    """A run across machines (docs/distributed.md); absent for a run on one machine."""

    workers: list[WorkerClock] = Field(default_factory=list)
    master_producers: list[str] = Field(default_factory=list)
    master_consumers: list[str] = Field(default_factory=list)
    e2e_uncertainty_ns: int | None = None
    """The most clock uncertainty an end-to-end latency carries (producer and consumer on
    different machines: the sum of both machines' uncertainties; 0 when none crosses)."""
    uncertainty_bound_ns: int | None = None
    clock_uncertain: bool | None = None
    """``e2e_uncertainty_ns`` is beyond ``uncertainty_bound_ns`` (a flag, not a failure)."""
    lost: dict[str, str] = Field(default_factory=dict)
    """Workers lost during the run, and why."""
    notes: list[str] = Field(default_factory=list)


class RunResult(Section):
    """One run's ``result.json`` (docs/result.md)."""

    schema_name: str = Field(alias="schema")
    run_id: str = ""
    """16 hex digits ('' when not known)."""
    suite: str = ""
    broker: str
    driver: str | None = None
    proxy: str | None = None
    repeat: int = 0
    workload: Workload
    semantics: str | None = None
    phases: Phases = Field(default_factory=Phases)
    ordering_scope: str | None = None
    capabilities: DeclaredCapabilities = Field(default_factory=DeclaredCapabilities)
    environment: Environment = Field(default_factory=Environment)
    counts: Counts = Field(default_factory=Counts)
    figures: Figures = Field(default_factory=Figures)
    valid: bool | None = None
    error: str | None = None
    """Set only when the run could not execute (``valid`` is then null): why, in one line."""
    checks: list[Check] = Field(default_factory=list)
    scenario: ScenarioSection = Field(default_factory=ScenarioSection)
    """Unset (and not written) for results without a scenario: the baseline."""
    saturation: Saturation | None = None
    """None: a result from before the sampler, or one whose section does not parse: unknown."""
    distribution: DistributionSection | None = None
    """A run across machines (``brokerbench worker``); None: one machine."""

    def evaluated(self, evaluation: Evaluation) -> "RunResult":
        """This result with ``evaluation``'s sections in place of its own (a section the
        evaluation does not have is kept, as ``analyze`` always did)."""
        update: dict[str, Any] = {
            "counts": evaluation.counts,
            "figures": evaluation.figures,
            "valid": evaluation.valid,
            "checks": evaluation.checks,
        }
        if evaluation.scenario is not None:
            update["scenario"] = evaluation.scenario
        if evaluation.saturation is not None:
            update["saturation"] = evaluation.saturation
        return self.model_copy(update=update)

    @property
    def harness_bound(self) -> bool | None:
        """True: the harness, not the broker, was the limit; None: not known."""
        return None if self.saturation is None else self.saturation.harness_bound.value

    @property
    def harness_bound_reasons(self) -> list[str]:
        return [] if self.saturation is None else self.saturation.harness_bound.reasons

    def value(self, path: str) -> Any:
        """The value written at a dotted path, e.g. ``figures.latency.e2e.stats.p99.9`` (a key
        may itself hold dots: the longest key that exists wins); None where absent. Sections
        come back as the dicts written."""
        node: Any = self
        parts = path.split(".")
        while parts:
            for width in range(len(parts), 0, -1):
                found, child = _child(node, ".".join(parts[:width]))
                if found:
                    node, parts = child, parts[width:]
                    break
            else:
                return None
        return _as_written(node)

    def number(self, path: str) -> float | None:
        """The finite number at ``path``; None (unknown) for anything else, NaN included (an
        older writer wrote NaN latencies when nothing was received)."""
        found = self.value(path)
        if isinstance(found, bool) or not isinstance(found, int | float):
            return None
        return float(found) if math.isfinite(found) else None


def _as_written(node: Any) -> Any:
    if isinstance(node, Section):
        return node.document()
    if isinstance(node, list | tuple):
        return [_as_written(item) for item in node]
    return node


def _child(node: Any, key: str) -> tuple[bool, Any]:
    """(found, value) of ``key`` in a section (its keys as written, set ones only) or a dict."""
    if isinstance(node, dict):
        return (True, node[key]) if key in node else (False, None)
    if not isinstance(node, Section):
        return False, None
    for name, field in type(node).model_fields.items():
        if (field.alias or name) == key and not field.exclude:
            return (name in node.model_fields_set), getattr(node, name)
    extra = node.model_extra or {}
    return (True, extra[key]) if key in extra else (False, None)


# --- the file --------------------------------------------------------------------------------

ResultT = TypeVar("ResultT", bound=RunResult)


def write_result(run_dir: Path, result: RunResult, name: str = RESULT_FILE) -> Path:
    """``run_dir/result.json`` (or ``name``), written atomically, every secret masked
    (``harness.redaction``: a flow's database URL password, a secret quoted in an error). A
    figure that is not a finite number (NaN, infinity: nothing was measured) is written as
    null, unknown; JSON has no NaN."""
    path = run_dir / name
    document = _finite(redaction.redact(result.document()))
    text = json.dumps(document, indent=2, default=str, allow_nan=False)
    write_text_atomically(path, text + "\n")
    return path


def _finite(node: Any) -> Any:
    if isinstance(node, float) and not math.isfinite(node):
        return None
    if isinstance(node, dict):
        return {key: _finite(value) for key, value in node.items()}
    if isinstance(node, list | tuple):
        return [_finite(item) for item in node]
    return node


def load_result(result_file: Path, model: type[ResultT], **located: Any) -> ResultT:
    """A result.json read leniently into ``model`` (``RunResult`` or a subclass, given its own
    fields in ``located``), secrets masked (a result written before they were). Unreadable,
    another major schema, or a required key missing: a one-line ``UserError`` naming the
    file."""
    try:
        document = json.loads(result_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{result_file}: cannot read result ({exc})") from exc
    schema = document.get("schema") if isinstance(document, dict) else None
    if not schema_supported(schema):
        raise UserError(
            f"{result_file}: schema {schema!r} is not {SCHEMA}: read it with the brokerbench "
            "version that wrote it"
        )
    try:
        return model.model_validate({**redaction.redact(document), **located}, context=LENIENT)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise UserError(f"{result_file}: {where}: {first['msg']}") from exc


def read_result(result_file: Path) -> RunResult:
    return load_result(result_file, RunResult)


def read_distribution(run_dir: Path) -> DistributionSection | None:
    """The run's ``distribution.json`` (a run across machines), else None."""
    path = run_dir / DISTRIBUTION_FILE
    if not path.exists():
        return None
    return DistributionSection.model_validate_json(path.read_text(encoding="utf-8"))
