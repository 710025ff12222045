"""Polls a consumer process has acked but not yet recorded, recorded together.

Recording a poll costs tens of microseconds whatever its size (numpy and Arrow calls, a chunk
in the shard). A consumer keeping up with a moderate rate polls a few messages at a time, where
that fixed cost was most of its CPU; recording the polls of the last fraction of a second
together leaves the per-message cost only. The history is the same: each delivery keeps the
time its own poll returned. Rows wait here no longer than the shard writer's buffer would keep
them anyway, so a crash loses no more than before (``durable_history`` records every poll).
"""

import time
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain
from typing import TypeVar

import numpy as np
import numpy.typing as npt

from harness.drivers.base import ReceivedBatch

MAX_ROWS = 4096
MAX_SECONDS = 0.25

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Deliveries:
    """The pending polls' deliveries as columns, in delivery order (``ReceivedBatch``'s
    columns, None where no poll had one), with the times ``receives`` needs."""

    payloads: list[bytes]
    partitions: Sequence[int] | None
    offsets: Sequence[int] | None
    message_ids: Sequence[str | None] | None
    keys: Sequence[str | None] | None
    delivery_attempts: Sequence[int] | None
    poll_ns: npt.NDArray[np.int64]
    """When each delivery's poll returned (wall clock)."""
    receive_ns: npt.NDArray[np.int64]
    """``poll_ns`` plus the delivery's position in its poll, so the order survives sorting."""

    def __len__(self) -> int:
        return len(self.payloads)


class PendingReceives:
    """Polls in delivery order, each with the wall-clock time (ns) its poll returned."""

    def __init__(self, max_rows: int = MAX_ROWS, max_seconds: float = MAX_SECONDS) -> None:
        self.max_rows = max_rows
        self.max_seconds = max_seconds
        self.rows = 0
        self._batches: list[ReceivedBatch] = []
        self._poll_ns: list[int] = []
        self._due = 0.0

    def add(self, batch: ReceivedBatch, poll_ns: int) -> None:
        if not self._batches:
            self._due = time.monotonic() + self.max_seconds
        self._batches.append(batch)
        self._poll_ns.append(poll_ns)
        self.rows += len(batch)

    def due(self) -> bool:
        """Whether enough rows, or old enough ones, wait to be recorded now."""
        return self.rows >= self.max_rows or (self.rows > 0 and time.monotonic() >= self._due)

    def take(self) -> Deliveries:
        """Every pending delivery; empties the pending polls."""
        batches, poll_ns = self._batches, self._poll_ns
        self._batches, self._poll_ns, self.rows = [], [], 0
        lengths = [len(batch) for batch in batches]
        counts = np.array(lengths, dtype=np.int64)
        per_row_poll_ns = np.repeat(np.array(poll_ns, dtype=np.int64), counts)
        first_rows = np.repeat(np.cumsum(counts) - counts, counts)
        positions = np.arange(per_row_poll_ns.size, dtype=np.int64) - first_rows
        receive_ns = per_row_poll_ns + positions
        if len(batches) == 1:
            (batch,) = batches
            return Deliveries(
                batch.payloads,
                batch.partitions,
                batch.offsets,
                batch.message_ids,
                batch.keys,
                batch.delivery_attempts,
                per_row_poll_ns,
                receive_ns,
            )
        return Deliveries(
            payloads=list(chain.from_iterable(batch.payloads for batch in batches)),
            partitions=_joined([b.partitions for b in batches], lengths, -1),
            offsets=_joined([b.offsets for b in batches], lengths, -1),
            message_ids=_joined([b.message_ids for b in batches], lengths, None),
            keys=_joined([b.keys for b in batches], lengths, None),
            delivery_attempts=_joined([b.delivery_attempts for b in batches], lengths, 0),
            poll_ns=per_row_poll_ns,
            receive_ns=receive_ns,
        )


def _joined(
    columns: Sequence[Sequence[T] | None], lengths: list[int], default: T
) -> list[T] | None:
    """One column of several polls; a poll without it contributes ``default`` per row."""
    if all(column is None for column in columns):
        return None
    joined: list[T] = []
    for column, length in zip(columns, lengths, strict=True):
        joined.extend([default] * length if column is None else column)
    return joined
