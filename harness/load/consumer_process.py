"""A consumer process: ``python -m harness.load.consumer_process PLAN.json``.

Polls the run's destination a batch at a time, acks, and records every delivery in its own
history shard, as columns: the polls of the last fraction of a second together (envelopes
decoded at once, one append), every poll before its ack with ``durable_history``. Prints one
JSON progress line per second. Stops on SIGTERM or SIGINT, closing the consumer cleanly
(committing what it acked) and recording and flushing its history.

A progress line holds ``received`` (this run's deliveries so far), ``tick`` (the line's number),
``e2e_ms`` (a sample of end-to-end latencies for the live metrics) and ``poll_gap_ms_max``: the
longest time, since the previous line, between a poll returning and the next poll being called,
i.e. acking one batch (and recording, when it is due). A consumer short of CPU shows it there
first.
"""

import signal
import sys
import threading
import time
from collections.abc import Sequence
from functools import partial
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pyarrow as pa  # type: ignore[import-untyped]

from harness.drivers.base import Consumer, Driver, OrderingScope, Received, ReceivedBatch
from harness.drivers.batching import batch_consumer
from harness.drivers.targets import open_driver
from harness.history.envelope import decode_columns
from harness.history.recorder import (
    Recorder,
    partition_scope,
    partition_scopes,
    record_failed_acks,
)
from harness.history.schema import Disposition
from harness.load.gc_tuning import tune_for_load
from harness.load.patience import with_patience
from harness.load.pending_receives import Deliveries, PendingReceives
from harness.load.plan import ConsumerPlan
from harness.load.plan_file import read_plan
from harness.load.progress_line import ProgressLine, emit
from harness.load.schema_consumer import consume_dead_letters, consume_decoding

# Live metrics get a sample of end-to-end latencies (the history keeps every one).
E2E_SAMPLE_EVERY = 10
E2E_SAMPLES_PER_LINE = 200
MAX_ERROR_SECONDS = 120.0
POLL_TIMEOUT_SECONDS = 0.5


def scope_of(message: Received, ordering: OrderingScope) -> str | None:
    """The ordering-scope instance the broker promises order within, or None."""
    if ordering is OrderingScope.PARTITION:
        return partition_scope(message.partition or 0)
    if ordering in (OrderingScope.MESSAGE_GROUP, OrderingScope.ORDERING_KEY):
        return message.key
    return None


def scopes_of(
    deliveries: Deliveries, ordering: OrderingScope
) -> pa.Array | Sequence[str | None] | None:
    """``scope_of`` of every delivery, as a column."""
    if ordering is OrderingScope.PARTITION:
        assert deliveries.partitions is not None, "a partitioned broker's batch has partitions"
        return partition_scopes(deliveries.partitions)
    if ordering in (OrderingScope.MESSAGE_GROUP, OrderingScope.ORDERING_KEY):
        assert deliveries.keys is not None, "a batch ordered by key carries the keys"
        return deliveries.keys
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


class Progress:
    """What the progress lines report, gathered between two lines."""

    def __init__(self, consumer_id: int) -> None:
        self.consumer_id = consumer_id
        self.received = 0
        self.tick = 0
        self.e2e_samples: list[float] = []
        self.poll_gap_max = 0.0
        self.next_line = time.monotonic() + 1.0

    def delivered(self, poll_ns: npt.NDArray[np.int64], intended_ns: npt.NDArray[np.int64]) -> None:
        """This run's deliveries, in order, with the times their polls returned: counts them
        and samples every ``E2E_SAMPLE_EVERY``-th delivery's end-to-end latency."""
        room = E2E_SAMPLES_PER_LINE - len(self.e2e_samples)
        if room > 0:
            first = -(self.received + 1) % E2E_SAMPLE_EVERY  # the next multiple of the step
            sampled = slice(first, first + room * E2E_SAMPLE_EVERY, E2E_SAMPLE_EVERY)
            latency_ms = (poll_ns[sampled] - intended_ns[sampled]) / 1e6
            self.e2e_samples += np.round(latency_ms, 3).tolist()
        self.received += len(intended_ns)

    def poll_gap(self, seconds: float) -> None:
        self.poll_gap_max = max(self.poll_gap_max, seconds)

    def line_due(self) -> bool:
        return time.monotonic() >= self.next_line

    def line_if_due(self) -> None:
        if not self.line_due():
            return
        self.tick += 1
        emit(
            ProgressLine(
                kind="progress",
                consumer=self.consumer_id,
                received=self.received,
                tick=self.tick,
                e2e_ms=self.e2e_samples,
                poll_gap_ms_max=round(self.poll_gap_max * 1e3, 3),
            )
        )
        self.e2e_samples = []
        self.poll_gap_max = 0.0
        self.next_line += 1.0


