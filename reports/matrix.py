"""The comparison matrix: one row per (broker, workload, scenario), medians over its repeats,
and the row's one-word verdict (``row_verdict``) with the checks that made it so."""

import statistics
from dataclasses import dataclass, field

from reports.completeness import Unfinished
from reports.load import RunKey, StoredRun


@dataclass(frozen=True)
class Column:
    title: str
    path: str
    """Dotted path into result.json (see ``RunResult.value``)."""
    digits: int = 2


FIGURE_COLUMNS = (
    Column("sent msg/s", "figures.throughput.sent.mean_msgs_per_s", 0),
    Column("received msg/s", "figures.throughput.received.mean_msgs_per_s", 0),
    Column("e2e p50 ms", "figures.latency.e2e.stats.p50"),
    Column("e2e p99 ms", "figures.latency.e2e.stats.p99"),
    Column("e2e p99.9 ms", "figures.latency.e2e.stats.p99.9"),
    Column("publish p99 ms", "figures.latency.publish.stats.p99"),
    Column("lag max", "figures.lag.max", 0),
)

VERDICT_ORDER = {False: 0, None: 1, True: 2}
"""Worst first: a key's verdict is its worst repeat's."""


def worst(verdicts: list[bool | None]) -> bool | None:
    return min(verdicts, key=VERDICT_ORDER.__getitem__) if verdicts else None


def median(runs: list[StoredRun], path: str) -> float | None:
    values = [v for v in (run.number(path) for run in runs) if v is not None]
    return statistics.median(values) if values else None


DUPLICATES_CHECK = "duplicates"


def duplicates(run: StoredRun) -> int:
    """Extra deliveries the consumers did not ask for with a nack (the duplicates check's
    ``unrequested``; derived for results written before it existed): counted and shown even
    when the run's semantics (at-least-once) allow them."""
    for check in run.checks:
        if check.name == DUPLICATES_CHECK:
            counts = check.counts
            if "unrequested" in counts:
                return int(counts["unrequested"])
            extra = int(counts.get("extra_deliveries", 0))
            return extra - int(counts.get("redelivery_after_nack", 0))
    return 0


def anomalies(run: StoredRun) -> list[str]:
    """Non-zero counts of every check that did not pass (and of a passed duplicates check
    that counted duplicates), and what each fault's recovery found."""
    found = []
    for check in run.checks:
        shown = check.name == DUPLICATES_CHECK and duplicates(run) > 0
        if check.valid is not True or shown:
            nonzero = {k: v for k, v in check.counts.items() if v not in (0, None, False)}
            found.append(f"{check.name}: " + ", ".join(f"{k}={v}" for k, v in nonzero.items()))
    for fault in run.scenario.faults:
        for name, value in fault.anomalies.items():
            if value not in (0, None, False, [], {}):
                found.append(f"{fault.name}: {name}={value}")
    return found


FAN_OUT = "fan-out"


def fans_out(run: StoredRun) -> bool:
    """The run's flow fanned a topic out to several subscribers (``fan_out`` resolved on)."""
    return run.workload.params.get("fan_out") == "on"


@dataclass(frozen=True)
class Row:
    source: str
    """The folder given to ``report`` (shown when several are compared)."""
    key: RunKey
    runs: list[StoredRun]
    figures: dict[str, float | None]
    """Column title -> median over the repeats."""
    checks: dict[str, bool | None]
    """Check name -> worst verdict over the repeats (absent: that check did not run here)."""
    valid: bool | None
    anomalies: list[str]
    semantics: str | None
    """The runs' delivery semantics, and ``fan-out`` when a topic had several subscribers
    (then received msg/s counts every subscriber's deliveries: more than were sent)."""
    harness_bound: list[str]
    """``r<repeat>: <reason>`` for every reason of every harness-bound repeat."""
    duplicates: int = 0
    """Duplicates (``duplicates(run)``) over all its repeats."""
    unfinished: list[Unfinished] = field(default_factory=list)
    """Its repeats that did not finish (``completeness``): the row is incomplete. A key none
    of whose repeats wrote a result is a row without runs."""

    @property
    def bound_runs(self) -> list[StoredRun]:
        return [run for run in self.runs if run.harness_bound]

    @property
    def test_double(self) -> bool:
        """Its runs were against brokerbench's in-memory test double, not a real broker."""
        return any(run.test_double for run in self.runs)

    @property
    def failing_checks(self) -> list[str]:
        return [name for name, valid in self.checks.items() if valid is False]

    @property
    def unknown_checks(self) -> list[str]:
        return [name for name, valid in self.checks.items() if valid is None]


@dataclass(frozen=True)
class Matrix:
    rows: list[Row]
    check_names: list[str]
    """Every check seen in any run, in the order first seen."""
    sources: list[str]
    unfinished: list[Unfinished] = field(default_factory=list)
    """Runs failed, interrupted, still running, or planned and missing (``completeness``)."""

    @property
    def several_sources(self) -> bool:
        return len(self.sources) > 1

    @property
    def valid(self) -> bool | None:
        """The worst row's verdict; never pass while a run did not finish."""
        return worst([row.valid for row in self.rows] + ([None] if self.unfinished else []))


