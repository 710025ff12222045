"""Ordering: was each message delivered in send order, within the scope the broker promises?

Order is defined per *stream*: one scope instance (a Kafka partition ``p3``, an SQS FIFO
message group or Pub/Sub ordering key, i.e. the key) and one producer+key, whose messages
``seq = 0, 1, 2, ...`` were sent in that order. Receive order is ``receive_ns``, then row order
(a poll's batch shares one ``receive_ns``; its rows are in delivery order).

Only each message's *first delivery* (the earliest, to whichever consumer) is judged. A later
delivery of the same identity, whether a redelivery of the same broker message or a duplicate
publish, is the duplicates checker's business; judging it here too would count a consumer
restart that re-reads from its last commit (Kafka) or a redelivered ordering key (Pub/Sub
re-sends everything after the expired message) as a reorder.

A first delivery of ``seq = s`` is

- a *reorder* if its consumer had already consumed a higher seq of the same stream: the
  consumer saw the stream out of order.
- a *skip* otherwise, if *another* consumer had already consumed a higher seq of the same
  stream: that consumer went past ``s`` (a gap in its stream) and the gap was filled later,
  elsewhere. A gap its own consumer fills later is that message's reorder, counted once, not
  also as a skip. A gap never filled is not an ordering anomaly at all: a definitely failed
  send is not expected, and an acknowledged one never delivered is the lost checker's.
- in order otherwise.

A *rebalance* (affinity change) is a scope's first deliveries moving from one consumer to
another, in receive order: expected when consumers join, leave or fail over, so counted apart
and never invalid.

Deliveries outside any promised scope (``OrderingScope.NONE``, or receives with no ``scope``)
are grouped per producer+key and their *inversions* (reorders and skips alike) are counted but
never judged. ``valid``: False if any reorder or skip; None if nothing was received, or if order
is promised but no receive carries a scope; else True.
"""

import numpy as np
import numpy.typing as npt

from harness.checkers.identity import U64
from harness.checkers.index import I64, Bool, HistoryIndex, run_ids
from harness.checkers.verdict import MAX_EXAMPLES, NOTHING_RECEIVED, Verdict
from harness.drivers.base import OrderingScope

NAME = "ordering"
EXAMPLE_KINDS = ("reorder", "skip", "inversion", "rebalance")
"""The kinds of ``check_ordering``'s examples, in the order it lists them."""


def _delivered_after_later(group: I64, rank: U64, rank_bits: int) -> Bool:
    """For elements sorted by stream (``group``) then seq: whether a later element of the same
    stream (a higher seq) has a lower ``rank`` (was delivered earlier).

    A reverse running minimum over ``group << rank_bits | rank``: elements of later streams
    encode larger, so the minimum never leaks across a stream boundary.
    """
    size = group.size
    passed = np.zeros(size, dtype=np.bool_)
    if size < 2:
        return passed
    if int(group[-1]).bit_length() + rank_bits > 64:
        raise ValueError("history too large for the ordering checker (over 2**32 receives)")
    encoded = group.astype(np.uint64)
    encoded <<= np.uint64(rank_bits)
    encoded |= rank
    backwards = encoded[::-1]
    lowest = np.minimum.accumulate(backwards)
    passed[-2::-1] = lowest[:-1] < backwards[1:]
    return passed


def _boundaries(*columns: npt.NDArray[np.generic]) -> Bool:
    """Where a run of equal tuples starts in arrays sorted by those columns."""
    size = columns[0].size
    start = np.zeros(size, dtype=np.bool_)
    if size:
        start[0] = True
        for values in columns:
            start[1:] |= values[1:] != values[:-1]
    return start


class _Streams:
    """First deliveries sorted by stream then seq, with what the classification needs."""

    def __init__(self, history: HistoryIndex, promised_run: bool) -> None:
        self.rows = history.first_delivery
        keys = history.receive_keys
        if promised_run:
            self.scope = history.scope[0][self.rows]
        else:
            self.scope = np.full(keys.size, -1, dtype=np.int32)
        pair = keys >> np.uint64(history.identities.seq_bits)
        if keys.size > 1 and np.any((pair[1:] == pair[:-1]) & (self.scope[1:] != self.scope[:-1])):
            # One producer+key delivered in several scopes (e.g. partitions added mid-run).
            by_scope = np.lexsort((keys, self.scope))
            self.rows, self.scope, pair = self.rows[by_scope], self.scope[by_scope], pair[by_scope]
        starts = _boundaries(pair, self.scope)
        self.group = run_ids(starts)
        self.group_starts = np.append(np.flatnonzero(starts), keys.size)
        self.rank = history.time_rank[self.rows]
        self.consumer = history.consumer[self.rows]
        self.rank_bits = history.receives.num_rows.bit_length()

    def stream(self, at: int) -> tuple[int, int]:
        """The positions ``[start, end)`` of the stream of position ``at``."""
        group = int(self.group[at])
        return int(self.group_starts[group]), int(self.group_starts[group + 1])

    def delivered_before(self, at: int, same_consumer: bool) -> int:
        """The highest seq position of ``at``'s stream delivered before it (by its consumer)."""
        _, end = self.stream(at)
        later = np.arange(at + 1, end)
        earlier = later[self.rank[later] < self.rank[at]]
        if same_consumer:
            earlier = earlier[self.consumer[earlier] == self.consumer[at]]
        return int(earlier[-1])