class Recording:
    """This process's deliveries on their way into the history: the polls not yet recorded,
    and what the progress lines report."""

    def __init__(self, recorder: Recorder, plan: ConsumerPlan, ordering: OrderingScope) -> None:
        self.recorder = recorder
        self.plan = plan
        self.ordering = ordering
        self.progress = Progress(plan.consumer_id)
        self.pending = PendingReceives()
        self.foreign = 0

    def add(self, batch: ReceivedBatch) -> None:
        """A poll's deliveries, just returned; recorded now with ``durable_history`` (before
        they are acked), else with the next polls."""
        self.pending.add(batch, time.time_ns())
        if self.plan.durable_history:
            self.record()
            self.recorder.flush()

    def record_if_due(self) -> None:
        """Records the pending polls when enough wait, or before a progress line."""
        if self.pending.rows and (self.pending.due() or self.progress.line_due()):
            self.record()

    def record(self) -> None:
        deliveries = self.pending.take()
        envelopes = decode_columns(deliveries.payloads, self.plan.run.run_id)
        recorded = self.recorder.received_batch(
            consumer_id=self.plan.consumer_id,
            envelopes=envelopes,
            receive_ns=deliveries.receive_ns,
            disposition=Disposition.ACKED,
            partitions=deliveries.partitions,
            offsets=deliveries.offsets,
            message_ids=deliveries.message_ids,
            delivery_attempts=deliveries.delivery_attempts,
            scopes=scopes_of(deliveries, self.ordering),
        )
        poll_ns, intended_ns = deliveries.poll_ns, envelopes.intended_ns
        if recorded < len(deliveries):
            ours = ~envelopes.foreign
            poll_ns, intended_ns = poll_ns[ours], intended_ns[ours]
        self.progress.delivered(poll_ns, intended_ns)
        self.foreign += len(deliveries) - recorded


def _consume_schema_bodies(  # noqa: PLR0917 - one call site
    plan: ConsumerPlan,
    consumer: Consumer,
    recorder: Recorder,
    stop: threading.Event,
    recording: Recording,
    ordering: OrderingScope,
) -> None:
    """A run with ``payload_schema: avro``: decode each body, or read the dead letters
    (``harness/load/schema_consumer.py``), with progress lines from a thread of their own."""
    progress = recording.progress
    lines_done = threading.Event()

    def lines() -> None:
        while not lines_done.wait(0.2):
            progress.line_if_due()

    def received(poll_ns: int, intended_ns: int) -> None:
        progress.delivered(np.array([poll_ns]), np.array([intended_ns]))

    ticker = threading.Thread(target=lines, daemon=True)
    ticker.start()
    try:
        if plan.dead_letter_reader:
            consume_dead_letters(consumer, recorder, plan, stop)
        else:
            scope = partial(scope_of, ordering=ordering)
            consume_decoding(consumer, recorder, plan, stop, scope, received)
    finally:
        lines_done.set()
        ticker.join()
        consumer.close()
        recorder.close()
    emit(ProgressLine(kind="done", consumer=plan.consumer_id, received=progress.received))


def _open_consumer(plan: ConsumerPlan) -> tuple[Driver, Consumer]:
    """The run's destination's consumer (its dead letters' for the dead-letter reader)."""
    run = plan.run
    driver = with_patience(
        lambda: open_driver(run.target, run.settings, via_proxy=run.consumers_via_proxy)
    )
    destination = with_patience(lambda: driver.create_destination(run.destination.spec()))
    if plan.dead_letter_reader:
        destination = destination.dead_letter
    return driver, driver.consumer(destination, run.destination.group)


def main(plan_path: str) -> None:
    plan = read_plan(plan_path, ConsumerPlan)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    recorder = Recorder(Path(plan.run.run_dir), f"consumer-{plan.consumer_id}")
    driver, consumer = _open_consumer(plan)
    batches = batch_consumer(consumer)
    ordering = driver.capabilities.ordering(plan.run.destination.ordered)
    recording = Recording(recorder, plan, ordering)
    progress = recording.progress
    errors = BrokerErrors()
    emit(ProgressLine(kind="ready", consumer=plan.consumer_id))
    if plan.schema_bodies or plan.dead_letter_reader:
        _consume_schema_bodies(plan, consumer, recorder, stop, recording, ordering)
        driver.close()
        return
    try:
        while not stop.is_set():
            try:
                batch = batches.poll_batch(plan.poll_batch, POLL_TIMEOUT_SECONDS)
            except Exception as exc:
                errors.failed(exc)  # e.g. the broker is down (a fault): keep trying
                continue
            returned: float | None = time.perf_counter()
            if len(batch):
                recording.add(batch)
                try:
                    batches.ack_batch(batch)
                except Exception as exc:
                    returned = None  # the back-off is not time spent on the batch
                    errors.failed(exc)  # unacked: the broker delivers these again
                else:
                    errors.succeeded()
            else:
                errors.succeeded()
            recording.record_if_due()
            if returned is not None:
                progress.poll_gap(time.perf_counter() - returned)
            progress.line_if_due()
    finally:
        try:
            if recording.pending.rows:
                recording.record()
        finally:
            consumer.close()
            record_failed_acks(recorder, consumer, driver.name)
            driver.close()
            recorder.close()
    emit(
        ProgressLine(
            kind="done",
            consumer=plan.consumer_id,
            received=progress.received,
            foreign=recording.foreign,
        )
    )


if __name__ == "__main__":
    tune_for_load()
    main(sys.argv[1])