def build_matrix(runs: list[StoredRun], unfinished: list[Unfinished] | None = None) -> Matrix:
    """Rows from the runs' results; each unfinished run of a known key joins its row (a row
    without runs when none of that key's repeats wrote a result)."""
    unfinished = unfinished or []
    by_row: dict[tuple[str, RunKey], list[Unfinished]] = {}
    for missing in unfinished:
        if missing.key is not None:
            by_row.setdefault((missing.source, missing.key), []).append(missing)
    check_names: list[str] = []
    rows = []
    groups: dict[tuple[str, RunKey], list[StoredRun]] = {key: [] for key in by_row}
    for run in runs:
        groups.setdefault((run.source, run.key), []).append(run)
    for (source, key), group in sorted(groups.items()):
        checks: dict[str, list[bool | None]] = {}
        for run in group:
            for check in run.checks:
                checks.setdefault(check.name, []).append(check.valid)
                if check.name not in check_names:
                    check_names.append(check.name)
        semantics = {run.semantics for run in group if run.semantics}
        if any(fans_out(run) for run in group):
            semantics.add(FAN_OUT)
        rows.append(
            Row(
                source=source,
                key=key,
                runs=group,
                figures={c.title: median(group, c.path) for c in FIGURE_COLUMNS},
                checks={name: worst(verdicts) for name, verdicts in checks.items()},
                valid=worst([run.valid for run in group]),
                anomalies=[f"r{run.repeat} {found}" for run in group for found in anomalies(run)],
                semantics=", ".join(sorted(semantics)) or None,
                harness_bound=[
                    f"r{run.repeat}: {reason}"
                    for run in group
                    if run.harness_bound
                    for reason in run.harness_bound_reasons
                ],
                duplicates=sum(duplicates(run) for run in group),
                unfinished=by_row.get((source, key), []),
            )
        )
    return Matrix(rows, check_names, sorted({source for source, _ in groups}), unfinished)


def fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def verdict_word(valid: bool | None) -> str:
    return {True: "pass", False: "FAIL", None: "unknown"}[valid]


def duplicates_note(count: int) -> str:
    """What follows a verdict when there were duplicates: ' · 18 dup' ('' for none)."""
    return f" · {count} dup" if count else ""


HARNESS_BOUND = "harness-bound"
"""The mark of a row or run whose figures measured the harness, not the broker."""


def bound_word(row: Row) -> str:
    """'' or 'harness-bound' / 'harness-bound 1/3' (repeats bound of the row's)."""
    bound = len(row.bound_runs)
    if not bound:
        return ""
    return HARNESS_BOUND if len(row.runs) == 1 else f"{HARNESS_BOUND} {bound}/{len(row.runs)}"


INCOMPLETE = "incomplete"
"""The verdict of a row with a repeat that did not finish (failed, interrupted, missing)."""
VERDICTS = ("FAIL", INCOMPLETE, "unknown", HARNESS_BOUND, "pass")
"""A row's possible verdicts, worst first."""


def row_verdict(row: Row) -> str:
    """The summary's one word for a row, worst first: FAIL (a check failed in a repeat),
    incomplete (a repeat did not finish, so no pass can be claimed), unknown, harness-bound
    (valid, but the figures measured the harness, not the broker), pass."""
    if row.valid is False:
        return "FAIL"
    if row.unfinished:
        return INCOMPLETE
    if row.valid is None:
        return "unknown"
    if row.bound_runs:
        return HARNESS_BOUND
    return "pass"


def verdict_reasons(row: Row) -> str:
    """What the verdict names: 'failing: lost, ordering; unknown: lag-recovery; did not
    finish: r1 failed' ('' for a clean pass)."""
    parts = []
    if row.failing_checks:
        parts.append("failing: " + ", ".join(row.failing_checks))
    if row.unknown_checks:
        parts.append("unknown: " + ", ".join(row.unknown_checks))
    if row.unfinished:
        label = row.key.label()
        repeats = [f"{run.label.removeprefix(label).strip()} {run.state}" for run in row.unfinished]
        parts.append("did not finish: " + ", ".join(repeats))
    return "; ".join(parts)


def memory_part(run: StoredRun) -> str:
    """Each role's largest resident memory at the end of the run and its largest growth after
    the first minute ('' when the run has no memory samples)."""
    memory = None if run.saturation is None else run.saturation.memory
    if memory is None or not memory.roles:
        return ""
    shares = []
    for role, found in memory.roles.items():
        growth = (
            "growth not judged"
            if found.growth_percent is None
            else f"{found.growth_percent:+.1f}% after the first minute"
        )
        shares.append(f"{role} {fmt((found.rss_end_bytes or 0) / 1e6, 0)} MB ({growth})")
    return "memory by role, largest RSS at the end: " + ", ".join(shares)


def saturation_line(run: StoredRun) -> str:
    """The saturation summary in one line: machine CPU and each role's CPU over the measured
    window, and each role's memory ('' when the run has none)."""
    if run.saturation is None or not run.saturation.summary.document():
        return ""
    summary = run.saturation.summary
    machine = summary.machine_cpu_percent
    seconds = "-" if summary.seconds is None else summary.seconds
    parts = [
        f"machine CPU mean {fmt(machine.mean, 0)}%, max {fmt(machine.max, 0)}% over {seconds} "
        "measured seconds"
    ]
    if summary.roles:
        shares = [
            f"{role} {fmt(found.mean_cpu_percent, 0)}% ({fmt(found.cpu_seconds, 1)} s)"
            for role, found in summary.roles.items()
        ]
        parts.append("CPU by role, mean % of one core (CPU seconds): " + ", ".join(shares))
    if memory := memory_part(run):
        parts.append(memory)
    return "; ".join(parts)
