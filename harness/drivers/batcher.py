"""Requests of many messages, several in flight: the engine behind the SQS and Pub/Sub
producers (``send`` and ``send_batch``) and their asynchronous acks.

Their brokers take up to 10 (SQS) or 1000 (Pub/Sub) messages per request, and a request costs
the client about a millisecond of CPU whatever it carries: full requests are what keeps the
harness's CPU per message low. A ``Batcher`` keeps the items (messages, receipt handles) in one
buffer, in arrival order. A sender thread takes the oldest items, up to ``max_batch`` (and
``max_bytes``), as soon as

- ``fill`` items wait (a full request), or
- the oldest has waited its *linger* (``linger_for_rate``), or
- ``flush`` or ``close`` asks for everything now,

and up to ``max_in_flight`` requests are in flight at once: as many as the load keeps busy,
because a sender only takes a request when one is due. Items are always taken from the head of
the buffer, so none overtakes an older one; with ``ordered=True`` a request that shares a key
with a request still in flight also waits for it, so each key's items reach the broker in
order (an SQS FIFO message group, a Pub/Sub ordering key) while other keys' requests overlap.
"""

import collections
import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from typing import Generic, Protocol, TypeVar

from harness.drivers.base import Outcome, SendCallback, SendCompletions, SendResult

_log = logging.getLogger(__name__)

T = TypeVar("T")

RATE_TIME_CONSTANT = 1.0
"""Seconds over which ``ArrivalRate`` smooths the arrival rate."""
_RATE_SAMPLE_SECONDS = 0.2


def linger_for_rate(rate: float, max_linger: float, fill: int) -> float:
    """How long the oldest waiting message waits for more, at ``rate`` messages per second.

    ``fill / rate`` seconds is the wait that fills a request (``fill - 1`` more arrivals, with
    one arrival's time to spare for jitter). When that is within ``max_linger``, wait that
    long: requests leave full, and the wait shortens as the rate grows. When it is not, a
    request could not fill in time anyway, and the wait shrinks in proportion: ``max_linger``
    times the share of a request that arrives within ``max_linger``. So the wait peaks at
    ``max_linger`` at the rate that just fills a request in that time (200 msg/s for 10
    messages and 50 ms), and at low rates, where batching would save little CPU, the latency
    the harness adds stays small (5 ms at 20 msg/s).
    """
    if rate <= 0 or max_linger <= 0 or fill <= 1:
        return 0.0
    requests_within_bound = rate * max_linger / fill
    return max_linger * min(requests_within_bound, 1 / requests_within_bound)


class ArrivalRate:
    """Items per second, an exponentially weighted average over about
    ``RATE_TIME_CONSTANT`` seconds, updated from counts of arrivals (not one call per item)."""

    def __init__(self) -> None:
        self.per_second = 0.0
        self._count = 0
        self._since: float | None = None

    def observe(self, count: int, now: float) -> bool:
        """``count`` items arrived at ``now`` (monotonic seconds); True if the rate changed."""
        if self._since is None:
            self._since = now
        self._count += count
        elapsed = now - self._since
        if elapsed < _RATE_SAMPLE_SECONDS:
            return False
        sample = self._count / elapsed
        keep = math.exp(-elapsed / RATE_TIME_CONSTANT) if self.per_second else 0.0
        self.per_second = keep * self.per_second + (1 - keep) * sample
        self._count = 0
        self._since = now
        return True


