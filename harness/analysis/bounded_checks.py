"""``check_all`` on a history too large to hold: range by range, verdicts merged.

Same verdicts as ``check_all`` on the whole history (``valid``, counts and notes; examples are
real ones, ``MAX_EXAMPLES`` per kind, the same ones except for rebalances), with memory set by
``messages_per_range`` instead of by the run. Each checker runs unchanged on each range; its
counts are summed and its examples capped (``merge.py``), and its own ``*_verdict`` function
(the one ``check_*`` ends with) gives ``valid`` and ``notes`` from the merged counts. Two facts
span ranges and are worked out apart:

- *lost-write or unseen* depends on the highest offset read from a Kafka partition, by any key:
  one pass over the receives' ``partition`` and ``offset`` columns (``max_offsets_read``) before
  the ranges, and each range's ``check_lost`` classifies its lost sends against it;
- *rebalances* follow a scope across every key: see ``harness.analysis.rebalance``.
"""

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np
import numpy.typing as npt
import pyarrow as pa  # type: ignore[import-untyped, unused-ignore]
import pyarrow.compute as pc  # type: ignore[import-untyped, unused-ignore]

from harness.analysis import merge
from harness.analysis.ranges import IdentityRange
from harness.analysis.rebalance import ScopeRuns, exact_handoffs, first_deliveries, merge_runs
from harness.checkers import (
    MAX_EXAMPLES,
    HistoryIndex,
    Verdict,
    check_all,
    check_duplicates,
    check_failed_but_delivered,
    check_lag_recovery,
    check_lost,
    check_ordering,
    check_phantoms,
    check_unknown_outcomes,
)
from harness.checkers.duplicates import EXAMPLE_KINDS as DUPLICATE_KINDS
from harness.checkers.duplicates import duplicates_verdict, failed_acks_of
from harness.checkers.fates import (
    FAILED_BUT_DELIVERED,
    PHANTOM,
    failed_but_delivered_verdict,
    phantoms_verdict,
    unknown_outcomes_verdict,
)
from harness.checkers.lost import EXAMPLE_KINDS as LOST_KINDS
from harness.checkers.lost import highest_offsets, lost_verdict
from harness.checkers.ordering import EXAMPLE_KINDS as ORDERING_KINDS
from harness.checkers.ordering import ordering_verdict
from harness.checkers.undecodable import check_undecodable
from harness.drivers.base import OrderingScope
from harness.history.schema import RECEIVES, SENDS

I64 = npt.NDArray[np.int64]
Ranges = Callable[[], Iterator[IdentityRange]]
"""Makes a fresh pass over the history's identity ranges (a second pass is rarely needed)."""


def max_offsets_read(receives: Iterable[pa.RecordBatch]) -> I64:
    """The highest offset delivered from each Kafka partition (-1: none), indexed by
    partition, from batches holding at least ``partition`` and ``offset``."""
    best = np.zeros(0, dtype=np.int64)
    for batch in receives:
        partition = np.asarray(batch.column("partition").to_numpy(), dtype=np.int64)
        offset = np.asarray(batch.column("offset").to_numpy(), dtype=np.int64)
        best = highest_offsets(partition, offset, best)
    return best


@dataclass(frozen=True)
class _Checked:
    """What one range contributes to the merged verdicts."""

    verdicts: tuple[Verdict, ...]
    runs: ScopeRuns
    sends: int
    receives: int


def check_range(
    part: IdentityRange,
    history: HistoryIndex,
    read_up_to: I64,
    ordering: OrderingScope,
    *,
    exactly_once: bool,
) -> "_Checked":
    """The six per-message checkers on one range (``history``: its index), and its share of
    each scope's runs of one consumer (for the rebalances, which span ranges)."""
    found = (
        check_lost(history, read_up_to),
        check_unknown_outcomes(history),
        check_failed_but_delivered(history),
        check_phantoms(history),
        check_duplicates(history, exactly_once=exactly_once),  # failed_acks: the run's
        check_ordering(history, ordering),
    )
    runs = ScopeRuns()
    if ordering is not OrderingScope.NONE and part.receives.num_rows:
        runs.add(part, history)
    return _Checked(found, runs, part.sends.num_rows, part.receives.num_rows)


@dataclass
class RangeChecks:
    """The ranges' checker verdicts so far, in range order (``add``, ``extend``): what
    ``merged_verdicts`` turns into the whole history's. Picklable, so a worker process can
    hand back its ranges' share."""

    per_checker: list[list[Verdict]] = field(default_factory=lambda: [[] for _ in range(6)])
    runs: ScopeRuns = field(default_factory=ScopeRuns)
    sends: int = 0
    receives: int = 0

    def add(self, checked: _Checked) -> None:
        self.sends += checked.sends
        self.receives += checked.receives
        for verdicts, verdict in zip(self.per_checker, checked.verdicts, strict=True):
            verdicts.append(verdict)
        self.runs.extend(checked.runs)

    def extend(self, later: "RangeChecks") -> None:
        """Add the verdicts of ranges that come after these ones."""
        self.sends += later.sends
        self.receives += later.receives
        for verdicts, more in zip(self.per_checker, later.per_checker, strict=True):
            verdicts.extend(more)
        self.runs.extend(later.runs)


Item = TypeVar("Item")
Done = TypeVar("Done")


