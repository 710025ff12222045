"""``Recorder``: how a process writes its part of the run's history.

One recorder per process (producer, consumer, nemesis, runner), each with a label unique within
the run; it appends to that process's shards (``harness.history.shards``). A send is recorded
in two steps, like a Jepsen operation: ``send_invoked`` when ``Producer.send`` is called, then
``send_completed`` from the driver's callback (often another thread). Only completed sends are
written; ``close`` writes those still pending with outcome unknown and no ``complete_ns``,
because a message whose outcome never arrived may or may not have reached the broker.

Deliveries are recorded one by one (``received``) or many at a time as columns
(``received_batch``, the raw consumers' hot path); both write the same rows.
"""

import itertools
import json
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeAlias

import numpy as np
import numpy.typing as npt
import pyarrow as pa  # type: ignore[import-untyped]

from harness.history.envelope import EnvelopeColumns
from harness.history.schema import EVENTS, RECEIVES, SENDS, Disposition, EventKind, SendOutcome
from harness.history.send_log import SendLog
from harness.history.shards import BATCH_ROWS, ShardWriter

__all__ = [
    "Recorder",
    "SendToken",
    "ShardWriter",
    "partition_scope",
    "partition_scopes",
    "record_failed_acks",
]

SendToken: TypeAlias = int
"""Returned by ``send_invoked``; hand it to ``send_completed``."""

_PendingSend: TypeAlias = tuple[int, int, int, int, int]
_IntColumn: TypeAlias = Sequence[int] | npt.NDArray[np.integer[Any]]
_STRING_DICTIONARY = RECEIVES.field("scope").type
_partition_names = pa.array([], pa.string())


def partition_scope(partition: int) -> str:
    """The ``scope`` of a delivery from a Kafka partition (``docs/history.md``)."""
    return f"p{partition}"


def partition_scopes(partitions: _IntColumn) -> pa.DictionaryArray:
    """``partition_scope`` of every partition, as a dictionary array whose codes are the
    partition numbers themselves (no string per row)."""
    global _partition_names  # noqa: PLW0603 - grown, never shrunk: a cache of the names
    codes = pa.array(partitions, type=pa.int32())
    if len(codes) == 0:
        return pa.DictionaryArray.from_arrays(codes, _partition_names[:0])
    values = codes.to_numpy()
    low, high = int(values.min()), int(values.max())
    if low < 0:
        raise ValueError(f"partition {low} has no scope")
    if high >= len(_partition_names):
        size = max(high + 1, 2 * len(_partition_names))
        _partition_names = pa.array([partition_scope(p) for p in range(size)], pa.string())
    return pa.DictionaryArray.from_arrays(codes, _partition_names[: high + 1])


