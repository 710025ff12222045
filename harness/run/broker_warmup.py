"""Broker warm-up: load a scratch destination until the broker's end-to-end latency settles,
so that a suite's first run measures the broker, not the broker's JIT compiler.

A fresh JVM (ElasticMQ, Kafka, the Pub/Sub emulator) interprets its request paths, then
compiles them as they get hot; on a busy 2-core machine that takes seconds to tens of seconds
of load, and a first run measured meanwhile is several times slower than its repeat. The
warm-up goes through the same driver as the run (its producer and consumers, through toxiproxy
when the run's clients go through it), at the workload's rate (bounded) and message size, into
``bb-warmup-<hex>``, which is deleted afterwards. Nothing is recorded: no history, no run
folder, no figure; only ``phases.broker_warmup`` in the next run's result.json says it ran.

The stop rule (``settled``), measured on this machine kind (docs/architecture.md, "Broker
warm-up"): at least ``min_messages`` received (a JIT compiles a method after so many calls,
not after so many seconds), then stop as soon as the e2e p50 of the last ``SETTLED_WINDOWS``
one-second windows agree within ``SETTLED_RATIO`` (or ``SETTLED_SLACK_MS``); give up waiting
at ``max_seconds`` (the run then starts anyway: the warm-up helps, it does not gate).
"""

import logging
import secrets
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from harness.drivers.base import (
    Consumer,
    Destination,
    DestinationSpec,
    Driver,
    Producer,
    SendResult,
)
from harness.drivers.targets import open_driver
from harness.errors import UserError
from harness.history.envelope import Envelope, decode, encode
from harness.load.keys import key_name
from harness.load.throughput import ThroughputConfig
from harness.settings import Settings

NS_PER_S = 1_000_000_000
MIN_RATE = 100.0
MAX_RATE = 500.0
"""The warm-up's rate is the workload's (first) rate within these bounds: enough calls per
second to make the broker's hot paths hot, never a load test of its own."""
MAX_KEYS = 100
MAX_CONSUMERS = 4
SETTLED_WINDOWS = 3
SETTLED_RATIO = 1.25
SETTLED_SLACK_MS = 2.0
"""Windows whose p50 differ by less than this are equal, whatever the ratio (1 ms vs 2 ms)."""
MIN_WINDOW_SAMPLES = 20
"""A window with fewer deliveries says nothing about latency (it breaks a settled streak)."""
MAX_BEHIND_SECONDS = 0.5
"""Nor does one whose consumers are more than this many seconds of messages behind."""
WINDOW_GRACE_NS = NS_PER_S // 10
"""A window is read this long after it ends (a poll may still be adding its deliveries)."""
DRAIN_SECONDS = 10.0
POLL_BATCH = 100
POLL_TIMEOUT = 0.5
GROUP = "default"
DESTINATION_PREFIX = "bb-warmup-"


@dataclass(frozen=True)
class WarmupShape:
    """What the warm-up sends: the first run's message size, partitions, ordering, keys and
    consumer count, at a bounded rate, for at least ``min_messages`` and at most
    ``max_seconds``."""

    rate: float
    message_size: int
    min_messages: int
    max_seconds: float
    partitions: int = 1
    ordered: bool = False
    keys: int = MAX_KEYS
    consumers: int = 1


@dataclass(frozen=True)
class WarmupProgress:
    """Reported once a second: the window just completed."""

    seconds: float
    sent: int
    received: int
    window_p50_ms: float | None


@dataclass(frozen=True)
class WarmupOutcome:
    seconds: float
    """Seconds of load (whole one-second windows; the drain and clean-up not included)."""
    sent: int
    received: int
    settled: bool
    """True: the stop rule held; False: ``max_seconds`` ran out first."""
    window_p50_ms: list[float | None]
    """The e2e p50 of every whole second, in order (None: too few deliveries, or the consumers
    fell behind)."""


def shape_for(config: ThroughputConfig, min_messages: int, max_seconds: float) -> WarmupShape:
    """The warm-up before a run of ``config``: its first step's rate within
    [``MIN_RATE``, ``MAX_RATE``], its message size, partitions, ordering, keys, consumers."""
    return WarmupShape(
        rate=min(MAX_RATE, max(MIN_RATE, config.load_steps()[0].rate)),
        message_size=config.message_size,
        min_messages=min_messages,
        max_seconds=max_seconds,
        partitions=config.partitions,
        ordered=config.ordered,
        keys=min(config.keys, MAX_KEYS),
        consumers=min(config.consumers, MAX_CONSUMERS),
    )


