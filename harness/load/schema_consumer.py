"""The consumer loops of a run with ``payload_schema: avro`` (``harness/schemas/evolution.py``),
one message at a time (schema runs are low-rate runs about correctness, not throughput).

- ``consume_decoding``: each delivery's body is decoded with the consumer's reader schema; a
  body that cannot be decoded is nacked (the destination's policy dead-letters it at once),
  recorded as a ``NACKED`` receive and as an ``undecodable`` event with its reason; the rest
  is acked and recorded as usual. At the end a ``schema-read`` event holds what it decoded.
- ``consume_dead_letters``: reads the dead-letter destination and records each dead letter
  as a ``dead-lettered`` event (not a receive: the run's receives are its consumers').
"""

import threading
import time
from collections.abc import Callable
from pathlib import Path

from harness.drivers.base import Consumer, Received
from harness.history.envelope import decode
from harness.history.recorder import Recorder
from harness.history.schema import Disposition, EventKind
from harness.load.plan import ConsumerPlan
from harness.schemas.wire import UndecodableError

POLL_MESSAGES = 100
POLL_TIMEOUT_SECONDS = 0.5
Scope = Callable[[Received], str | None]


def consume_decoding(  # noqa: PLR0917 - one call site
    consumer: Consumer,
    recorder: Recorder,
    plan: ConsumerPlan,
    stop: threading.Event,
    scope: Scope,
    on_received: Callable[[int, int], None],
) -> None:
    """Until ``stop``: poll, decode, ack or nack, record. ``on_received(poll_ns,
    intended_ns)`` is told of each of this run's deliveries (the progress lines)."""
    from harness.schemas.bodies import SchemaReader
    from harness.schemas.evolution import undecodable_reason

    reader = SchemaReader(Path(plan.run.run_dir), plan.consumer_id)
    try:
        while not stop.is_set():
            messages = consumer.poll(POLL_MESSAGES, POLL_TIMEOUT_SECONDS)
            poll_ns = time.time_ns()
            for message in messages:
                decoded = decode(message.payload)
                if decoded is None or decoded[0].run_id != plan.run.run_id:
                    consumer.ack([message])
                    continue
                envelope, body = decoded
                try:
                    reader.decode(body)
                except UndecodableError as error:
                    disposition = Disposition.NACKED
                    recorder.event(
                        EventKind.UNDECODABLE,
                        undecodable_reason(error),
                        f"consumer-{plan.consumer_id}",
                        {
                            "producer_id": envelope.producer_id,
                            "key_id": envelope.key_id,
                            "seq": envelope.seq,
                            "key": message.key,
                            "partition": -1 if message.partition is None else message.partition,
                            "offset": -1 if message.offset is None else message.offset,
                            "error": str(error)[:200],
                        },
                    )
                    consumer.nack([message])
                else:
                    disposition = Disposition.ACKED
                    consumer.ack([message])
                recorder.received(
                    consumer_id=plan.consumer_id,
                    producer_id=envelope.producer_id,
                    key_id=envelope.key_id,
                    seq=envelope.seq,
                    intended_ns=envelope.intended_ns,
                    receive_ns=poll_ns,
                    disposition=disposition,
                    partition=-1 if message.partition is None else message.partition,
                    offset=-1 if message.offset is None else message.offset,
                    message_id=None if message.offset is not None else message.message_id,
                    delivery_attempt=message.delivery_attempt or 0,
                    scope=scope(message),
                )
                on_received(poll_ns, envelope.intended_ns)
    finally:
        recorder.event(
            EventKind.SCHEMA_READ,
            "schema",
            f"consumer-{plan.consumer_id}",
            {
                "consumer_id": plan.consumer_id,
                "reader": reader.reader,
                "decoded": {str(k): v for k, v in reader.decoded.items()},
            },
        )


def consume_dead_letters(
    consumer: Consumer, recorder: Recorder, plan: ConsumerPlan, stop: threading.Event
) -> None:
    """Until ``stop``: every dead letter of this run as a ``dead-lettered`` event."""
    while not stop.is_set():
        messages = consumer.poll(POLL_MESSAGES, POLL_TIMEOUT_SECONDS)
        for message in messages:
            decoded = decode(message.payload)
            if decoded is not None and decoded[0].run_id == plan.run.run_id:
                envelope = decoded[0]
                recorder.event(
                    EventKind.DEAD_LETTERED,
                    "dead-letter",
                    f"consumer-{plan.consumer_id}",
                    {
                        "producer_id": envelope.producer_id,
                        "key_id": envelope.key_id,
                        "seq": envelope.seq,
                    },
                )
        if messages:
            consumer.ack(messages)
