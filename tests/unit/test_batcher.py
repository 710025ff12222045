"""The batched request engine and the prefetcher without a broker (the contract suite runs
them against every real one): request sizes, key order, flush and close, prefetch and release."""

import threading
from collections.abc import Iterator

import pytest

from harness.drivers.base import Outcome, ReceivedBatch
from harness.drivers.batcher import ArrivalRate, Batcher, ToCompletions, linger_for_rate
from harness.drivers.prefetch import Prefetcher, Receipt, as_batch, merge, split


@pytest.mark.parametrize(
    ("rate", "linger_ms"),
    [(0, 0.0), (20, 5.0), (100, 25.0), (200, 50.0), (250, 40.0), (2000, 5.0)],
)
def test_linger_fills_a_request_within_the_bound_and_shrinks_at_low_rates(
    rate: float, linger_ms: float
) -> None:
    assert linger_for_rate(rate, 0.05, 10) * 1000 == pytest.approx(linger_ms, abs=0.1)


def test_arrival_rate_follows_a_steady_rate() -> None:
    rate = ArrivalRate()
    for step in range(1, 601):  # 2 messages every 10 ms for 6 s
        rate.observe(2, step * 0.01)
    assert rate.per_second == pytest.approx(200, rel=0.02)


class Recorded:
    """A send function that records each request and can hold requests until released."""

    def __init__(self, hold: bool = False) -> None:
        self.requests: list[list[str]] = []
        self.started = threading.Semaphore(0)
        self.release = threading.Event()
        if not hold:
            self.release.set()
        self._lock = threading.Lock()

    def __call__(self, items: list[str]) -> None:
        with self._lock:
            self.requests.append(items)
        self.started.release()
        self.release.wait(10)


@pytest.fixture
def recorded() -> Iterator[Recorded]:
    send = Recorded()
    yield send
    send.release.set()


def test_requests_are_full_and_keep_arrival_order(recorded: Recorded) -> None:
    batcher = Batcher(recorded, name="test", max_batch=10, max_in_flight=1, max_linger=1.0)
    items = [str(n) for n in range(25)]
    batcher.add(items)
    assert batcher.flush(10) == 0
    assert recorded.requests == [items[:10], items[10:20], items[20:]]
    batcher.close()


def test_requests_respect_the_byte_limit_but_always_carry_one_item(recorded: Recorded) -> None:
    batcher = Batcher(recorded, name="test", max_batch=10, max_in_flight=1, max_bytes=10)
    batcher.add(["a", "b", "c", "huge", "d"], sizes=[4, 4, 4, 50, 1])
    assert batcher.flush(10) == 0
    assert recorded.requests == [["a", "b"], ["c"], ["huge"], ["d"]]
    batcher.close()


def test_a_key_never_has_two_requests_in_flight() -> None:
    send = Recorded(hold=True)
    batcher = Batcher(send, name="test", max_batch=1, max_in_flight=3, ordered=True)
    batcher.add(["a1", "b1", "a2", "b2"], keys=["a", "b", "a", "b"])
    assert send.started.acquire(timeout=5) and send.started.acquire(timeout=5)
    # a1 and b1 are in flight; a2 waits for a1 (and b2, behind it, for a2).
    assert not send.started.acquire(timeout=0.3)
    assert sorted(map(tuple, send.requests)) == [("a1",), ("b1",)]
    send.release.set()
    assert batcher.flush(10) == 0
    order = [request[0] for request in send.requests]
    assert order.index("a1") < order.index("a2") and order.index("b1") < order.index("b2")
    batcher.close()


def test_flush_reports_what_is_unfinished_and_close_stops_the_senders() -> None:
    send = Recorded(hold=True)
    batcher = Batcher(send, name="test-close", max_batch=10, max_in_flight=2)
    batcher.add(["x", "y"])
    assert send.started.acquire(timeout=5)
    assert batcher.flush(0.1) == 2
    send.release.set()
    assert batcher.close(10) == 0
    assert not [t for t in threading.enumerate() if t.name.startswith("test-close")]
    with pytest.raises(RuntimeError, match="closed"):
        batcher.add(["z"])


