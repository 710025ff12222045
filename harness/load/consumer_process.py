"""A consumer process: ``python -m harness.load.consumer_process PLAN.json``.

Polls the run's destination a batch at a time, records every delivery in its own history shard
(columns per batch: envelopes decoded at once, one append per poll), acks, and prints one JSON
progress line per second. Stops on SIGTERM or SIGINT, closing the consumer cleanly (committing
what it acked) and flushing its history.

A progress line holds ``received`` (this run's deliveries so far), ``tick`` (the line's number),
``e2e_ms`` (a sample of end-to-end latencies for the live metrics) and ``poll_gap_ms_max``: the
longest time, since the previous line, between a poll returning and the next poll being called,
i.e. recording and acking one batch. A consumer short of CPU shows it there first.
"""

import json
import signal
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pyarrow as pa  # type: ignore[import-untyped]

from harness.drivers.base import OrderingScope, Received, ReceivedBatch
from harness.drivers.batching import batch_consumer
from harness.drivers.targets import open_driver
from harness.history.envelope import decode_columns
from harness.history.recorder import Recorder, partition_scope, partition_scopes
from harness.history.schema import Disposition
from harness.load.gc_tuning import tune_for_load
from harness.load.patience import with_patience
from harness.load.plan import ConsumerPlan

# Live metrics get a sample of end-to-end latencies (the history keeps every one).
E2E_SAMPLE_EVERY = 10
E2E_SAMPLES_PER_LINE = 200
MAX_ERROR_SECONDS = 120.0
POLL_TIMEOUT_SECONDS = 0.5


def _report(**fields: object) -> None:
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


def scope_of(message: Received, ordering: OrderingScope) -> str | None:
    """The ordering-scope instance the broker promises order within, or None."""
    if ordering is OrderingScope.PARTITION:
        return partition_scope(message.partition or 0)
    if ordering in (OrderingScope.MESSAGE_GROUP, OrderingScope.ORDERING_KEY):
        return message.key
    return None


def scopes_of(batch: ReceivedBatch, ordering: OrderingScope) -> pa.Array | Sequence[str] | None:
    """``scope_of`` of every message of ``batch``, as a column."""
    if ordering is OrderingScope.PARTITION:
        assert batch.partitions is not None, "a partitioned broker's batch has partitions"
        return partition_scopes(batch.partitions)
    if ordering in (OrderingScope.MESSAGE_GROUP, OrderingScope.ORDERING_KEY):
        assert batch.keys is not None, "a batch ordered by key carries the keys"
        return batch.keys
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

    def delivered(self, poll_ns: int, intended_ns: npt.NDArray[np.int64]) -> None:
        """This run's deliveries of one poll, returned at ``poll_ns``: counts them and samples
        every ``E2E_SAMPLE_EVERY``-th delivery's end-to-end latency."""
        room = E2E_SAMPLES_PER_LINE - len(self.e2e_samples)
        if room > 0:
            first = -(self.received + 1) % E2E_SAMPLE_EVERY  # the next multiple of the step
            sampled = intended_ns[first::E2E_SAMPLE_EVERY][:room]
            self.e2e_samples += np.round((poll_ns - sampled) / 1e6, 3).tolist()
        self.received += len(intended_ns)

    def poll_gap(self, seconds: float) -> None:
        self.poll_gap_max = max(self.poll_gap_max, seconds)

    def line_if_due(self) -> None:
        if time.monotonic() < self.next_line:
            return
        self.tick += 1
        _report(
            kind="progress",
            consumer=self.consumer_id,
            received=self.received,
            tick=self.tick,
            e2e_ms=self.e2e_samples,
            poll_gap_ms_max=round(self.poll_gap_max * 1e3, 3),
        )
        self.e2e_samples = []
        self.poll_gap_max = 0.0
        self.next_line += 1.0


def _record(
    recorder: Recorder,
    plan: ConsumerPlan,
    batch: ReceivedBatch,
    *,
    ordering: OrderingScope,
    poll_ns: int,
    progress: Progress,
) -> int:
    """Records one poll's deliveries (returned at ``poll_ns``); returns how many were foreign."""
    envelopes = decode_columns(batch.payloads, plan.run.run_id)
    recorded = recorder.received_batch(
        consumer_id=plan.consumer_id,
        envelopes=envelopes,
        # +1 ns per position keeps the delivery order of one poll batch in the history, whose
        # compacted form is sorted by identity and time.
        receive_ns=np.arange(poll_ns, poll_ns + len(batch), dtype=np.int64),
        disposition=Disposition.ACKED,
        partitions=batch.partitions,
        offsets=batch.offsets,
        message_ids=batch.message_ids,
        delivery_attempts=batch.delivery_attempts,
        scopes=scopes_of(batch, ordering),
    )
    intended_ns = envelopes.intended_ns
    if recorded < len(batch):
        intended_ns = intended_ns[~envelopes.foreign]
    progress.delivered(poll_ns, intended_ns)
    return len(batch) - recorded


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
    batches = batch_consumer(consumer)
    ordering = driver.capabilities.ordering(run.destination.ordered)
    foreign = 0
    errors = BrokerErrors()
    progress = Progress(plan.consumer_id)
    returned: float | None = None  # when the last poll returned, unless a back-off followed
    _report(kind="ready", consumer=plan.consumer_id)
    try:
        while not stop.is_set():
            if returned is not None:
                progress.poll_gap(time.perf_counter() - returned)
            progress.line_if_due()
            try:
                batch = batches.poll_batch(plan.poll_batch, POLL_TIMEOUT_SECONDS)
            except Exception as exc:
                returned = None
                errors.failed(exc)  # e.g. the broker is down (a fault): keep trying
                continue
            returned = time.perf_counter()
            now = time.time_ns()
            if len(batch) == 0:
                errors.succeeded()
                continue
            foreign += _record(
                recorder, plan, batch, ordering=ordering, poll_ns=now, progress=progress
            )
            if plan.durable_history:
                recorder.flush()
            try:
                batches.ack_batch(batch)
            except Exception as exc:
                returned = None
                errors.failed(exc)  # unacked: the broker delivers these again
            else:
                errors.succeeded()
    finally:
        consumer.close()
        driver.close()
        recorder.close()
    _report(kind="done", consumer=plan.consumer_id, received=progress.received, foreign=foreign)


if __name__ == "__main__":
    tune_for_load()
    main(sys.argv[1])
