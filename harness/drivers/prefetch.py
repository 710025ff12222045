"""Receiving ahead of the caller: the engine behind the SQS and Pub/Sub ``poll_batch`` (their
``ack_batch`` queues acks on a ``harness.drivers.batcher.Batcher``; ``FailedAcks`` counts the
background acks that failed).

Receiver threads call the broker (a long poll) and put what arrives in a buffer that ``take``
drains, so a round trip to the broker overlaps the caller's handling of the previous batch.
The buffer is bounded (a message waiting in it uses up its visibility timeout / ack deadline).

A receive costs about as much CPU whether it brings 1 message or 10, and messages arrive in
bursts (a producer's requests), so the receivers pace themselves:

- One receiver polls at a time. With ``max_linger``, after a receive that brought messages it
  waits, like a producer's linger, until a full receive's worth is due at the rate messages
  arrive (``harness.drivers.batcher.linger_for_rate``): fewer receives, more latency.
- A long poll returns as soon as the first message lands. With ``settle``, a receive whose
  newest message was sent after the poll began (it caught the start of a burst) waits
  ``SETTLE_SECONDS`` for the rest to land and takes it in the same turn.
- When a receive comes back full and its oldest message has waited in the broker longer than
  the pacing explains (a backlog), the receiver goes on at once and the others join in, up to
  ``threads`` receives in flight, until the backlog is gone.

What was received but never taken is never acked: ``close`` hands it to ``release`` (make it
visible again now), and the broker would deliver it again after its timeout regardless.
"""

import collections
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias, TypeVar

from harness.drivers.base import Received, ReceivedBatch
from harness.drivers.batcher import ArrivalRate, linger_for_rate

_log = logging.getLogger(__name__)

ERROR_BACKOFF_SECONDS = 0.5
SETTLE_SECONDS = 0.005
"""How long a burst that a long poll caught the start of takes to land, at most."""
BEHIND_MARGIN_SECONDS = 0.02
"""A message waits in the broker at most about the pacing's linger; one older than that plus
this margin (clocks, round trips) shows a backlog."""
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


@dataclass(frozen=True, slots=True)
class Receipt:
    """One receive call's answer: its messages, and when the broker took the oldest and the
    newest of them (epoch seconds; None where unknown)."""

    batch: ReceivedBatch
    oldest_sent: float | None = None
    newest_sent: float | None = None


Receive: TypeAlias = Callable[[bool], Receipt]
"""One receive call: a long poll (``True``, about a second, so that ``close`` is prompt) or an
answer at once (``False``). Its batch's ``handle`` is the list of per-message ack handles."""


class Prefetcher:
    """Receives on background threads; ``take`` returns what arrived (see the module).
    ``full``: the most one receive returns."""

    def __init__(
        self,
        receive: Receive,
        *,
        name: str,
        threads: int,
        full: int,
        max_buffered: int,
        release: Callable[[ReceivedBatch], None],
        max_linger: float = 0.0,
        settle: bool = False,
    ) -> None:
        self._receive = receive
        self._release = release
        self._full = full
        self._max_buffered = max_buffered
        self._max_linger = max_linger
        self._settle = settle
        self._rate = ArrivalRate()
        self._linger = 0.0
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
            pause = self._receive_turn()
            if pause > 0:  # keeps its turn: no other receiver polls meanwhile
                self._stopped.wait(pause)
            with self._may_receive:
                self._receiving -= 1
                if self._backlog:
                    self._may_receive.notify()  # another receiver may join

    def _receive_turn(self) -> float:
        """One receive (two when settling) into the buffer; returns how long to pause."""
        began = time.time()
        try:
            receipt = self._receive(True)
            count = len(receipt.batch)
            caught_a_burst_starting = (
                receipt.newest_sent is not None and receipt.newest_sent >= began
            )
            if self._settle and 0 < count < self._full and caught_a_burst_starting:
                self._stopped.wait(SETTLE_SECONDS)
                receipt = _combined(receipt, self._receive(False))
        except Exception as exc:
            with self._arrived:
                self._error = exc
                self._arrived.notify()
            return ERROR_BACKOFF_SECONDS
        batch, count = receipt.batch, len(receipt.batch)
        if receipt.oldest_sent is not None:  # sent by the broker's clock: without producer linger
            behind = time.time() - receipt.oldest_sent > self._linger + BEHIND_MARGIN_SECONDS
        else:
            behind = True
        with self._arrived:
            if count and self._stopped.is_set():
                self._late.append(batch)
            elif count:
                self._batches.append(batch)
                self._buffered += count
                self._arrived.notify()
            self._backlog = count >= self._full and behind
            if self._rate.observe(count, time.monotonic()):
                self._linger = linger_for_rate(self._rate.per_second, self._max_linger, self._full)
            return 0.0 if self._backlog or not count else self._linger


def _combined(first: Receipt, second: Receipt) -> Receipt:
    sent = [t for t in (first.oldest_sent, first.newest_sent, second.oldest_sent) if t is not None]
    sent += [second.newest_sent] if second.newest_sent is not None else []
    return Receipt(
        merge([first.batch, second.batch]),
        min(sent) if sent else None,
        max(sent) if sent else None,
    )


class FailedAcks:
    """Counts messages whose ack the broker did not take, even after retries (the broker
    delivers them again, which the checkers see as redeliveries), by kind of error, and logs
    the first error of each kind. The consumer processes record the count in the history
    (``ack-failed`` events, ``harness.history.recorder.record_failed_acks``)."""

    def __init__(self, broker: str, action: str = "acking") -> None:
        self.broker = broker
        self.action = action
        self.count = 0
        self.errors: dict[str, int] = {}
        """Messages per kind of error (the exception's class, or SQS's error code)."""
        self._lock = threading.Lock()

    def add(self, count: int, error: Exception | str) -> None:
        kind = type(error).__name__ if isinstance(error, Exception) else error.split(":", 1)[0]
        with self._lock:
            self.count += count
            first = kind not in self.errors
            self.errors[kind] = self.errors.get(kind, 0) + count
        if first:  # once per kind: a fault can fail thousands
            _log.warning("%s: %s failed (they come again): %s", self.broker, self.action, error)
