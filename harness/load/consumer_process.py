"""A consumer process: ``python -m harness.load.consumer_process PLAN.json``.

Polls the run's destination, records every delivery in its own history shard, acks, and prints
one JSON progress line per second. Stops on SIGTERM or SIGINT, closing the consumer cleanly
(committing what it acked) and flushing its history.
"""

import json
import signal
import sys
import threading
import time
from pathlib import Path

from harness.drivers.base import OrderingScope, Received
from harness.drivers.targets import open_driver
from harness.history.envelope import decode
from harness.history.recorder import Recorder
from harness.history.schema import Disposition
from harness.load.gc_tuning import tune_for_load
from harness.load.patience import with_patience
from harness.load.plan import ConsumerPlan

# Live metrics get a sample of end-to-end latencies (the history keeps every one).
E2E_SAMPLE_EVERY = 10
E2E_SAMPLES_PER_LINE = 200
MAX_ERROR_SECONDS = 120.0


def _report(**fields: object) -> None:
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


def scope_of(message: Received, ordering: OrderingScope) -> str | None:
    """The ordering-scope instance the broker promises order within, or None."""
    if ordering is OrderingScope.PARTITION:
        return f"p{message.partition}"
    if ordering in (OrderingScope.MESSAGE_GROUP, OrderingScope.ORDERING_KEY):
        return message.key
    return None


class BrokerErrors:
    """Tolerates broker errors (faults are expected in chaos runs) for up to
    ``MAX_ERROR_SECONDS`` in a row, logging each kind of error once; then gives up."""

    def __init__(self) -> None:
        self.since: float | None = None
        self.logged: set[str] = set()

    def failed(self, error: Exception) -> None:
        now = time.monotonic()
        self.since = self.since or now
        if now - self.since > MAX_ERROR_SECONDS:
            raise error
        kind = type(error).__name__
        if kind not in self.logged:
            self.logged.add(kind)
            sys.stderr.write(f"broker error (retrying): {kind}: {str(error)[:300]}\n")
        time.sleep(0.2)

    def succeeded(self) -> None:
        self.since = None


def main(plan_path: str) -> None:
    plan = ConsumerPlan.model_validate_json(Path(plan_path).read_text(encoding="utf-8"))
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    run = plan.run
    recorder = Recorder(Path(run.run_dir), f"consumer-{plan.consumer_id}")
    driver = with_patience(
        lambda: open_driver(run.target, run.settings, via_proxy=run.consumers_via_proxy)
    )
    destination = with_patience(lambda: driver.create_destination(run.destination.spec()))
    consumer = driver.consumer(destination, run.destination.group)
    ordering = driver.capabilities.ordering(run.destination.ordered)
    received = foreign = tick = 0
    errors = BrokerErrors()
    e2e_samples: list[float] = []
    next_report = time.monotonic() + 1.0
    _report(kind="ready", consumer=plan.consumer_id)
    try:
        while not stop.is_set():
            try:
                batch = consumer.poll(plan.poll_batch, 0.5)
            except Exception as exc:
                errors.failed(exc)  # e.g. the broker is down (a fault): keep trying
                continue
            now = time.time_ns()
            for position, message in enumerate(batch):
                decoded = decode(message.payload)
                if decoded is None or decoded[0].run_id != run.run_id:
                    foreign += 1
                    continue
                envelope = decoded[0]
                recorder.received(
                    consumer_id=plan.consumer_id,
                    producer_id=envelope.producer_id,
                    key_id=envelope.key_id,
                    seq=envelope.seq,
                    intended_ns=envelope.intended_ns,
                    # +1 ns per position keeps the delivery order of one poll batch in the
                    # history, whose compacted form is sorted by identity and time.
                    receive_ns=now + position,
                    partition=-1 if message.partition is None else message.partition,
                    offset=-1 if message.offset is None else message.offset,
                    message_id=None if message.offset is not None else message.message_id,
                    delivery_attempt=message.delivery_attempt or 0,
                    disposition=Disposition.ACKED,
                    scope=scope_of(message, ordering),
                )
                received += 1
                if received % E2E_SAMPLE_EVERY == 0 and len(e2e_samples) < E2E_SAMPLES_PER_LINE:
                    e2e_samples.append(round((now - envelope.intended_ns) / 1e6, 3))
            if plan.durable_history and batch:
                recorder.flush()
            try:
                consumer.ack(batch)
            except Exception as exc:
                errors.failed(exc)  # unacked: the broker delivers these again
            else:
                errors.succeeded()
            if time.monotonic() >= next_report:
                tick += 1
                _report(
                    kind="progress",
                    consumer=plan.consumer_id,
                    received=received,
                    tick=tick,
                    e2e_ms=e2e_samples,
                )
                e2e_samples = []
                next_report += 1.0
    finally:
        consumer.close()
        driver.close()
        recorder.close()
    _report(kind="done", consumer=plan.consumer_id, received=received, foreign=foreign)


if __name__ == "__main__":
    tune_for_load()
    main(sys.argv[1])