def _rebalances(history: HistoryIndex) -> tuple[int, list[tuple[int, int]]]:
    """Handoffs of a scope between consumers among the first deliveries, with the (from, to)
    rows of the first few."""
    rows = history.scoped_first_deliveries
    scope = history.scope[0][rows]
    consumer = history.consumer[rows]
    moved = np.flatnonzero((scope[1:] == scope[:-1]) & (consumer[1:] != consumer[:-1]))
    pairs = [(int(rows[i]), int(rows[i + 1])) for i in moved[:MAX_EXAMPLES]]
    return int(moved.size), pairs


def check_ordering(history: HistoryIndex, ordering: OrderingScope) -> Verdict:
    """Reorders, skips and rebalances within the promised ``ordering`` scope."""
    promised_run = ordering is not OrderingScope.NONE
    streams = _Streams(history, promised_run)
    inverted = _delivered_after_later(streams.group, streams.rank, streams.rank_bits)
    promised = streams.scope >= 0

    judged = inverted & promised
    reorder = np.zeros(inverted.size, dtype=np.bool_)
    if judged.any():
        # Only streams with an inversion need the per-consumer view.
        hit = np.zeros(int(streams.group[-1]) + 1, dtype=np.bool_)
        hit[streams.group[judged]] = True
        sub = np.flatnonzero(hit[streams.group])
        sub = sub[np.lexsort((streams.consumer[sub], streams.group[sub]))]  # stable: seq order
        per_consumer = run_ids(_boundaries(streams.group[sub], streams.consumer[sub]))
        reorder[sub] = _delivered_after_later(per_consumer, streams.rank[sub], streams.rank_bits)
    skip = judged & ~reorder
    inversion = inverted & ~promised
    rebalance, handoffs = 0, list[tuple[int, int]]()
    if promised_run and promised.any():
        rebalance, handoffs = _rebalances(history)

    counts = {
        "judged": int(promised.sum()),
        "reorder": int(reorder.sum()),
        "skip": int(skip.sum()),
        "rebalance": rebalance,
        "unpromised": int((~promised).sum()),
        "inversions": int(inversion.sum()),
    }
    kinds = {"reorder": reorder, "skip": skip, "inversion": inversion}
    examples = _examples(history, streams, kinds, handoffs)

    return ordering_verdict(counts, examples, history.receives.num_rows, ordering)


def ordering_verdict(
    counts: dict[str, int],
    examples: list[dict[str, object]],
    receives: int,
    ordering: OrderingScope,
) -> Verdict:
    """The verdict from ``check_ordering``'s counts over ``receives`` rows, for the promised
    ``ordering`` scope: the one place its rule is written."""
    if not receives:
        return Verdict(NAME, None, counts, notes=NOTHING_RECEIVED)
    if ordering is OrderingScope.NONE:
        notes = (
            f"no order promised ({ordering.value}): {counts['inversions']} inversions among "
            f"{counts['unpromised']} first deliveries, counted, not judged"
        )
        return Verdict(NAME, True, counts, examples, notes)
    valid: bool | None
    if counts["reorder"] or counts["skip"]:
        valid = False
    elif counts["judged"] == 0 and counts["unpromised"]:
        valid = None
    else:
        valid = True
    notes = (
        f"{counts['judged']} first deliveries judged per {ordering.value}: "
        f"{counts['reorder']} reorder, {counts['skip']} skip; {counts['rebalance']} rebalance "
        f"(a scope moved to another consumer: expected); {counts['unpromised']} without a "
        f"scope, {counts['inversions']} inversions among them (not judged)"
    )
    if valid is None:
        notes += "; order is promised but no receive carries a scope"
    return Verdict(NAME, valid, counts, examples, notes)


_STREAM_FIELDS = ("consumer_id", "scope", "producer_id", "key_id", "seq", "receive_ns")


def _examples(
    history: HistoryIndex,
    streams: _Streams,
    kinds: dict[str, Bool],
    handoffs: list[tuple[int, int]],
) -> list[dict[str, object]]:
    examples: list[dict[str, object]] = []
    for kind, mask in kinds.items():
        picked = np.flatnonzero(mask)[:MAX_EXAMPLES].tolist()
        before = [streams.delivered_before(at, same_consumer=kind == "reorder") for at in picked]
        rows = streams.rows[np.array(picked + before, dtype=np.int64)]
        records = history.receive_records(rows)
        for message, earlier in zip(records[: len(picked)], records[len(picked) :], strict=True):
            example: dict[str, object] = {"kind": kind}
            example.update((name, message[name]) for name in _STREAM_FIELDS)
            example["after_seq"] = earlier["seq"]
            example["after_receive_ns"] = earlier["receive_ns"]
            if kind != "reorder":
                example["after_consumer_id"] = earlier["consumer_id"]
            examples.append(example)
    if handoffs:
        flat = np.array([row for pair in handoffs for row in pair], dtype=np.int64)
        records = history.receive_records(flat)
        for source, target in zip(records[::2], records[1::2], strict=True):
            examples.append(
                {
                    "kind": "rebalance",
                    "scope": target["scope"],
                    "from_consumer_id": source["consumer_id"],
                    "to_consumer_id": target["consumer_id"],
                    "receive_ns": target["receive_ns"],
                }
            )
    return examples
