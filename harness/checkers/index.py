"""``HistoryIndex``: a history's tables plus the arrays every checker derives from them.

Checkers never loop over rows in Python: they work on numpy arrays sorted once by message
identity (see ``identity.py``) and, for ordering, on each delivery's rank in receive order.
Each derived array is computed on first use and shared, so ``check_all`` sorts each table once.
"""

from functools import cached_property
from typing import TypeVar

import numpy as np
import numpy.typing as npt
import pyarrow as pa  # type: ignore[import-untyped, unused-ignore]
import pyarrow.compute as pc  # type: ignore[import-untyped, unused-ignore]

from harness.checkers.columns import RECEIVE_COLUMNS, SEND_COLUMNS, Outcome, require_columns
from harness.checkers.identity import U64, Columns, Identities, pack_identities

Scalar = TypeVar("Scalar", bound=np.generic)
I64 = npt.NDArray[np.int64]
Bool = npt.NDArray[np.bool_]


def column(table: pa.Table, name: str, dtype: type[Scalar], fill: int = -1) -> npt.NDArray[Scalar]:
    """``table[name]`` as a numpy array of ``dtype``, nulls replaced by ``fill``."""
    chunked = table.column(name)
    if chunked.null_count:
        chunked = pc.fill_null(chunked, fill)
    array: npt.NDArray[Scalar] = np.asarray(chunked.to_numpy(), dtype=dtype)
    return array


def column_at(
    table: pa.Table,
    name: str,
    rows: npt.NDArray[np.integer],
    dtype: type[Scalar],
    fill: int = -1,
) -> npt.NDArray[Scalar]:
    """``table[name][rows]`` as a numpy array of ``dtype``, nulls replaced by ``fill``; reads only
    those rows (for the few a checker looks at closely)."""
    return column(
        table.select([name]).take(pa.array(np.asarray(rows, dtype=np.int64))), name, dtype, fill
    )


def dictionary_codes(table: pa.Table, name: str) -> tuple[npt.NDArray[np.int32], int]:
    """A string (or dictionary-of-string) column as integer codes, -1 for null, and how many
    distinct values the codes stand for (equal strings, equal codes)."""
    chunked = table.select([name]).unify_dictionaries().column(0)  # shards' batches differ
    array = chunked.combine_chunks()
    if not pa.types.is_dictionary(array.type):
        array = pc.dictionary_encode(array)
    codes = np.asarray(pc.fill_null(array.indices, -1).to_numpy(), dtype=np.int32)
    values = array.dictionary
    distinct = int(pc.count_distinct(values).as_py())
    if distinct != len(values):  # Arrow allows a dictionary to repeat an entry
        deduplicated = pc.fill_null(pc.dictionary_encode(values).indices, -1)
        remap = np.asarray(deduplicated.to_numpy(), dtype=np.int32)
        codes = np.where(codes >= 0, remap[np.maximum(codes, 0)], -1).astype(np.int32)
    return codes, distinct


def sorted_member(needles: U64, haystack: U64) -> Bool:
    """For sorted, distinct ``needles``, whether each occurs in the sorted, distinct
    ``haystack``."""
    return sorted_members(needles, haystack)[0]


def sorted_members(left: U64, right: U64) -> tuple[Bool, Bool]:
    """For two sorted arrays of distinct values: whether each of ``left`` is in ``right``, and
    each of ``right`` in ``left``. One merge (a stable sort of the two runs, linear), about
    twice as fast as a binary search of each value."""
    found_left = np.zeros(left.size, dtype=np.bool_)
    found_right = np.zeros(right.size, dtype=np.bool_)
    if left.size and right.size:
        both = np.concatenate([left, right])
        order = np.argsort(both, kind="stable")
        merged = both[order]
        equal = np.flatnonzero(merged[1:] == merged[:-1])
        # Stable: of two equal values, the one from ``left`` (lower position) comes first.
        found_left[order[equal]] = True
        found_right[order[equal + 1] - left.size] = True
    return found_left, found_right


def run_ids(starts: Bool) -> I64:
    """For a mask of run starts (``starts[0]`` set), each position's run number."""
    at = np.flatnonzero(starts)
    return np.repeat(np.arange(at.size, dtype=np.int64), np.diff(np.append(at, starts.size)))


def run_starts(ordered: npt.NDArray[np.generic]) -> I64:
    """Start positions of the runs of equal values in ``ordered``."""
    if not ordered.size:
        return np.zeros(0, dtype=np.int64)
    change = np.flatnonzero(ordered[1:] != ordered[:-1]) + 1
    return np.concatenate([np.zeros(1, dtype=np.int64), change.astype(np.int64)])


