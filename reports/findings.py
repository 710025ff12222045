"""What failed, first: every failed or unknown check of every run, with its counts, a few of
its example messages and where each fell relative to the run's fault windows. The HTML and
Markdown reports open with these (their "Findings" section).

A check's ``examples`` are open-ended records (docs/result.md): the log checks write a send's
or a delivery's identity (``producer_id``, ``key_id``, ``seq``), its position (``partition``,
``offset``, ``message_id``) and times (``*_ns``, epoch nanoseconds), sometimes nested (a
duplicate's ``first_deliveries``); a flow's checks write their own ids (``order_id``,
``command_id``). So an example is read generically: times are the integer ``*_ns`` values that
look like epoch times, positions the partition / offset / message-id fields, and its identity
every other plain value."""

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from harness.run.result_model import Check, FaultWindow
from reports.load import StoredRun

EXAMPLES_SHOWN = 3
"""Example messages shown per finding (a check keeps up to 5 per kind)."""
EPOCH_NS = 10**17
"""Below this an ``*_ns`` value is a duration, not a time (10**17 ns is in 1973)."""
POSITION_FIELDS = ("partition", "offset", "message_id")
NOT_IDENTITY = {"kind", "delivery_attempt", "disposition", *POSITION_FIELDS}
NO_FAULT = "no fault"
TIME_UNKNOWN = "time unknown"


@dataclass(frozen=True)
class ExampleMessage:
    """One offending record of a check, said in a line."""

    kind: str
    """The anomaly's kind (``lost-write``, ``duplicate-publish`` ...); '' when not given."""
    identity: str
    """``key_id=1 seq=10 producer_id=0 ...``: its plain fields but positions and times."""
    positions: list[str]
    """``partition 1 offset 47``, ``message id ab12``: each delivery's or send's position."""
    seconds: list[float]
    """Its times, in seconds since the run's start (as the charts' x axis)."""
    window: str
    """Where its times fell: ``inside link-down (3.0-6.0 s)``, ``after link-down
    (3.0-6.0 s)``, ``before ...``, several joined by ' / ', ``no fault`` or ``time unknown``."""


@dataclass(frozen=True)
class Finding:
    """A check of one run that failed (``valid`` false) or could not decide (null)."""

    run: StoredRun
    check: Check
    counts: dict[str, Any]
    """Its non-zero counts (all of them when every one is zero)."""
    examples: list[ExampleMessage]
    """The first ``EXAMPLES_SHOWN`` of its examples."""
    more_examples: int
    """How many of the check's examples are not shown."""

    @property
    def label(self) -> str:
        return f"{self.run.key.label()} r{self.run.repeat}"


def run_origin_ns(run: StoredRun) -> int | None:
    """The run's time zero: the series' origin (the charts' x axis), else its start."""
    return run.figures.series.origin_ns or run.phases.start_ns


def _walk(value: Any, name: str = "") -> Iterator[tuple[str, Any]]:
    """Every (field name, plain value) in a record, nested dicts and lists included."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _walk(item, str(key))
    elif isinstance(value, list):
        for item in value:
            yield from _walk(item, name)
    else:
        yield name, value


def _times_ns(example: Any) -> list[int]:
    found = [
        value
        for name, value in _walk(example)
        if name.endswith("_ns") and isinstance(value, int) and value >= EPOCH_NS
    ]
    return sorted(set(found))


def _positions(example: Any) -> list[str]:
    """Each record's (the example's, then its nested deliveries') position, in order."""
    records: list[dict[str, Any]] = []

    def collect(value: Any) -> None:
        if isinstance(value, dict):
            if any(value.get(name) is not None for name in POSITION_FIELDS):
                records.append(value)
            for item in value.values():
                collect(item)
        elif isinstance(value, list):
            for item in value:
                collect(item)

    collect(example)
    found = []
    for record in records:
        parts = []
        if record.get("partition") is not None and record["partition"] != -1:
            parts.append(f"partition {record['partition']}")
        if record.get("offset") is not None and record["offset"] != -1:
            parts.append(f"offset {record['offset']}")
        if record.get("message_id") not in (None, ""):
            parts.append(f"message id {record['message_id']}")
        if parts:
            found.append(" ".join(parts))
    return found