class Recorder:
    """Records one process's sends, receives and events; thread-safe.

    Writes ``RUN_DIR/history/shards/{sends,receives,events}-<process_label>+<part>.arrow``
    (the first parts created empty at construction; a new part each ``PART_BYTES``). Call
    ``close`` (or use it as a context manager) when the process is done; a crash loses at most
    the rows not yet flushed, at most ``batch_rows`` per table.
    """

    def __init__(self, run_dir: Path, process_label: str, *, batch_rows: int = BATCH_ROWS) -> None:
        self.process_label = process_label
        writers: list[ShardWriter] = []
        try:
            for table, schema in (("sends", SENDS), ("receives", RECEIVES), ("events", EVENTS)):
                writers.append(
                    ShardWriter.for_process(
                        run_dir, table, process_label, schema, batch_rows=batch_rows
                    )
                )
        except BaseException:
            for writer in writers:
                writer.close()
            raise
        self._sends, self._receives, self._events = writers
        self._pending: dict[SendToken, _PendingSend] = {}
        self._tokens = itertools.count()
        # Guards _pending and _closed, and is held while a completed send is appended so that
        # close() cannot slip between the two.
        self._lock = threading.Lock()
        self._closed = False
        self._send_logs: list[SendLog] = []

    def send_log(self, producer_id: int) -> SendLog:
        """A columnar log of producer ``producer_id``'s sends (the batched send path), written
        to this recorder's ``sends`` shard and closed with it."""
        log = SendLog(self._sends, producer_id)
        self._send_logs.append(log)
        return log

    def send_invoked(
        self, producer_id: int, key_id: int, seq: int, intended_ns: int, invoke_ns: int
    ) -> SendToken:
        """A send was invoked; nothing is written until it completes (or the recorder closes)."""
        with self._lock:
            if self._closed:
                raise RuntimeError(f"recorder {self.process_label} is closed")
            token = next(self._tokens)
            self._pending[token] = (producer_id, key_id, seq, intended_ns, invoke_ns)
        return token

    def send_completed(
        self,
        token: SendToken,
        outcome: SendOutcome,
        complete_ns: int,
        partition: int = -1,
        offset: int = -1,
    ) -> None:
        """The outcome of the send ``token`` arrived; writes its ``sends`` row.

        A completion arriving after ``close`` is ignored: the send was already written as
        unknown. Completing a token twice while open is a bug and raises ``KeyError``.
        """
        with self._lock:
            pending = self._pending.pop(token, None)
            if pending is None:
                if self._closed:
                    return
                raise KeyError(f"send token {token} is not pending (completed twice?)")
            self._sends.append((*pending, complete_ns, outcome, partition, offset))

    def received(
        self,
        *,
        consumer_id: int,
        producer_id: int,
        key_id: int,
        seq: int,
        intended_ns: int,
        receive_ns: int,
        disposition: Disposition,
        partition: int = -1,
        offset: int = -1,
        message_id: str | None = None,
        delivery_attempt: int = 0,
        scope: str | None = None,
        subscriber: str | None = None,
    ) -> None:
        """One delivery (a redelivery is another row); the arguments are ``receives``' columns,
        keyword-only because most are integers that are easy to swap."""
        self._receives.append(
            (
                consumer_id,
                producer_id,
                key_id,
                seq,
                intended_ns,
                receive_ns,
                partition,
                offset,
                message_id,
                delivery_attempt,
                disposition,
                scope,
                subscriber,
            )
        )

    def received_batch(
        self,
        *,
        consumer_id: int,
        envelopes: EnvelopeColumns,
        receive_ns: _IntColumn,
        disposition: Disposition,
        partitions: _IntColumn | None = None,
        offsets: _IntColumn | None = None,
        message_ids: Sequence[str | None] | None = None,
        delivery_attempts: _IntColumn | None = None,
        scopes: pa.Array | Sequence[str | None] | None = None,
    ) -> int:
        """Deliveries as columns (a poll's, or several polls'), one entry per delivery, in
        delivery order: the rows ``received`` would write, except that rows of foreign
        envelopes are left out. A column left None takes ``received``'s default in every row.
        Returns the rows written."""
        rows = len(envelopes)
        columns: list[Any] = [
            np.full(rows, consumer_id, np.uint32),
            envelopes.producer_id,
            envelopes.key_id,
            envelopes.seq,
            envelopes.intended_ns,
            receive_ns,
            np.full(rows, -1, np.int32) if partitions is None else partitions,
            np.full(rows, -1, np.int64) if offsets is None else offsets,
            pa.nulls(rows, _STRING_DICTIONARY) if message_ids is None else message_ids,
            np.zeros(rows, np.int16) if delivery_attempts is None else delivery_attempts,
            np.full(rows, int(disposition), np.uint8),
            pa.nulls(rows, _STRING_DICTIONARY) if scopes is None else scopes,
            pa.nulls(rows, _STRING_DICTIONARY),  # subscriber: the destination's only group
        ]
        if envelopes.foreign.any():
            ours = pa.array(~envelopes.foreign)
            batch = pa.RecordBatch.from_arrays(
                [pa.array(c, type=f.type) for f, c in zip(RECEIVES, columns, strict=True)],
                schema=RECEIVES,
            ).filter(ours)
            columns = batch.columns
        self._receives.append_columns(columns)
        return len(columns[0])

    def event(
        self,
        kind: EventKind,
        name: str,
        target: str | None = None,
        detail: str | Mapping[str, Any] | None = None,
        *,
        time_ns: int | None = None,
    ) -> None:
        """A fault or phase marker at ``time_ns`` (default: now). A mapping ``detail`` is stored
        as JSON. Events are rare and matter after a crash, so each one is flushed at once."""
        if detail is not None and not isinstance(detail, str):
            detail = json.dumps(detail, sort_keys=True, default=str)
        when = time.time_ns() if time_ns is None else time_ns
        self._events.append((when, kind.value, name, target, detail))
        self._events.flush()

    def flush(self) -> None:
        """Write every buffered row now (the recorder flushes by itself every ``batch_rows``)."""
        for writer in (self._sends, self._receives, self._events):
            writer.flush()

    def close(self) -> None:
        """Write the pending sends as unknown, flush and close the shards; idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            pending, self._pending = self._pending, {}
            try:
                for log in self._send_logs:
                    log.close()
                for row in pending.values():
                    self._sends.append((*row, None, SendOutcome.UNKNOWN, -1, -1))
            finally:
                for writer in (self._sends, self._receives, self._events):
                    writer.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def record_failed_acks(recorder: Recorder, consumer: object, broker: str) -> int:
    """Records an ``ack-failed`` event for the acks ``consumer`` gave up on, if any, and
    returns how many. Call it after closing the consumer (its last acks go out then). Drivers
    whose acks can fail apart from the call count them (``failed_acks``, and by error
    ``failed_ack_errors``: SQS, Pub/Sub); the others raise, and the message comes again."""
    count = int(getattr(consumer, "failed_acks", 0))
    if count:
        errors = getattr(consumer, "failed_ack_errors", {})
        recorder.event(EventKind.ACK_FAILED, broker, detail={"count": count, "errors": errors})
    return count