def settled(window_p50_ms: list[float | None], received: int, min_messages: int) -> bool:
    """The stop rule: ``min_messages`` were received and the last ``SETTLED_WINDOWS`` windows'
    p50 agree (max <= min x ``SETTLED_RATIO``, or within ``SETTLED_SLACK_MS``)."""
    if received < min_messages or len(window_p50_ms) < SETTLED_WINDOWS:
        return False
    last = window_p50_ms[-SETTLED_WINDOWS:]
    if any(p50 is None for p50 in last):
        return False
    known = [p50 for p50 in last if p50 is not None]
    low, high = min(known), max(known)
    return high <= low * SETTLED_RATIO or high - low <= SETTLED_SLACK_MS


@dataclass
class _Tally:
    """What the producer and consumer threads share (under ``lock``)."""

    start_ns: int
    lock: threading.Lock = field(default_factory=threading.Lock)
    sent: int = 0
    ok: int = 0
    failed: int = 0
    received: int = 0
    last_error: str | None = None
    windows: dict[int, list[float]] = field(default_factory=dict)
    """Second since the start (by receive time) -> e2e latencies in ms."""

    def completed(self, result: SendResult) -> None:
        with self.lock:
            if result.ok:
                self.ok += 1
            else:
                self.failed += 1
                self.last_error = result.error or result.outcome.value

    def window_p50(self, second: int, max_behind: float) -> float | None:
        """The e2e p50 of ``second``; None if it had too few deliveries, or if more than
        ``max_behind`` acknowledged messages are still unconsumed (a backlog's latency is
        steady too, but says nothing about the broker's code being warm)."""
        with self.lock:
            samples = list(self.windows.get(second, ()))
            behind = self.ok - self.received
        if len(samples) < MIN_WINDOW_SAMPLES or behind > max_behind:
            return None
        return statistics.median(samples)


def warm_up(
    target: str,
    settings: Settings,
    shape: WarmupShape,
    *,
    producers_via_proxy: bool,
    consumers_via_proxy: bool,
    progress: Callable[[WarmupProgress], None] = lambda _: None,
) -> WarmupOutcome:
    """Load a scratch destination on ``target`` until the latency settles; delete it after.

    Raises UserError when the broker is unreachable or takes nothing.
    """
    admin = open_driver(target, settings)
    name = f"{DESTINATION_PREFIX}{secrets.token_hex(6)}"
    spec = DestinationSpec(name, partitions=shape.partitions, ordered=shape.ordered)
    drivers: list[Driver] = [admin]
    destination: Destination | None = None
    try:
        destination = admin.create_destination(spec)
        producer_driver = open_driver(target, settings, via_proxy=producers_via_proxy)
        drivers.append(producer_driver)
        consumer_driver = open_driver(target, settings, via_proxy=consumers_via_proxy)
        drivers.append(consumer_driver)
        return _load(
            target,
            shape,
            producer_driver.producer(destination),
            [consumer_driver.consumer(destination, GROUP) for _ in range(shape.consumers)],
            progress,
        )
    finally:
        if destination is not None:
            try:
                admin.delete_destination(destination)
            except Exception as exc:  # the broker went away: an in-memory one forgets it anyway
                logging.getLogger(__name__).warning("could not delete %s: %s", name, exc)
        for driver in drivers:
            driver.close()