def _identity(example: Any) -> str:
    if not isinstance(example, dict):
        return str(example)
    plain = [
        f"{name}={value}"
        for name, value in example.items()
        if name not in NOT_IDENTITY
        and not name.endswith("_ns")
        and not isinstance(value, dict | list)
        and value is not None
    ]
    return " ".join(plain)


def _span(fault: FaultWindow, origin_ns: int | None) -> str:
    """``link-down (3.0-6.0 s)``: the fault and its window since the run's start."""
    if origin_ns is None or fault.start_ns is None:
        return fault.name
    start = (fault.start_ns - origin_ns) / 1e9
    end = ((fault.end_ns or fault.start_ns) - origin_ns) / 1e9
    return f"{fault.name} ({start:.1f}-{end:.1f} s)"


def fault_window(time_ns: int, faults: list[FaultWindow], origin_ns: int | None = None) -> str:
    """Where ``time_ns`` fell among the run's faults: ``inside X``, else ``after X`` (the
    last fault that ended before it), else ``before X`` (the first one); ``no fault`` when the
    run injected none. A fault not healed (no ``end_ns``) is the instant it started."""
    timed = sorted((f for f in faults if f.start_ns is not None), key=lambda f: f.start_ns or 0)
    if not timed:
        return NO_FAULT
    for fault in timed:
        start = fault.start_ns or 0
        if start <= time_ns <= (fault.end_ns or start):
            return f"inside {_span(fault, origin_ns)}"
    ended = [f for f in timed if (f.end_ns or f.start_ns or 0) < time_ns]
    if ended:
        return f"after {_span(ended[-1], origin_ns)}"
    return f"before {_span(timed[0], origin_ns)}"


def describe_example(example: Any, run: StoredRun) -> ExampleMessage:
    """One example record of ``run``'s check, in a line (any shape a checker wrote)."""
    times = _times_ns(example)
    origin = run_origin_ns(run)
    faults = run.scenario.faults
    if not times:
        window = NO_FAULT if not faults else TIME_UNKNOWN
    else:
        windows = list(dict.fromkeys(fault_window(t, faults, origin) for t in times))
        window = " / ".join(windows)
    kind = example.get("kind") if isinstance(example, dict) else None
    return ExampleMessage(
        kind=str(kind) if kind is not None else "",
        identity=_identity(example),
        positions=_positions(example),
        seconds=[(t - origin) / 1e9 for t in times] if origin is not None else [],
        window=window,
    )


def _shown_counts(check: Check) -> dict[str, Any]:
    nonzero = {k: v for k, v in check.counts.items() if v not in (0, None, False, [], {})}
    return nonzero or dict(check.counts)


def findings(runs: list[StoredRun]) -> list[Finding]:
    """Every failed check, then every unknown one, of every run, in the runs' order."""
    found = []
    for wanted in (False, None):
        for run in runs:
            for check in run.checks:
                if check.valid is not wanted:
                    continue
                shown = check.examples[:EXAMPLES_SHOWN]
                found.append(
                    Finding(
                        run=run,
                        check=check,
                        counts=_shown_counts(check),
                        examples=[describe_example(example, run) for example in shown],
                        more_examples=len(check.examples) - len(shown),
                    )
                )
    return found


def seconds_text(seconds: list[float]) -> str:
    """``t=7.29 s`` or ``t=7.29, 7.98 s`` ('-' when unknown)."""
    if not seconds:
        return "-"
    return "t=" + ", ".join(f"{s:.2f}" for s in seconds) + " s"
