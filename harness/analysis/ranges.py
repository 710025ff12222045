"""Identity ranges: a history sorted by identity cut into pieces of whole producer+key pairs.

Every checker judges a message by its identity ``(producer_id, key_id, seq)`` and ordering
judges a stream (one producer+key within one scope) as a whole, so a range that holds every
send and every receive of its producer+key pairs can be checked on its own. The compacted files
are sorted by identity (``harness.history.store.SORT_KEYS``): a range is a contiguous slice of
each, read batch by batch, so memory follows the range, not the run.
"""

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pyarrow as pa  # type: ignore[import-untyped, unused-ignore]
import pyarrow.parquet as pq  # type: ignore[import-untyped, unused-ignore]

from harness.history.trusted import DAMAGED_FIX, UntrustedTableError, check_version, conform

U64 = npt.NDArray[np.uint64]
BATCH_ROWS = 256 * 1024
"""Rows read from a Parquet file at a time."""


class NotSortedError(ValueError):
    """The tables are not sorted by identity, so they cannot be cut into ranges."""


@dataclass(frozen=True)
class IdentityRange:
    """Every send and receive of a run of consecutive producer+key pairs."""

    sends: pa.Table
    receives: pa.Table
    first_receive_row: int
    """The row of ``receives``' first row in the whole receives table (ties in receive order
    are broken by that row)."""


def pairs(table: pa.Table | pa.RecordBatch) -> U64:
    """Each row's producer+key as one ordered ``uint64``: ``producer_id << 32 | key_id``."""
    producer = np.asarray(table.column("producer_id").to_numpy(), dtype=np.uint64)
    key = np.asarray(table.column("key_id").to_numpy(), dtype=np.uint64)
    packed: U64 = (producer << np.uint64(32)) | key
    return packed


class _Buffered:
    """Batches read ahead from one identity-sorted stream, handed out by producer+key bound."""

    def __init__(self, batches: Iterable[pa.RecordBatch], schema: pa.Schema, what: str) -> None:
        self._batches = iter(batches)
        self._schema = schema
        self._what = what
        self._held: list[pa.Table] = []
        self._pairs: list[U64] = []
        self.rows = 0
        self.exhausted = False

    def _read_one(self) -> bool:
        for batch in self._batches:
            if not batch.num_rows:
                continue
            found = pairs(batch)
            previous = self._pairs[-1][-1] if self._pairs else None
            if np.any(found[1:] < found[:-1]) or (previous is not None and found[0] < previous):
                raise NotSortedError(f"the {self._what} are not sorted by producer_id, key_id")
            self._held.append(pa.Table.from_batches([batch], schema=self._schema))
            self._pairs.append(found)
            self.rows += batch.num_rows
            return True
        self.exhausted = True
        return False

    def _last_pair(self) -> int | None:
        return int(self._pairs[-1][-1]) if self._pairs else None

    def bound_after(self, rows: int) -> int | None:
        """The smallest producer+key that starts the next range so that this one holds at
        least ``rows`` rows (and whole pairs); None: everything left."""
        while self.rows <= rows and not self.exhausted:
            self._read_one()
        if self.rows <= rows:
            return None
        held = np.concatenate(self._pairs)
        bound = int(held[rows])
        if bound == int(held[0]):  # one pair larger than a range: it still goes whole
            while not self.exhausted and self._last_pair() == bound:
                self._read_one()
            held = np.concatenate(self._pairs)
            after = held[held > np.uint64(bound)]
            return int(after[0]) if after.size else None
        return bound

    def take_below(self, bound: int | None) -> pa.Table:
        """Every row whose producer+key is below ``bound`` (all rows if None)."""
        while not self.exhausted and (bound is None or (self._last_pair() or 0) < bound):
            if not self._read_one():
                break
        table = pa.concat_tables(self._held) if self._held else self._schema.empty_table()
        held = np.concatenate(self._pairs) if self._pairs else np.zeros(0, dtype=np.uint64)
        cut = held.size if bound is None else int(np.searchsorted(held, np.uint64(bound)))
        taken, rest = table.slice(0, cut), table.slice(cut)
        self._held = [rest] if rest.num_rows else []
        self._pairs = [held[cut:]] if rest.num_rows else []
        self.rows = rest.num_rows
        # One chunk per column (dictionaries unified): the checkers' takes and conversions
        # on a table of many batches would otherwise unify and concatenate again each time.
        return taken.combine_chunks()


