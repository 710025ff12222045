"""Receiving ahead of the caller: the engine behind the SQS and Pub/Sub ``poll_batch`` (their
``ack_batch`` queues acks on a ``harness.drivers.batcher.Batcher``; ``FailedAcks`` counts the
background acks that failed).

Receiver threads call the broker (a long poll) and put what arrives in a buffer that ``take``
drains, so a round trip to the broker overlaps the caller's handling of the previous batch.
One receiver polls while the broker answers with less than a full receive; when a receive comes
back full (a backlog), the other receivers join in, up to ``threads`` receives in flight. The
buffer is bounded (a message waiting in it uses up its visibility timeout / ack deadline).

What was received but never taken is never acked: ``close`` hands it to ``release`` (make it
visible again now), and the broker would deliver it again after its timeout regardless.
"""

import collections
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeAlias, TypeVar

from harness.drivers.base import Received, ReceivedBatch

_log = logging.getLogger(__name__)

ERROR_BACKOFF_SECONDS = 0.5
C = TypeVar("C")


Fields: TypeAlias = tuple[str, bytes, str, int, Any]
"""What a driver reads from one received message: key, payload, message id, delivery attempt
(0 where the broker does not count) and the ack handle."""


def empty_batch() -> ReceivedBatch:
    return ReceivedBatch(payloads=[], message_ids=[], keys=[], delivery_attempts=[], handle=[])


def as_batch(messages: Sequence[Fields]) -> ReceivedBatch:
    """Received messages as a batch's columns (``handle``: the list of ack handles)."""
    if not messages:
        return empty_batch()
    keys, payloads, message_ids, attempts, handles = map(list, zip(*messages, strict=True))
    return ReceivedBatch(
        payloads=payloads,
        message_ids=message_ids,
        keys=keys,
        delivery_attempts=attempts,
        handle=handles,
    )


def as_received(messages: Sequence[Fields]) -> list[Received]:
    """Received messages for the per-message ``Consumer.poll``."""
    return [
        Received(key, payload, message_id, delivery_attempt=attempt or None, handle=handle)
        for key, payload, message_id, attempt, handle in messages
    ]


def merge(batches: list[ReceivedBatch]) -> ReceivedBatch:
    """One batch of the messages of ``batches``, in order (their handles are lists)."""
    if len(batches) == 1:
        return batches[0]
    merged = empty_batch()
    for batch in batches:
        merged.payloads.extend(batch.payloads)
        for column in ("message_ids", "keys", "delivery_attempts", "handle"):
            getattr(merged, column).extend(getattr(batch, column) or ())
    return merged


def _cut(column: list[C] | None, start: int, stop: int | None) -> list[C] | None:
    return None if column is None else column[start:stop]


def split(batch: ReceivedBatch, count: int) -> tuple[ReceivedBatch, ReceivedBatch]:
    """The first ``count`` messages of ``batch``, and the rest."""

    def part(start: int, stop: int | None) -> ReceivedBatch:
        return ReceivedBatch(
            payloads=batch.payloads[start:stop],
            message_ids=_cut(batch.message_ids, start, stop),
            keys=_cut(batch.keys, start, stop),
            delivery_attempts=_cut(batch.delivery_attempts, start, stop),
            handle=batch.handle[start:stop],
        )

    return part(0, count), part(count, None)


