"""The load loops of ``test_sqs_pubsub_hot_path.py``, each in a process of its own, so that its
CPU time (``time.process_time``: every thread of the process, user + system) is its own and the
GIL is not shared with the other side:

    python -m tests.benchmarks.hot_path_load '{"role": "produce", ...}'

prints one JSON line when ready (consumers) and one with its figures at the end.

Roles (``path``: ``batched`` = the driver's ``send_batch``/``poll_batch``/``ack_batch``;
``per-message`` = the same calls through ``harness.drivers.batching``'s fallback onto
``send``/``poll``/``ack``, what the load processes did before; ``bare`` = the client library
alone, no driver, nothing recorded):

- ``produce``: every ``tick`` seconds, the messages due at ``rate`` msg/s (``rate`` 0: as fast as
  the driver takes them, at most ``window`` unfinished and ``max_messages`` in all),
  envelope-encoded to ``size`` bytes over 100 keys; each outcome is stored by index, and the
  sends are written to a history shard (``ShardWriter.append_columns``) at the end. Stops
  after ``seconds``.
- ``consume``: ``poll_batch(100, 0.5)``, decodes every envelope, appends the receives to a
  history shard per batch, ``ack_batch``; stops after ``expect`` messages or ``seconds``.
  Also reports the end-to-end latency percentiles (receive time - intended send time).
- ``bare-produce``/``bare-consume``: boto3 (SendMessageBatch of 10 on 4 threads;
  ReceiveMessage of 10 + DeleteMessageBatch on 3 threads) or google-cloud-pubsub (the batching
  ``PublisherClient.publish`` with at most ``window`` futures outstanding; a streaming pull
  ``subscribe`` whose callback acks).

Both report ``samples``: (wall clock, messages done) every 0.25 s, for rates over a window.
With ``progress`` (a file path) the consumer writes its count there and the producer keeps at
most ``backlog`` messages waiting in the broker: a max-rate run must not fill the broker's
memory (the Pub/Sub emulator's heap is 384 MB).
"""

import base64
import contextlib
import json
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

KEYS = 100
SAMPLE_SECONDS = 0.25
PROGRESS_SECONDS = 0.05


def report(**fields: Any) -> None:
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


class Sampler:
    """(time.time(), count) every ``SAMPLE_SECONDS``, taken by the loop that counts; the count
    also goes to the ``progress`` file, if any."""

    def __init__(self, progress: str | None = None) -> None:
        self.samples: list[tuple[float, int]] = []
        self._next = self._next_progress = 0.0
        self._progress = None if progress is None else Path(progress)

    def maybe(self, count: int) -> None:
        now = time.time()
        if now >= self._next:
            self.samples.append((now, count))
            self._next = now + SAMPLE_SECONDS
        if self._progress is not None and now >= self._next_progress:
            self._progress.write_text(str(count))
            self._next_progress = now + PROGRESS_SECONDS


class Backlog:
    """Whether the broker holds ``backlog`` messages not yet received by the consumer."""

    def __init__(self, plan: dict[str, Any]) -> None:
        self._progress = Path(plan["progress"]) if "progress" in plan else None
        self._limit = int(plan.get("backlog", 0))
        self._received = 0

    def full(self, sent: int) -> bool:
        if self._progress is None or sent - self._received < self._limit:
            return False
        with contextlib.suppress(OSError, ValueError):  # not written yet, or read mid-write
            self._received = int(self._progress.read_text() or 0)
        return sent - self._received >= self._limit


class Outcomes:
    """A ``SendCompletions`` into preallocated columns."""

    def __init__(self, capacity: int) -> None:
        self.complete_ns = np.zeros(capacity, dtype=np.int64)
        self.outcome = np.zeros(capacity, dtype=np.uint8)
        self.done = 0
        self._lock = threading.Lock()

    def ok(self, index: int, partition: int = -1, offset: int = -1) -> None:
        self.complete_ns[index] = time.time_ns()
        with self._lock:
            self.done += 1

    def failed(self, index: int, outcome: Any, error: str) -> None:
        self.complete_ns[index] = time.time_ns()
        self.outcome[index] = 2
        with self._lock:
            self.done += 1


class PerMessage:
    """A driver's producer or consumer without its batched methods: ``harness.drivers.batching``
    then falls back onto the per-message ones."""

    def __init__(self, inner: Any) -> None:
        for name in ("send", "flush", "close", "poll", "ack", "nack"):
            if hasattr(inner, name):
                setattr(self, name, getattr(inner, name))