def identity_ranges(
    sends: Iterable[pa.RecordBatch],
    receives: Iterable[pa.RecordBatch],
    schemas: tuple[pa.Schema, pa.Schema],
    messages_per_range: int,
) -> Iterator[IdentityRange]:
    """Cut two identity-sorted streams of batches into ranges of about ``messages_per_range``
    sends each (whole producer+key pairs; receives whose producer+key no send has go with
    their neighbours). Raises ``NotSortedError`` on a stream out of order."""
    if messages_per_range < 1:
        raise ValueError(f"messages_per_range must be positive, got {messages_per_range}")
    send_buffer = _Buffered(sends, schemas[0], "sends")
    receive_buffer = _Buffered(receives, schemas[1], "receives")
    first_row = 0
    while True:
        bound = send_buffer.bound_after(messages_per_range)
        sent = send_buffer.take_below(bound)
        received = receive_buffer.take_below(bound)
        if sent.num_rows or received.num_rows:
            yield IdentityRange(sent, received, first_row)
        first_row += received.num_rows
        if bound is None:
            return


def table_batches(table: pa.Table, rows: int = BATCH_ROWS) -> Iterator[pa.RecordBatch]:
    """An in-memory table as a stream of batches (tests, and histories already loaded)."""
    yield from table.to_batches(max_chunksize=rows)


def parquet_batches(
    path: Path,
    schema: pa.Schema,
    columns: list[str] | None = None,
    first_row: int = 0,
    rows: int | None = None,
) -> Iterator[pa.RecordBatch]:
    """A history Parquet file as trusted batches of ``schema`` (``columns`` only, if given),
    from row ``first_row`` on (``rows`` of them, or all): the checks of
    ``harness.history.trusted``, batch by batch.
    Reading starts at the row group holding ``first_row`` (the rows before it in that group
    are decoded and dropped: Parquet has no finer way in)."""
    try:
        # pre_buffer would keep every column chunk read so far: memory growing with the file.
        parquet = pq.ParquetFile(path, pre_buffer=False)
    except (pa.ArrowException, OSError, ValueError, EOFError) as exc:
        raise UntrustedTableError(
            f"{path}: unreadable, truncated or not Parquet: {DAMAGED_FIX}"
        ) from exc
    check_version(parquet.schema_arrow.metadata, str(path))
    wanted = schema if columns is None else pa.schema([schema.field(name) for name in columns])
    metadata = parquet.metadata
    groups: list[int] = []
    skip, group_start = first_row, 0
    for group in range(metadata.num_row_groups):
        group_end = group_start + metadata.row_group(group).num_rows
        if group_end > first_row and (rows is None or group_start < first_row + rows):
            if not groups:
                skip = first_row - group_start
            groups.append(group)
        group_start = group_end
    if not groups:
        return
    batches = parquet.iter_batches(batch_size=BATCH_ROWS, columns=wanted.names, row_groups=groups)
    left = -1 if rows is None else rows
    for batch in batches:
        if skip >= batch.num_rows:
            skip -= batch.num_rows
            continue
        if left == 0:
            return
        kept = batch.slice(skip) if left < 0 else batch.slice(skip, left)
        table = conform(pa.Table.from_batches([kept]), wanted, str(path))
        skip = 0
        if left > 0:
            left -= kept.num_rows
        yield from table.to_batches()
