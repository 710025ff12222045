"""``SendLog``: one producer's sends in preallocated columns, the batched send path's recorder.

A batch of sends is recorded with one call (``invoked``) that writes the invoke columns of
consecutive rows; the driver then reports each outcome by row index (``ok`` / ``failed``, the
``SendCompletions`` sink of ``harness.drivers.base``), from whatever thread it calls back on.
No object is kept per message: rows live in blocks of ``BLOCK_ROWS`` columns, completions write
their row in place and append its index to a list, and ``harvest`` turns every row completed
since the last harvest into one columnar append to the ``sends`` shard. ``close`` writes the
rows whose outcome never arrived as unknown with no ``complete_ns``, as ``Recorder`` does.
"""

import array
import time
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import pyarrow as pa  # type: ignore[import-untyped]

from harness.drivers.base import Outcome
from harness.history.schema import SendOutcome
from harness.history.shards import ShardWriter

BLOCK_SHIFT = 14
BLOCK_ROWS = 1 << BLOCK_SHIFT
_ROW_MASK = BLOCK_ROWS - 1
_PENDING = 255
_OUTCOMES = {Outcome.FAIL: SendOutcome.FAIL, Outcome.UNKNOWN: SendOutcome.UNKNOWN}


class _Block:
    """Columns of ``BLOCK_ROWS`` consecutive sends. The invoke columns are numpy (written a
    batch at a time), the completion columns ``array.array`` (written a row at a time from
    Python, which ``array`` does fastest) read through numpy views."""

    __slots__ = (
        "complete_ns",
        "harvested",
        "intended_ns",
        "invoke_ns",
        "key_id",
        "offset",
        "outcome",
        "partition",
        "seq",
        "views",
    )

    def __init__(self) -> None:
        self.key_id = np.zeros(BLOCK_ROWS, np.uint32)
        self.seq = np.zeros(BLOCK_ROWS, np.uint64)
        self.intended_ns = np.zeros(BLOCK_ROWS, np.int64)
        self.invoke_ns = np.zeros(BLOCK_ROWS, np.int64)
        self.complete_ns = array.array("q", bytes(8 * BLOCK_ROWS))
        self.outcome = array.array("B", bytes([_PENDING]) * BLOCK_ROWS)
        self.partition = array.array("i", bytes(4 * BLOCK_ROWS))
        self.offset = array.array("q", bytes(8 * BLOCK_ROWS))
        self.views = [
            np.frombuffer(column, dtype)
            for column, dtype in (
                (self.complete_ns, np.int64),
                (self.outcome, np.uint8),
                (self.partition, np.int32),
                (self.offset, np.int64),
            )
        ]
        self.harvested = 0


@dataclass(frozen=True)
class Harvest:
    """What completed since the previous harvest (for Locust's statistics and progress)."""

    publish_ms: npt.NDArray[np.float64] = field(default_factory=lambda: np.empty(0))
    """Publish latency (complete - invoke) of every completed send, ok or not."""
    errors: list[str] = field(default_factory=list)
    """One entry per send that failed or ended unknown."""

    @property
    def completed(self) -> int:
        return len(self.publish_ms)