def open_destination(plan: dict[str, Any]) -> tuple[Any, Any]:
    from harness.drivers.base import DestinationSpec
    from harness.drivers.targets import open_driver
    from harness.settings import load_settings

    driver = open_driver(plan["target"], load_settings())
    return driver, driver.create_destination(DestinationSpec(plan["destination"]))


def history_writer(table: str) -> Any:
    from harness.history.schema import RECEIVES, SENDS
    from harness.history.shards import ShardWriter

    path = Path(tempfile.mkdtemp(prefix="bb-hot-path-")) / f"{table}.arrow"
    return ShardWriter(path, SENDS if table == "sends" else RECEIVES)


def produce(plan: dict[str, Any]) -> dict[str, Any]:
    from harness.drivers import batching
    from harness.history.envelope import Envelope, encode
    from harness.load.keys import key_name

    driver, destination = open_destination(plan)
    producer = driver.producer(destination)
    sender: Any = producer if plan["path"] == "batched" else PerMessage(producer)
    rate, seconds, tick, size = plan["rate"], plan["seconds"], plan["tick"], plan["size"]
    capacity = int(rate * seconds) + 1 if rate else plan.get("max_messages", 5_000_000)
    outcomes = Outcomes(capacity)
    intended = np.zeros(capacity, dtype=np.int64)
    invoke = np.zeros(capacity, dtype=np.int64)
    names = [key_name(key) for key in range(KEYS)]
    sampler = Sampler()
    backlog = Backlog(plan)
    sent = 0
    run_id = int.from_bytes(os.urandom(8), "little") >> 1
    cpu, start_ns = time.process_time(), time.time_ns()
    end_ns = start_ns + int(seconds * 1e9)
    while (now := time.time_ns()) < end_ns and outcomes.done < capacity:
        due = int((now - start_ns) / 1e9 * rate) if rate else sent + 100
        if rate == 0 and (sent - outcomes.done >= plan["window"] or backlog.full(sent)):
            due = sent
        count = min(due, capacity) - sent
        if count > 0:
            keys = [names[index % KEYS] for index in range(sent, sent + count)]
            payloads = [
                encode(Envelope(run_id, 0, index % KEYS, index // KEYS, now), size)
                for index in range(sent, sent + count)
            ]
            intended[sent : sent + count] = now
            invoke[sent : sent + count] = time.time_ns()
            batching.send_batch(sender, keys, payloads, sent, outcomes)
            sent += count
        sampler.maybe(outcomes.done)
        time.sleep(tick if rate else 0.001)
    left = producer.flush(60)
    sampler.maybe(outcomes.done)
    writer = history_writer("sends")
    indexes = np.arange(sent)
    writer.append_columns(
        [
            np.zeros(sent, dtype=np.uint32),
            (indexes % KEYS).astype(np.uint32),
            (indexes // KEYS).astype(np.uint64),
            intended[:sent],
            invoke[:sent],
            outcomes.complete_ns[:sent],
            outcomes.outcome[:sent],
            np.full(sent, -1, dtype=np.int32),
            np.full(sent, -1, dtype=np.int64),
        ]
    )
    writer.close()
    producer.close()
    used = time.process_time() - cpu
    driver.close()
    failed = int(np.count_nonzero(outcomes.outcome[:sent]))
    return {"cpu_s": used, "sent": sent, "failed": failed, "left": left, **samples(sampler)}


def consume(plan: dict[str, Any]) -> dict[str, Any]:
    from harness.drivers import batching
    from harness.history.envelope import decode

    driver, destination = open_destination(plan)
    consumer = driver.consumer(destination, "default")
    receiver: Any = consumer if plan["path"] == "batched" else PerMessage(consumer)
    writer = history_writer("receives")
    sampler = Sampler(plan.get("progress"))
    received = 0
    latencies: list[np.ndarray[Any, Any]] = []
    report(kind="ready")
    cpu, deadline = time.process_time(), time.monotonic() + plan["seconds"]
    errors = 0
    while received < plan["expect"] and time.monotonic() < deadline:
        try:
            batch = batching.poll_batch(receiver, 100, 0.5)
        except Exception as exc:  # a shared broker under other load: retry, as a consumer does
            errors += 1
            sys.stderr.write(f"poll failed (retrying): {type(exc).__name__}: {exc}\n")
            time.sleep(0.2)
            continue
        count = len(batch)
        if count:
            now = time.time_ns()
            envelopes = [decoded[0] for p in batch.payloads if (decoded := decode(p)) is not None]
            writer.append_columns(
                [
                    np.zeros(count, dtype=np.uint32),
                    [e.producer_id for e in envelopes],
                    [e.key_id for e in envelopes],
                    [e.seq for e in envelopes],
                    [e.intended_ns for e in envelopes],
                    np.arange(now, now + count, dtype=np.int64),
                    np.full(count, -1, dtype=np.int32),
                    np.full(count, -1, dtype=np.int64),
                    batch.message_ids,
                    batch.delivery_attempts,
                    np.zeros(count, dtype=np.uint8),
                    batch.keys,
                ]
            )
            batching.ack_batch(receiver, batch)
            latencies.append(now - np.array([e.intended_ns for e in envelopes], dtype=np.int64))
            received += count
        sampler.maybe(received)
    consumer.close()
    writer.close()
    used = time.process_time() - cpu
    driver.close()
    e2e_ms = np.concatenate(latencies) / 1e6 if latencies else np.zeros(1)
    percentiles = {f"e2e_p{p}_ms": round(float(np.percentile(e2e_ms, p)), 1) for p in (50, 99)}
    return {
        "cpu_s": used,
        "received": received,
        "errors": errors,
        **percentiles,
        **samples(sampler),
    }


def samples(sampler: Sampler) -> dict[str, Any]:
    return {"samples": sampler.samples}


def bare_sqs_client(plan: dict[str, Any], threads: int) -> Any:
    import boto3
    from botocore.config import Config

    from harness.settings import load_settings

    return boto3.client(
        "sqs",
        endpoint_url=f"http://127.0.0.1:{load_settings().ports.elasticmq}",
        region_name="us-east-1",
        aws_access_key_id="local",
        aws_secret_access_key="local",
        config=Config(max_pool_connections=threads + 2),
    )


def run_threads(
    threads: int,
    seconds: float,
    work: Callable[[threading.Event], int],
    progress: str | None = None,
) -> Any:
    """``work(stop)`` on ``threads`` threads for ``seconds``; samples the running total."""
    stop = threading.Event()
    counts = [0] * threads
    sampler = Sampler(progress)

    def loop(slot: int) -> None:
        while not stop.is_set():
            counts[slot] += work(stop)

    workers = [threading.Thread(target=loop, args=(n,)) for n in range(threads)]
    cpu = time.process_time()
    for worker in workers:
        worker.start()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        sampler.maybe(sum(counts))
        time.sleep(0.05)
    stop.set()
    for worker in workers:
        worker.join()
    sampler.maybe(sum(counts))
    return time.process_time() - cpu, sum(counts), sampler


def bare_sqs_produce(plan: dict[str, Any]) -> dict[str, Any]:
    client = bare_sqs_client(plan, 4)
    url = client.get_queue_url(QueueName=plan["destination"])["QueueUrl"]
    body = base64.b64encode(os.urandom(plan["size"])).decode()
    backlog = Backlog(plan)
    sent = [0]

    limit = plan.get("max_messages", 5_000_000)

    def send(_: threading.Event) -> int:
        if backlog.full(sent[0]) or sent[0] >= limit:
            time.sleep(0.001)
            return 0
        entries = [
            {
                "Id": str(n),
                "MessageBody": body,
                "MessageAttributes": {
                    "bb-key": {"DataType": "String", "StringValue": f"key-{n}"},
                    "bb-encoding": {"DataType": "String", "StringValue": "base64"},
                },
            }
            for n in range(10)
        ]
        answer = client.send_message_batch(QueueUrl=url, Entries=entries)
        sent[0] += len(entries)
        return len(answer["Successful"])

    cpu, total, sampler = run_threads(4, plan["seconds"], send)
    return {"cpu_s": cpu, "sent": total, **samples(sampler)}


def bare_sqs_consume(plan: dict[str, Any]) -> dict[str, Any]:
    client = bare_sqs_client(plan, 3)
    url = client.get_queue_url(QueueName=plan["destination"])["QueueUrl"]
    report(kind="ready")

    def receive(_: threading.Event) -> int:
        messages = client.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=1,
            MessageSystemAttributeNames=["ApproximateReceiveCount"],
            MessageAttributeNames=["bb-key", "bb-encoding"],
        ).get("Messages", [])
        if messages:
            client.delete_message_batch(
                QueueUrl=url,
                Entries=[
                    {"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]}
                    for n, m in enumerate(messages)
                ],
            )
        return len(messages)

    cpu, received, sampler = run_threads(3, plan["seconds"], receive, plan.get("progress"))
    return {"cpu_s": cpu, "received": received, **samples(sampler)}


def pubsub_names(plan: dict[str, Any]) -> tuple[str, str, str]:
    from harness.settings import load_settings

    settings = load_settings()
    topic = f"projects/{settings.pubsub_project}/topics/{plan['destination']}"
    subscription = topic.replace("/topics/", "/subscriptions/") + "--default"
    return f"127.0.0.1:{settings.ports.pubsub}", topic, subscription


def bare_pubsub_produce(plan: dict[str, Any]) -> dict[str, Any]:
    from harness.drivers.pubsub import emulator_publisher

    host, topic, _ = pubsub_names(plan)
    publisher = emulator_publisher(host)
    data = os.urandom(plan["size"])
    outstanding = threading.Semaphore(plan["window"])
    done = [0]
    lock = threading.Lock()

    def completed(_: Any) -> None:
        with lock:
            done[0] += 1
        outstanding.release()

    sampler = Sampler()
    backlog = Backlog(plan)
    cpu, deadline = time.process_time(), time.monotonic() + plan["seconds"]
    sent = 0
    limit = plan.get("max_messages", 5_000_000)
    while time.monotonic() < deadline and done[0] < limit:
        if backlog.full(sent) or sent >= limit:
            time.sleep(0.001)
        elif outstanding.acquire(timeout=0.1):
            publisher.publish(topic, data, **{"bb-key": f"key-{sent % KEYS}"}).add_done_callback(
                completed
            )
            sent += 1
        sampler.maybe(done[0])
    publisher.stop()
    sampler.maybe(done[0])
    return {"cpu_s": time.process_time() - cpu, "sent": done[0], **samples(sampler)}


def bare_pubsub_consume(plan: dict[str, Any]) -> dict[str, Any]:
    import grpc
    from google.cloud import pubsub_v1
    from google.pubsub_v1.services.subscriber.transports import SubscriberGrpcTransport

    host, _, subscription = pubsub_names(plan)
    subscriber = pubsub_v1.SubscriberClient(
        transport=SubscriberGrpcTransport(channel=grpc.insecure_channel(host))
    )
    received = [0]
    lock = threading.Lock()

    def callback(message: Any) -> None:
        message.ack()
        with lock:
            received[0] += 1

    report(kind="ready")
    sampler = Sampler(plan.get("progress"))
    cpu = time.process_time()
    future = subscriber.subscribe(subscription, callback)
    deadline = time.monotonic() + plan["seconds"]
    while time.monotonic() < deadline:
        sampler.maybe(received[0])
        time.sleep(0.05)
    sampler.maybe(received[0])
    used = time.process_time() - cpu
    future.cancel()
    # The library's shutdown can hang ("Background thread did not exit"); the figures are in.
    with contextlib.suppress(Exception):
        future.result(timeout=10)
    subscriber.close()
    return {"cpu_s": used, "received": received[0], **samples(sampler)}


ROLES: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "produce": produce,
    "consume": consume,
    "bare-produce-sqs": bare_sqs_produce,
    "bare-consume-sqs": bare_sqs_consume,
    "bare-produce-pubsub": bare_pubsub_produce,
    "bare-consume-pubsub": bare_pubsub_consume,
}


if __name__ == "__main__":
    given = json.loads(sys.argv[1])
    if given.get("gevent"):  # as a producer process runs (Locust patches the standard library)
        from gevent import monkey

        monkey.patch_all()
        from grpc.experimental import gevent as grpc_gevent

        grpc_gevent.init_gevent()
    import harness.drivers.pubsub
    import harness.drivers.sqs
    import harness.history.shards  # noqa: F401 - imported before gc.freeze, as the load processes
    from harness.load.gc_tuning import tune_for_load

    tune_for_load()
    report(kind="done", **ROLES[given["role"]](given))