def _in_order(work: Callable[[Item], Done], items: Iterator[Item], workers: int) -> Iterator[Done]:
    """``work`` of each item, in the items' order, ``workers`` at a time; at most ``workers``
    items are taken ahead (each is a range in memory)."""
    if workers <= 1:
        yield from map(work, items)
        return
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="range-check") as pool:
        pending: deque[Future[Done]] = deque()
        for item in items:
            pending.append(pool.submit(work, item))
            if len(pending) >= workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def _unclear_deliveries(ranges: Ranges, unclear: list[str]) -> list[tuple[str, I64, I64, I64]]:
    """Every first delivery of the ``unclear`` scopes: ``(scope, receive_ns, row, consumer)``."""
    wanted = pa.array(unclear, pa.string())
    found: list[tuple[str, I64, I64, I64]] = []
    for part in ranges():
        history = HistoryIndex(part.sends, part.receives)
        rows, _, time, consumer = first_deliveries(history)
        names = part.receives.column("scope").take(pa.array(rows)).cast(pa.string())
        inside = np.asarray(pc.is_in(names, value_set=wanted).to_numpy(zero_copy_only=False))
        names_inside = names.filter(pa.array(inside)).to_pylist()
        for name in set(names_inside):
            mine = np.flatnonzero(inside)[np.array(names_inside, dtype=object) == name]
            found.append(
                (str(name), time[mine], rows[mine] + part.first_receive_row, consumer[mine])
            )
    return found


def check_ranges(  # noqa: PLR0917 - check_all's arguments plus the ranges'
    ranges: Ranges,
    read_up_to: I64,
    events: pa.Table,
    ordering: OrderingScope,
    lag: pa.Table | Callable[[], pa.Table | None] | None = None,
    lag_recovery_seconds: float = 30,
    *,
    exactly_once: bool = False,
    on_range: Callable[[IdentityRange, HistoryIndex], None] | None = None,
    workers: int = 1,
) -> list[Verdict]:
    """``check_all``'s verdicts, range by range. ``read_up_to``: ``max_offsets_read`` of the
    whole run's receives; ``ranges``: makes a pass over the identity ranges; ``lag``: the lag
    samples, or what makes them once the pass is over (a backlog derived in the same pass);
    ``on_range``: called with each range and its index (figures gathered in the same pass;
    from ``workers`` threads at once, so it must be thread-safe). ``workers`` ranges are
    checked at a time (numpy and Arrow release the GIL in their sorts and joins); verdicts are
    merged in range order whatever order they finish in."""

    def check_one(part: IdentityRange) -> _Checked:
        history = HistoryIndex(part.sends, part.receives)
        checked = check_range(part, history, read_up_to, ordering, exactly_once=exactly_once)
        if on_range is not None:
            on_range(part, history)
        return checked

    found = RangeChecks()
    for checked in _in_order(check_one, ranges(), workers):
        found.add(checked)
    return merged_verdicts(
        found, ranges, events, ordering, lag, lag_recovery_seconds, exactly_once=exactly_once
    )


def merged_verdicts(  # noqa: PLR0917 - check_all's arguments plus the ranges'
    found: RangeChecks,
    ranges: Ranges,
    events: pa.Table,
    ordering: OrderingScope,
    lag: pa.Table | Callable[[], pa.Table | None] | None = None,
    lag_recovery_seconds: float = 30,
    *,
    exactly_once: bool = False,
) -> list[Verdict]:
    """``check_all``'s verdicts from every range's (``found``, in range order); ``ranges``
    makes a second pass, needed only for scopes whose consumers interleave."""
    failed_acks = failed_acks_of(events)
    if not found.per_checker[0]:  # no range at all: an empty history, judged as check_all does
        empty = check_all(SENDS.empty_table(), RECEIVES.empty_table(), events, ordering)
        return [
            *empty[:6],  # lost .. ordering: the per-message checks
            check_lag_recovery(lag() if callable(lag) else lag, events, lag_recovery_seconds),
            *_from_events_only(events),
        ]

    handoffs = merge_runs(found.runs)
    rebalance, rebalance_examples = handoffs.count, handoffs.examples
    if handoffs.unclear:
        more, more_examples = exact_handoffs(_unclear_deliveries(ranges, handoffs.unclear))
        rebalance += more
        rebalance_examples = (rebalance_examples + more_examples)[:MAX_EXAMPLES]
    lost, unknown, failed, phantom, duplicate, in_order = found.per_checker
    sends, receives = found.sends, found.receives
    duplicate_counts, duplicate_examples = merge.merged(duplicate, DUPLICATE_KINDS)
    duplicate_counts["failed_acks"] = failed_acks
    ordering_counts, ordering_examples = merge.merged(
        in_order, ORDERING_KINDS, skip=frozenset({"rebalance"})
    )
    ordering_counts["rebalance"] = rebalance
    return [
        lost_verdict(*merge.merged(lost, LOST_KINDS)),
        unknown_outcomes_verdict(merge.summed(unknown), sends),
        failed_but_delivered_verdict(*merge.merged(failed, (FAILED_BUT_DELIVERED,)), receives),
        phantoms_verdict(*merge.merged(phantom, (PHANTOM,)), receives),
        duplicates_verdict(
            duplicate_counts, duplicate_examples, receives, exactly_once=exactly_once
        ),
        ordering_verdict(
            ordering_counts, ordering_examples + rebalance_examples, receives, ordering
        ),
        check_lag_recovery(lag() if callable(lag) else lag, events, lag_recovery_seconds),
        *_from_events_only(events),
    ]


def _from_events_only(events: pa.Table) -> list[Verdict]:
    """The checks ``check_all`` adds that read the events alone (so once, not per range):
    ``undecodable`` in a run with schema bodies. (``subscribers`` needs every subscriber's
    deliveries at once; fan-out happens only in flows, which this path never takes.)"""
    undecodable = check_undecodable(events)
    return [] if undecodable is None else [undecodable]