class Batcher(Generic[T]):
    """Collects items into requests and sends them on background threads (see the module).

    ``send(items)`` makes one request of ``items`` and reports their outcomes itself; it runs
    on a sender thread (a greenlet where gevent patched threading) and should not raise (an
    exception is logged and the items are considered done).
    """

    def __init__(
        self,
        send: Callable[[list[T]], None],
        *,
        name: str,
        max_batch: int,
        max_in_flight: int,
        max_linger: float = 0.0,
        fill: int | None = None,
        max_bytes: int | None = None,
        ordered: bool = False,
        max_buffered: int = 100_000,
    ) -> None:
        """``fill``: the request size the linger waits for (default ``max_batch``); requests
        still carry up to ``max_batch`` items when more are waiting. ``max_bytes``: a request's
        limit on the sum of the sizes ``add`` is given. ``max_buffered``: ``add`` waits while
        this many items wait to be sent."""
        self._send = send
        self._max_batch = max_batch
        self._fill = min(fill or max_batch, max_batch)
        self._max_linger = max_linger
        self._max_bytes = max_bytes
        self._ordered = ordered
        self._max_buffered = max_buffered
        self._rate = ArrivalRate()
        self._linger = 0.0
        self._items: list[T] = []
        self._keys: list[str] = []
        self._sizes: list[int] = []
        self._arrivals: collections.deque[tuple[int, float]] = collections.deque()
        """(items added so far, monotonic time) per ``add``: when the buffer's head arrived."""
        self._added = self._taken = 0
        self._unfinished = 0
        """Items added whose request has not completed."""
        self._busy_keys: dict[str, int] = {}
        """Ordered only: items per key in requests in flight."""
        self._flushing = 0
        self._closing = False
        lock = threading.Lock()
        self._work = threading.Condition(lock)
        """Senders wait on it for a due request."""
        self._progress = threading.Condition(lock)
        """``flush`` and a blocked ``add`` wait on it for completed requests."""
        self._threads = [
            threading.Thread(target=self._send_forever, name=f"{name}-{n}", daemon=True)
            for n in range(max_in_flight)
        ]
        for thread in self._threads:
            thread.start()

    @property
    def linger(self) -> float:
        """The current linger (seconds), from the arrival rate."""
        return self._linger

    def add(
        self,
        items: Sequence[T],
        keys: Sequence[str] | None = None,
        sizes: Sequence[int] | None = None,
    ) -> None:
        """Queue ``items``; ``keys`` are required when ordered, ``sizes`` when ``max_bytes``
        is set. Waits only while ``max_buffered`` items are already waiting."""
        count = len(items)
        if not count:
            return
        now = time.monotonic()
        with self._work:
            if self._closing:
                raise RuntimeError("the batcher is closed")
            if len(self._items) >= self._max_buffered and not self._on_sender_thread():
                while len(self._items) >= self._max_buffered and not self._closing:
                    self._progress.wait()
            was_empty = not self._items
            self._items.extend(items)
            if self._ordered:
                assert keys is not None and len(keys) == count
                self._keys.extend(keys)
            if self._max_bytes is not None:
                assert sizes is not None and len(sizes) == count
                self._sizes.extend(sizes)
            self._added += count
            self._unfinished += count
            self._arrivals.append((self._added, now))
            if self._rate.observe(count, now):
                self._linger = linger_for_rate(self._rate.per_second, self._max_linger, self._fill)
            # A waiting sender must start the head's linger, or take a request now due; one
            # already timing the linger wakes by itself.
            if was_empty or len(self._items) >= self._fill or self._flushing:
                self._work.notify()

    def flush(self, timeout: float) -> int:
        """Send everything now and wait until every request completed; returns how many items
        are still unfinished after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        with self._work:
            self._flushing += 1
            self._work.notify_all()
            try:
                while self._unfinished > 0:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    self._progress.wait(remaining)
                return self._unfinished
            finally:
                self._flushing -= 1

    def close(self, timeout: float = 30.0) -> int:
        """Flush (up to ``timeout``), then stop the senders once the buffer is empty; returns
        the items left unfinished."""
        left = self.flush(timeout)
        with self._work:
            self._closing = True
            self._work.notify_all()
            self._progress.notify_all()
        if not self._on_sender_thread():
            for thread in self._threads:
                thread.join(timeout=5)
        return left

    def _on_sender_thread(self) -> bool:
        return threading.current_thread() in self._threads

    def _send_forever(self) -> None:
        while True:
            with self._work:
                taken = self._next_request()
            if taken is None:
                return
            items, keys = taken
            try:
                self._send(items)
            except Exception:
                _log.exception("a batched request raised; its items' outcomes are lost")
            finally:
                with self._work:
                    self._completed(len(items), keys)

    def _next_request(self) -> tuple[list[T], list[str]] | None:
        """Wait (holding the lock) until a request is due and take it; None when closed."""
        while True:
            count = len(self._items)
            if not count:
                if self._closing:
                    return None
                self._work.wait()
                continue
            if count < self._fill and not (self._flushing or self._closing):
                wait = self._arrivals[0][1] + self._linger - time.monotonic()
                if wait > 0:
                    self._work.wait(wait)
                    continue
            take = self._request_size(count)
            if self._ordered and self._busy_keys and self._shares_busy_key(take):
                self._work.wait()  # until a request completes
                continue
            return self._take(take)

    def _request_size(self, count: int) -> int:
        take = min(count, self._max_batch)
        if self._max_bytes is not None:
            total = 0
            for position, size in enumerate(self._sizes[:take]):
                total += size
                if total > self._max_bytes and position:
                    return position
        return take

    def _shares_busy_key(self, take: int) -> bool:
        busy = self._busy_keys
        return any(key in busy for key in self._keys[:take])

    def _take(self, take: int) -> tuple[list[T], list[str]]:
        items = self._items[:take]
        del self._items[:take]
        keys: list[str] = []
        if self._ordered:
            keys = self._keys[:take]
            del self._keys[:take]
            busy = self._busy_keys
            for key in keys:
                busy[key] = busy.get(key, 0) + 1
        if self._max_bytes is not None:
            del self._sizes[:take]
        self._taken += take
        arrivals = self._arrivals
        while arrivals and arrivals[0][0] <= self._taken:
            arrivals.popleft()
        if len(self._items) >= self._fill or (self._items and (self._flushing or self._closing)):
            self._work.notify()  # another request is due: another sender may take it
        return items, keys

    def _completed(self, count: int, keys: list[str]) -> None:
        self._unfinished -= count
        busy = self._busy_keys
        for key in keys:
            left = busy[key] - 1
            if left:
                busy[key] = left
            else:
                del busy[key]
        if self._ordered or self._closing:
            self._work.notify()  # a request waiting for one of these keys may go now
        self._progress.notify_all()


class MessageOutcomes(Protocol):
    """Where a producer's ``Batcher`` reports each message's outcome (by the index it was
    queued with): a ``send_batch`` caller's ``SendCompletions`` or a ``send`` callback."""

    def sent(self, index: int, message_id: str) -> None: ...

    def failed(self, index: int, outcome: Outcome, error: str) -> None: ...


class ToCompletions:
    """``MessageOutcomes`` for one ``send_batch`` call (the broker's message ids are dropped:
    the history identifies a send by its envelope)."""

    __slots__ = ("failed", "ok")

    def __init__(self, completions: SendCompletions) -> None:
        self.ok = completions.ok
        self.failed = completions.failed

    def sent(self, index: int, message_id: str) -> None:
        self.ok(index)


class ToCallback:
    """``MessageOutcomes`` for one ``send``: a ``SendResult`` for its callback."""

    __slots__ = ("key", "on_complete")

    def __init__(self, key: str, on_complete: SendCallback) -> None:
        self.key = key
        self.on_complete = on_complete

    def sent(self, index: int, message_id: str) -> None:
        self.on_complete(SendResult(self.key, Outcome.OK, message_id))

    def failed(self, index: int, outcome: Outcome, error: str) -> None:
        self.on_complete(SendResult(self.key, outcome, error=error))