def test_add_waits_while_the_buffer_is_full() -> None:
    send = Recorded(hold=True)
    batcher = Batcher(send, name="test", max_batch=1, max_in_flight=1, max_buffered=2)
    batcher.add(["in-flight"])
    assert send.started.acquire(timeout=5)
    batcher.add(["a", "b"])
    third = threading.Thread(target=batcher.add, args=(["c"],))
    third.start()
    third.join(0.3)
    assert third.is_alive(), "add did not wait for room"
    send.release.set()
    third.join(10)
    assert batcher.flush(10) == 0
    batcher.close()


def test_completions_get_the_index_and_not_the_message_id() -> None:
    reported: list[tuple[int, Outcome]] = []

    class Sink:
        def ok(self, index: int, partition: int = -1, offset: int = -1) -> None:
            reported.append((index, Outcome.OK))

        def failed(self, index: int, outcome: Outcome, error: str) -> None:
            reported.append((index, outcome))

    outcomes = ToCompletions(Sink())
    outcomes.sent(7, "message-id")
    outcomes.failed(8, Outcome.UNKNOWN, "timeout")
    assert reported == [(7, Outcome.OK), (8, Outcome.UNKNOWN)]


def batch_of(*payloads: bytes) -> ReceivedBatch:
    return as_batch([(p.decode(), p, p.decode(), 1, f"handle-{p.decode()}") for p in payloads])


def test_batches_split_and_merge_column_by_column() -> None:
    first, rest = split(batch_of(b"a", b"b", b"c"), 2)
    assert first.payloads == [b"a", b"b"] and first.handle == ["handle-a", "handle-b"]
    assert rest.keys == ["c"] and rest.delivery_attempts == [1]
    merged = merge([first, rest])
    assert merged.payloads == [b"a", b"b", b"c"] and merged.message_ids == ["a", "b", "c"]


class Receives:
    """A receive function serving prepared batches, then empty ones."""

    def __init__(self, *batches: ReceivedBatch) -> None:
        self.batches = list(batches)
        self.released: list[str] = []
        self._lock = threading.Lock()

    def __call__(self, long_poll: bool) -> Receipt:
        with self._lock:
            if self.batches:
                return Receipt(self.batches.pop(0))
        threading.Event().wait(0.02)
        return Receipt(batch_of())


def test_take_returns_what_arrived_and_close_releases_the_rest() -> None:
    receives = Receives(batch_of(b"a", b"b", b"c"), batch_of(b"d"))
    prefetcher = Prefetcher(
        receives,
        name="test-prefetch",
        threads=2,
        full=3,
        max_buffered=100,
        release=lambda batch: receives.released.extend(batch.handle),
    )
    taken = prefetcher.take(2, 5)
    assert taken.payloads == [b"a", b"b"]
    more = prefetcher.take(10, 5)
    while len(more) < 2:
        more = merge([more, prefetcher.take(10, 5)])
    assert more.payloads == [b"c", b"d"]
    receives.batches.append(batch_of(b"e"))
    while receives.batches:  # a receiver gets "e", which nobody takes
        threading.Event().wait(0.01)
    prefetcher.close()
    assert receives.released == ["handle-e"]
    assert not [t for t in threading.enumerate() if t.name.startswith("test-prefetch")]


def test_take_raises_the_receive_error_when_nothing_is_buffered() -> None:
    def failing(long_poll: bool) -> Receipt:
        raise ConnectionError("broker down")

    prefetcher = Prefetcher(
        failing, name="test", threads=1, full=10, max_buffered=10, release=lambda _: None
    )
    with pytest.raises(ConnectionError, match="broker down"):
        prefetcher.take(10, 5)
    prefetcher.close()