def _load(
    target: str,
    shape: WarmupShape,
    producer: Producer,
    consumers: list[Consumer],
    progress: Callable[[WarmupProgress], None],
) -> WarmupOutcome:
    run_id = secrets.randbits(63)
    tally = _Tally(start_ns=time.time_ns() + NS_PER_S // 10)
    stop_sending, stop_consuming = threading.Event(), threading.Event()
    threads = [
        threading.Thread(
            target=_consume, args=(c, run_id, tally, stop_consuming), name="warmup-consumer"
        )
        for c in consumers
    ]
    threads.append(
        threading.Thread(
            target=_produce,
            args=(producer, run_id, shape, tally, stop_sending),
            name="warmup-producer",
        )
    )
    for thread in threads:
        thread.start()
    p50s: list[float | None] = []
    elapsed = 0.0
    finished = False
    try:
        while elapsed < shape.max_seconds and not settled(p50s, tally.received, shape.min_messages):
            window_end_ns = tally.start_ns + (len(p50s) + 1) * NS_PER_S + WINDOW_GRACE_NS
            time.sleep(max(0.0, (window_end_ns - time.time_ns()) / NS_PER_S))
            elapsed = float(len(p50s) + 1)
            p50s.append(tally.window_p50(len(p50s), shape.rate * MAX_BEHIND_SECONDS))
            progress(WarmupProgress(elapsed, tally.sent, tally.received, p50s[-1]))
        finished = True
    finally:
        stop_sending.set()
        threads[-1].join()
        if finished:  # not after Ctrl-C: nothing waits for these messages
            _drain(producer, tally)
        stop_consuming.set()
        for thread in threads[:-1]:
            thread.join()
        for consumer in consumers:
            consumer.close()
        producer.close()
    if tally.received == 0:
        raise UserError(
            f"{target}: the broker warm-up received nothing in {elapsed:.0f} s (sent "
            f"{tally.sent}, failed {tally.failed}"
            + (f", last error: {tally.last_error[:200]}" if tally.last_error else "")
            + f"): check it with `brokerbench check {target}`, or run with --no-broker-warmup"
        )
    return WarmupOutcome(
        seconds=elapsed,
        sent=tally.sent,
        received=tally.received,
        settled=settled(p50s, tally.received, shape.min_messages),
        window_p50_ms=p50s,
    )


def _drain(producer: Producer, tally: _Tally) -> None:
    """Let the sends complete and the consumers take them (the destination is deleted next,
    whatever is left)."""
    producer.flush(DRAIN_SECONDS)
    deadline = time.monotonic() + DRAIN_SECONDS
    while tally.received < tally.ok and time.monotonic() < deadline:
        time.sleep(0.1)


def _produce(
    producer: Producer, run_id: int, shape: WarmupShape, tally: _Tally, stop: threading.Event
) -> None:
    """Open loop: message ``seq`` is meant for ``start + seq / rate``; sends late ones at once."""
    try:
        _send_on_schedule(producer, run_id, shape, tally, stop)
    except Exception as exc:  # the tally tells; the main loop ends on max_seconds
        with tally.lock:
            tally.last_error = f"{type(exc).__name__}: {exc}"


def _send_on_schedule(
    producer: Producer, run_id: int, shape: WarmupShape, tally: _Tally, stop: threading.Event
) -> None:
    interval_ns = NS_PER_S / shape.rate
    keys = max(1, min(shape.keys, MAX_KEYS))
    seq = 0
    while not stop.is_set():
        now = time.time_ns()
        while tally.start_ns + seq * interval_ns <= now:
            intended = tally.start_ns + round(seq * interval_ns)
            payload = encode(Envelope(run_id, 0, seq % keys, seq, intended), shape.message_size)
            producer.send(key_name(seq % keys), payload, tally.completed)
            seq += 1
            with tally.lock:
                tally.sent = seq
        next_ns = tally.start_ns + seq * interval_ns
        stop.wait(max(0.0, (next_ns - time.time_ns()) / NS_PER_S))


def _consume(consumer: Consumer, run_id: int, tally: _Tally, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            batch = consumer.poll(POLL_BATCH, POLL_TIMEOUT)
        except Exception as exc:  # a broker hiccup: keep polling, the tally tells
            with tally.lock:
                tally.last_error = f"{type(exc).__name__}: {exc}"
            stop.wait(0.2)
            continue
        now = time.time_ns()
        second = (now - tally.start_ns) // NS_PER_S
        latencies = []
        for message in batch:
            decoded = decode(message.payload)
            if decoded is not None and decoded[0].run_id == run_id:
                latencies.append((now - decoded[0].intended_ns) / 1e6)
        with tally.lock:
            tally.received += len(latencies)
            tally.windows.setdefault(second, []).extend(latencies)
        if batch:
            try:
                consumer.ack(batch)
            except Exception as exc:
                with tally.lock:
                    tally.last_error = f"{type(exc).__name__}: {exc}"