class SendLog:
    """The sends of producer ``producer_id``, written to ``writer`` (the process's ``sends``
    shard) as they complete. ``ok``/``failed`` may run on any thread; ``invoked``, ``harvest``
    and ``close`` on the producer's own."""

    def __init__(self, writer: ShardWriter, producer_id: int) -> None:
        self._writer = writer
        self._producer_id = producer_id
        self._blocks: dict[int, _Block] = {}
        self._next_index = 0
        self._done: list[int] = []
        self._errors: dict[int, str] = {}
        self.invoked_total = 0
        self.harvested_total = 0

    def invoked(
        self,
        key_ids: npt.NDArray[np.uint32],
        seqs: npt.NDArray[np.uint64],
        intended_ns: npt.NDArray[np.int64],
        invoke_ns: int,
    ) -> int:
        """Sends of these messages were invoked at ``invoke_ns``; returns the first one's row
        index (the rest follow consecutively): give it to the driver's ``send_batch``."""
        first = self._next_index
        count = len(key_ids)
        written = 0
        while written < count:
            index = first + written
            block = self._blocks.get(index >> BLOCK_SHIFT)
            if block is None:
                block = self._blocks[index >> BLOCK_SHIFT] = _Block()
            start = index & _ROW_MASK
            take = min(count - written, BLOCK_ROWS - start)
            rows = slice(start, start + take)
            block.key_id[rows] = key_ids[written : written + take]
            block.seq[rows] = seqs[written : written + take]
            block.intended_ns[rows] = intended_ns[written : written + take]
            block.invoke_ns[rows] = invoke_ns
            written += take
        self._next_index += count
        self.invoked_total += count
        return first

    def ok(self, index: int, partition: int = -1, offset: int = -1) -> None:
        block = self._blocks.get(index >> BLOCK_SHIFT)
        if block is None:  # closed: the send was written as unknown
            return
        row = index & _ROW_MASK
        block.complete_ns[row] = time.time_ns()
        block.partition[row] = partition
        block.offset[row] = offset
        block.outcome[row] = SendOutcome.OK  # last: a harvest reads the row only after this
        self._done.append(index)

    def failed(self, index: int, outcome: Outcome, error: str) -> None:
        block = self._blocks.get(index >> BLOCK_SHIFT)
        if block is None:
            return
        row = index & _ROW_MASK
        block.complete_ns[row] = time.time_ns()
        block.partition[row] = -1
        block.offset[row] = -1
        self._errors[index] = error
        block.outcome[row] = _OUTCOMES[outcome]
        self._done.append(index)

    def harvest(self) -> Harvest:
        """Write every send completed since the last harvest to the shard."""
        done = self._done
        count = len(done)  # completions appended after this stay for the next harvest
        if count == 0:
            return Harvest()
        indexes = np.array(done[:count], np.int64)
        del done[:count]
        self.harvested_total += count
        block_ids = indexes >> BLOCK_SHIFT
        one_block = block_ids[0] == block_ids[-1] and (block_ids == block_ids[0]).all()
        publish: list[npt.NDArray[np.float64]] = []
        errors: list[str] = []
        for block_id in [int(block_ids[0])] if one_block else np.unique(block_ids).tolist():
            block = self._blocks[block_id]
            rows = (indexes if one_block else indexes[block_ids == block_id]) & _ROW_MASK
            complete_ns, outcome, partition, offset = (view[rows] for view in block.views)
            invoke_ns = block.invoke_ns[rows]
            self._append(block, rows, invoke_ns, complete_ns, outcome, partition, offset)
            publish.append((complete_ns - invoke_ns) / 1e6)
            failed = np.flatnonzero(outcome != SendOutcome.OK)
            if len(failed):
                base = block_id << BLOCK_SHIFT
                errors += [self._errors.pop(base + int(rows[i]), "") for i in failed]
            block.harvested += len(rows)
            if block.harvested == BLOCK_ROWS:
                del self._blocks[block_id]
        return Harvest(np.concatenate(publish), errors)

    def _append(  # noqa: PLR0917 - the sends columns, in schema order
        self,
        block: _Block,
        rows: npt.NDArray[np.int64],
        invoke_ns: npt.NDArray[np.int64],
        complete_ns: pa.Array | npt.NDArray[np.int64],
        outcome: npt.NDArray[np.uint8],
        partition: npt.NDArray[np.int32],
        offset: npt.NDArray[np.int64],
    ) -> None:
        self._writer.append_columns(
            [
                np.full(len(rows), self._producer_id, np.uint32),
                block.key_id[rows],
                block.seq[rows],
                block.intended_ns[rows],
                invoke_ns,
                complete_ns,
                outcome,
                partition,
                offset,
            ]
        )

    @property
    def in_flight(self) -> int:
        """Sends invoked whose outcome has not been harvested yet."""
        return self.invoked_total - self.harvested_total

    def close(self) -> None:
        """Harvest, then write the sends still without an outcome as unknown; idempotent."""
        self.harvest()
        blocks, self._blocks = self._blocks, {}
        for block_id, block in sorted(blocks.items()):
            reserved = min(BLOCK_ROWS, self._next_index - (block_id << BLOCK_SHIFT))
            outcome = block.views[1][:reserved]
            rows = np.flatnonzero(outcome == _PENDING).astype(np.int64)
            if len(rows) == 0:
                continue
            self._append(
                block,
                rows,
                block.invoke_ns[rows],
                pa.nulls(len(rows), pa.int64()),
                np.full(len(rows), SendOutcome.UNKNOWN, np.uint8),
                np.full(len(rows), -1, np.int32),
                np.full(len(rows), -1, np.int64),
            )