class Prefetcher:
    """Receives on background threads; ``take`` returns what arrived (see the module).

    ``receive()`` makes one receive call (a long poll of about a second, so that ``close`` is
    prompt) and returns its messages as a batch whose ``handle`` is a list of per-message ack
    handles; a receive that returns ``full`` messages means more are waiting.
    """

    def __init__(
        self,
        receive: Callable[[], ReceivedBatch],
        *,
        name: str,
        threads: int,
        full: int,
        max_buffered: int,
        release: Callable[[ReceivedBatch], None],
    ) -> None:
        self._receive = receive
        self._release = release
        self._full = full
        self._max_buffered = max_buffered
        self._batches: collections.deque[ReceivedBatch] = collections.deque()
        self._buffered = 0
        self._receiving = 0
        self._backlog = False
        self._error: Exception | None = None
        self._late: list[ReceivedBatch] = []
        """Received after ``close`` began: released, never taken."""
        self._stopped = threading.Event()
        lock = threading.Lock()
        self._arrived = threading.Condition(lock)
        self._may_receive = threading.Condition(lock)
        self._threads = [
            threading.Thread(target=self._receive_forever, name=f"{name}-{n}", daemon=True)
            for n in range(threads)
        ]
        for thread in self._threads:
            thread.start()

    def take(self, max_messages: int, timeout: float) -> ReceivedBatch:
        """Up to ``max_messages`` received messages, waiting at most ``timeout`` seconds for the
        first. Raises the last receive error when nothing is buffered (the broker may be down)."""
        deadline = time.monotonic() + timeout
        taken: list[ReceivedBatch] = []
        with self._arrived:
            while not self._batches:
                if self._error is not None:
                    error, self._error = self._error, None
                    raise error
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._stopped.is_set():
                    return empty_batch()
                self._arrived.wait(remaining)
            wanted = max_messages
            while self._batches and wanted > 0:
                batch = self._batches.popleft()
                if len(batch) > wanted:
                    batch, rest = split(batch, wanted)
                    self._batches.appendleft(rest)
                taken.append(batch)
                wanted -= len(batch)
            self._buffered -= max_messages - wanted
            self._may_receive.notify()
        return merge(taken)

    def close(self) -> None:
        """Stop the receivers (each finishes its current receive) and release what was
        received but not taken."""
        self._stopped.set()
        with self._arrived:
            self._may_receive.notify_all()
            self._arrived.notify_all()
        for thread in self._threads:
            thread.join(timeout=30)
        with self._arrived:
            left = [*self._batches, *self._late]
            self._batches.clear()
            self._late.clear()
            self._buffered = 0
        if left:
            try:
                self._release(merge(left))
            except Exception as exc:  # they come back after their timeout anyway
                _log.warning("could not release %d prefetched messages: %s", len(left), exc)

    def _may_start_receive(self) -> bool:
        if self._stopped.is_set():
            return True
        if self._buffered >= self._max_buffered:
            return False
        return not self._receiving or self._backlog

    def _receive_forever(self) -> None:
        while True:
            with self._may_receive:
                while not self._may_start_receive():
                    self._may_receive.wait()
                if self._stopped.is_set():
                    return
                self._receiving += 1
            error: Exception | None = None
            batch = None
            try:
                batch = self._receive()
            except Exception as exc:
                error = exc
            with self._may_receive:
                self._receiving -= 1
                if error is not None:
                    self._error = error
                    self._arrived.notify()
                elif batch:
                    if self._stopped.is_set():
                        self._late.append(batch)
                    else:
                        self._batches.append(batch)
                        self._buffered += len(batch)
                        self._arrived.notify()
                    self._backlog = len(batch) >= self._full
                else:
                    self._backlog = False
                if self._backlog:
                    self._may_receive.notify()  # another receiver may join
            if error is not None:
                self._stopped.wait(ERROR_BACKOFF_SECONDS)


class FailedAcks:
    """Counts messages whose background ack failed (the broker delivers them again, which the
    checkers see as redeliveries) and logs the first error of each kind."""

    def __init__(self, broker: str) -> None:
        self.broker = broker
        self.count = 0
        self._kinds: set[str] = set()
        self._lock = threading.Lock()

    def add(self, count: int, error: Exception | str) -> None:
        kind = type(error).__name__ if isinstance(error, Exception) else error.split(":", 1)[0]
        with self._lock:
            self.count += count
            first = kind not in self._kinds
            self._kinds.add(kind)
        if first:  # once per kind: a fault can fail thousands
            _log.warning("%s: acking failed (they come again): %s", self.broker, error)
