"""Rebalances across identity ranges: a scope's first deliveries moving between consumers.

The ordering checker counts, per scope, how often consecutive first deliveries (in receive
order: ``receive_ns``, then row) go to different consumers. A Kafka partition's keys spread over
every identity range, so no range sees a whole scope. Each range instead reports its share of
each scope as *runs*: maximal stretches of one consumer, each with its first and last position
in receive order. Runs of one scope from different ranges are put in receive order; where runs
of different consumers overlap in time the interleaving is unknown and that scope is counted
again exactly from its first deliveries (``exact_handoffs``), which happens only when two
consumers read one scope at the same moment.
"""

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from harness.analysis.ranges import IdentityRange
from harness.checkers import MAX_EXAMPLES, HistoryIndex

I64 = npt.NDArray[np.int64]


@dataclass
class ScopeRuns:
    """Runs of one consumer within one scope, gathered from the ranges."""

    scope: list[str] = field(default_factory=list)
    start_ns: list[I64] = field(default_factory=list)
    start_row: list[I64] = field(default_factory=list)
    end_ns: list[I64] = field(default_factory=list)
    end_row: list[I64] = field(default_factory=list)
    consumer: list[I64] = field(default_factory=list)

    def extend(self, other: "ScopeRuns") -> None:
        """Add another range's runs."""
        self.scope.extend(other.scope)
        self.start_ns.extend(other.start_ns)
        self.start_row.extend(other.start_row)
        self.end_ns.extend(other.end_ns)
        self.end_row.extend(other.end_row)
        self.consumer.extend(other.consumer)

    def add(self, part: IdentityRange, history: HistoryIndex) -> None:
        """Add the runs of ``part`` (its index already built as ``history``)."""
        rows = history.scoped_first_deliveries  # by scope, then in receive order
        if not rows.size:
            return
        scope = history.scope[0][rows]
        time = history.receive_time[rows]
        consumer = history.consumer[rows].astype(np.int64)
        global_row = rows + part.first_receive_row
        starts = np.ones(rows.size, dtype=np.bool_)
        starts[1:] = (scope[1:] != scope[:-1]) | (consumer[1:] != consumer[:-1])
        first = np.flatnonzero(starts)
        last = np.append(first[1:], rows.size) - 1
        names = part.receives.column("scope").take(rows[first]).to_pylist()
        self.scope.extend(str(name) for name in names)
        self.start_ns.append(time[first])
        self.start_row.append(global_row[first])
        self.end_ns.append(time[last])
        self.end_row.append(global_row[last])
        self.consumer.append(consumer[first])


def first_deliveries(history: HistoryIndex) -> tuple[I64, npt.NDArray[np.int32], I64, I64]:
    """``(rows, scope codes, receive_ns, consumer)`` of the first deliveries that carry a
    scope (what the ordering checker's rebalance count looks at)."""
    rows = history.first_delivery
    codes = history.scope[0][rows]
    promised = codes >= 0
    rows = rows[promised]
    return (
        rows,
        codes[promised],
        history.receive_time[rows],
        history.consumer[rows].astype(np.int64),
    )


@dataclass(frozen=True)
class Handoffs:
    count: int
    examples: list[dict[str, object]]
    unclear: list[str]
    """Scopes whose runs interleave: count them with ``exact_handoffs``."""


def _ranks(ns: I64, row: I64) -> I64:
    """Dense ranks of ``(ns, row)`` pairs (unique rows, so ranks are unique per pair)."""
    order = np.lexsort((row, ns))
    ranks = np.empty(ns.size, dtype=np.int64)
    ranks[order] = np.arange(ns.size, dtype=np.int64)
    return ranks


def merge_runs(runs: ScopeRuns) -> Handoffs:
    """The handoffs the runs imply, for every scope whose runs do not interleave."""
    if not runs.scope:
        return Handoffs(0, [], [])
    names = np.array(runs.scope, dtype=object)
    _, scope = np.unique(names, return_inverse=True)
    scope = scope.astype(np.int64)
    start_ns, start_row = np.concatenate(runs.start_ns), np.concatenate(runs.start_row)
    end_ns, end_row = np.concatenate(runs.end_ns), np.concatenate(runs.end_row)
    consumer = np.concatenate(runs.consumer)
    size = scope.size
    rank = _ranks(np.concatenate([start_ns, end_ns]), np.concatenate([start_row, end_row]))
    start, end = rank[:size], rank[size:]
    order = np.lexsort((start, scope))
    scope, start, end, consumer = scope[order], start[order], end[order], consumer[order]
    start_ns, end_ns, names = start_ns[order], end_ns[order], names[order]
    # Clusters: runs of one scope overlapping in receive order. A scope's key offsets keep
    # its running maximum of ends from leaking into the next scope.
    span = 2 * size + 1
    keyed_end = scope * span + end
    reach = np.maximum.accumulate(keyed_end)
    new_cluster = np.ones(size, dtype=np.bool_)
    new_cluster[1:] = (scope[1:] != scope[:-1]) | (scope[1:] * span + start[1:] > reach[:-1])
    cluster_first = np.flatnonzero(new_cluster)
    mixed = np.minimum.reduceat(consumer, cluster_first) != np.maximum.reduceat(
        consumer, cluster_first
    )
    unclear_scopes = np.unique(scope[cluster_first[mixed]])
    cluster_scope = scope[cluster_first]
    cluster_consumer = consumer[cluster_first]
    moved = np.flatnonzero(
        (cluster_scope[1:] == cluster_scope[:-1])
        & (cluster_consumer[1:] != cluster_consumer[:-1])
        & ~np.isin(cluster_scope[1:], unclear_scopes)
    )
    examples: list[dict[str, object]] = [
        {
            "kind": "rebalance",
            "scope": names[cluster_first[at + 1]],
            "from_consumer_id": int(cluster_consumer[at]),
            "to_consumer_id": int(cluster_consumer[at + 1]),
            "receive_ns": int(start_ns[cluster_first[at + 1]]),
        }
        for at in moved[:MAX_EXAMPLES].tolist()
    ]
    unclear = sorted({str(names[np.flatnonzero(scope == s)[0]]) for s in unclear_scopes})
    return Handoffs(int(moved.size), examples, unclear)


def exact_handoffs(
    deliveries: list[tuple[str, I64, I64, I64]],
) -> tuple[int, list[dict[str, object]]]:
    """Handoffs counted from every first delivery ``(scope, receive_ns, global row,
    consumer)`` of the unclear scopes."""
    count, examples = 0, list[dict[str, object]]()
    by_scope: dict[str, list[tuple[I64, I64, I64]]] = {}
    for name, time, row, consumer in deliveries:
        by_scope.setdefault(name, []).append((time, row, consumer))
    for name in sorted(by_scope):
        parts = by_scope[name]
        time = np.concatenate([p[0] for p in parts])
        row = np.concatenate([p[1] for p in parts])
        consumer = np.concatenate([p[2] for p in parts])
        order = np.lexsort((row, time))
        time, consumer = time[order], consumer[order]
        moved = np.flatnonzero(consumer[1:] != consumer[:-1])
        count += int(moved.size)
        examples.extend(
            {
                "kind": "rebalance",
                "scope": name,
                "from_consumer_id": int(consumer[at]),
                "to_consumer_id": int(consumer[at + 1]),
                "receive_ns": int(time[at + 1]),
            }
            for at in moved[:MAX_EXAMPLES].tolist()
        )
    return count, examples