def _argsort(codes: U64) -> I64:
    """``np.argsort(codes)``, or the rows in order when they already are (a compacted
    history's tables, and so its identity ranges, are sorted by identity)."""
    if codes.size < 2 or bool(np.all(codes[1:] >= codes[:-1])):
        return np.arange(codes.size, dtype=np.int64)
    return np.argsort(codes).astype(np.int64)


_OUTCOME_RANK = np.array([0, 2, 1], dtype=np.uint8)
"""Which outcome wins when one identity was sent more than once: ok, then unknown, then fail."""


class HistoryIndex:
    """The ``sends`` and ``receives`` tables of one run (``docs/history.md``), indexed.

    Build one per history and pass it to any ``check_*`` function; ``check_all`` does this.
    Receives are taken as one consumer group's: for a fan-out (several subscribers of one
    destination, told apart by ``receives.subscriber``), ``check_all`` indexes each
    subscriber's deliveries apart (``subscribers.subscriber_slices``).
    """

    def __init__(self, sends: pa.Table, receives: pa.Table) -> None:
        require_columns(sends, SEND_COLUMNS, "sends")
        require_columns(receives, RECEIVE_COLUMNS, "receives")
        self.sends = sends
        self.receives = receives

    # -- raw columns ---------------------------------------------------------------------------

    @cached_property
    def send_outcome(self) -> npt.NDArray[np.uint8]:
        return column(self.sends, "outcome", np.uint8, int(Outcome.UNKNOWN))

    @cached_property
    def receive_time(self) -> I64:
        return column(self.receives, "receive_ns", np.int64)

    @cached_property
    def consumer(self) -> npt.NDArray[np.uint32]:
        return column(self.receives, "consumer_id", np.uint32, 0)

    @cached_property
    def scope(self) -> tuple[npt.NDArray[np.int32], int]:
        """Each receive's scope as a code (-1: no scope), and how many scopes there are."""
        return dictionary_codes(self.receives, "scope")

    @cached_property
    def identities(self) -> Identities:
        def ids(table: pa.Table) -> Columns:
            return (
                column(table, "producer_id", np.uint32, 0),
                column(table, "key_id", np.uint32, 0),
                column(table, "seq", np.uint64, 0),
            )

        return pack_identities(ids(self.sends), ids(self.receives))

    # -- sends by identity ---------------------------------------------------------------------

    @cached_property
    def _sends_by_identity(self) -> tuple[U64, I64, npt.NDArray[np.uint8], I64]:
        codes = self.identities.sends
        outcome = self.send_outcome
        order = _argsort(codes)
        ordered = codes[order]
        starts = run_starts(ordered)
        if starts.size != ordered.size:
            # An identity sent more than once (the workload re-sent the same envelope): the
            # best outcome stands for all, ok over unknown over fail.
            order = np.lexsort((_OUTCOME_RANK[outcome], codes))
            ordered = codes[order]
            starts = run_starts(ordered)
        rows = order[starts].astype(np.int64)
        sends_per_identity = np.diff(np.append(starts, ordered.size)).astype(np.int64)
        return ordered[starts], rows, outcome[rows], sends_per_identity

    @property
    def send_keys(self) -> U64:
        """Distinct identities sent, sorted."""
        return self._sends_by_identity[0]

    @property
    def send_rows(self) -> I64:
        """For each of ``send_keys``, the ``sends`` row that stands for it."""
        return self._sends_by_identity[1]

    @property
    def send_key_outcome(self) -> npt.NDArray[np.uint8]:
        """For each of ``send_keys``, its outcome (the best one if sent more than once)."""
        return self._sends_by_identity[2]

    @property
    def send_key_sends(self) -> I64:
        """For each of ``send_keys``, how many times the workload sent it (a flow's outbox sends
        an event again when the first send's outcome was not ok)."""
        return self._sends_by_identity[3]

    # -- receives by identity ------------------------------------------------------------------

    @cached_property
    def receive_order(self) -> I64:
        """Receive rows sorted by identity (deliveries of one identity in no particular order)."""
        return _argsort(self.identities.receives)

    @cached_property
    def _receive_groups(self) -> tuple[U64, I64, I64]:
        ordered = self.identities.receives[self.receive_order]
        starts = run_starts(ordered)
        counts = np.diff(np.append(starts, ordered.size))
        return ordered[starts], starts, counts

    @property
    def receive_keys(self) -> U64:
        """Distinct identities received, sorted."""
        return self._receive_groups[0]

    @property
    def receive_starts(self) -> I64:
        """Where each of ``receive_keys`` starts in ``receive_order``."""
        return self._receive_groups[1]

    @property
    def receive_counts(self) -> I64:
        """How many times each of ``receive_keys`` was delivered."""
        return self._receive_groups[2]

    @cached_property
    def first_delivery(self) -> I64:
        """For each of ``receive_keys``, the row of its first delivery: earliest
        ``receive_ns``, then lowest row."""
        first = self.receive_order[self.receive_starts]
        counts = self.receive_counts
        repeated = counts > 1
        if repeated.any():
            in_repeated = np.repeat(repeated, counts)
            rows = self.receive_order[in_repeated]
            group = np.repeat(np.flatnonzero(repeated), counts[repeated])
            by_time = np.lexsort((rows, self.receive_time[rows], group))
            group_starts = run_starts(group[by_time])
            first[repeated] = rows[by_time][group_starts]
        return first

    # -- joins -----------------------------------------------------------------------------------

    @cached_property
    def _sent_and_received(self) -> tuple[Bool, Bool]:
        return sorted_members(self.send_keys, self.receive_keys)

    @property
    def send_received(self) -> Bool:
        """For each of ``send_keys``, whether it was delivered at least once."""
        return self._sent_and_received[0]

    @property
    def receive_sent(self) -> Bool:
        """For each of ``receive_keys``, whether some send carried it."""
        return self._sent_and_received[1]

    # -- receive order ---------------------------------------------------------------------------

    @cached_property
    def time_sorted(self) -> bool:
        """Whether the receive rows are already in receive order (as the shards are)."""
        time = self.receive_time
        return time.size < 2 or bool(np.all(time[1:] >= time[:-1]))

    @cached_property
    def time_order(self) -> I64:
        """Receive rows in receive order: by ``receive_ns``, then row (a poll returns a batch
        with one ``receive_ns``; its rows are in delivery order)."""
        time = self.receive_time
        if self.time_sorted:
            return np.arange(time.size, dtype=np.int64)
        # A stable sort is a timsort: it merges the runs it finds, and an identity range's
        # receives are runs in time (one per producer+key, by seq). On an identity range of a
        # real run it took a third of the time of a quicksort on (time, row) keys.
        return np.argsort(time, kind="stable").astype(np.int64)

    @cached_property
    def time_rank(self) -> U64:
        """Each receive row's position in ``time_order``."""
        size = self.receive_time.size
        if self.time_sorted:
            return np.arange(size, dtype=np.uint64)
        rank = np.empty(size, dtype=np.uint64)
        rank[self.time_order] = np.arange(size, dtype=np.uint64)
        return rank

    @cached_property
    def scoped_first_deliveries(self) -> I64:
        """The first deliveries that carry a scope, by scope, then in receive order: where a
        scope's handoffs between consumers show (ordering's rebalances, and their parts in
        each identity range)."""
        scope_codes, scopes = self.scope
        rows = self.first_delivery
        chosen = np.zeros(self.receives.num_rows, dtype=np.bool_)
        chosen[rows[scope_codes[rows] >= 0]] = True
        if self.time_sorted:
            in_time = np.flatnonzero(chosen)
        else:
            in_time = self.time_order[chosen[self.time_order]]
        del chosen
        scope = scope_codes[in_time]
        narrow = np.uint8 if scopes <= 1 << 8 else np.uint16 if scopes <= 1 << 16 else None
        # A stable sort on 8 or 16 bits is a radix sort: linear time.
        by_scope = np.argsort(scope.astype(narrow) if narrow else scope, kind="stable")
        ordered: I64 = in_time[by_scope].astype(np.int64)
        return ordered

    # -- examples --------------------------------------------------------------------------------

    def send_records(self, rows: npt.NDArray[np.integer]) -> list[dict[str, object]]:
        """A few ``sends`` rows as dicts (for examples)."""
        return _records(self.sends, rows)

    def receive_records(self, rows: npt.NDArray[np.integer]) -> list[dict[str, object]]:
        """A few ``receives`` rows as dicts (for examples)."""
        return _records(self.receives, rows)


def _records(table: pa.Table, rows: npt.NDArray[np.integer]) -> list[dict[str, object]]:
    picked = table.take(pa.array(np.asarray(rows, dtype=np.int64)))
    records: list[dict[str, object]] = picked.to_pylist()
    return records
