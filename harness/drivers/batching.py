"""The batched hot path for any driver: ``send_batch`` and ``poll_batch`` use a driver's own
batched methods where it has them (``BatchProducer``, ``BatchConsumer``) and fall back to the
per-message protocol otherwise, so a third-party driver works unchanged, only slower."""

from collections.abc import Sequence

from harness.drivers.base import (
    BatchConsumer,
    BatchProducer,
    Consumer,
    Producer,
    ReceivedBatch,
    SendCompletions,
    SendResult,
)


def send_batch(
    producer: Producer,
    keys: Sequence[str],
    payloads: Sequence[bytes],
    first_index: int,
    completions: SendCompletions,
    *,
    dedup_ids: Sequence[str] | None = None,
) -> None:
    """``BatchProducer.send_batch`` on any producer."""
    if isinstance(producer, BatchProducer):
        producer.send_batch(keys, payloads, first_index, completions, dedup_ids=dedup_ids)
        return
    for position, (key, payload) in enumerate(zip(keys, payloads, strict=True)):
        index = first_index + position

        def completed(result: SendResult, index: int = index) -> None:
            if result.ok:
                partition, offset = result.partition, result.offset
                completions.ok(
                    index, -1 if partition is None else partition, -1 if offset is None else offset
                )
            else:
                completions.failed(index, result.outcome, result.error or "")

        dedup_id = None if dedup_ids is None else dedup_ids[position]
        producer.send(key, payload, completed, dedup_id=dedup_id)


class PerMessageBatches:
    """``BatchConsumer`` over a consumer's per-message ``poll`` and ``ack``."""

    def __init__(self, consumer: Consumer) -> None:
        self.consumer = consumer

    def poll_batch(self, max_messages: int, timeout: float) -> ReceivedBatch:
        messages = self.consumer.poll(max_messages, timeout)
        offsets = [-1 if m.offset is None else m.offset for m in messages]
        return ReceivedBatch(
            payloads=[message.payload for message in messages],
            partitions=[-1 if m.partition is None else m.partition for m in messages],
            offsets=offsets,
            # Where partition:offset identifies a message, the broker's id is not recorded.
            message_ids=[m.message_id for m in messages] if -1 in offsets else None,
            keys=[message.key for message in messages],
            delivery_attempts=[message.delivery_attempt or 0 for message in messages],
            handle=messages,
        )

    def ack_batch(self, batch: ReceivedBatch) -> None:
        self.consumer.ack(batch.handle)


def batch_consumer(consumer: Consumer) -> BatchConsumer:
    """``consumer`` itself where it polls in batches, else ``PerMessageBatches`` over it. Call
    it once, not per poll: ``isinstance`` against a runtime-checkable protocol costs 4-8 us."""
    if isinstance(consumer, BatchConsumer):
        return consumer
    return PerMessageBatches(consumer)


def poll_batch(consumer: Consumer, max_messages: int, timeout: float) -> ReceivedBatch:
    """``BatchConsumer.poll_batch`` on any consumer (``batch_consumer`` once is cheaper)."""
    return batch_consumer(consumer).poll_batch(max_messages, timeout)


def ack_batch(consumer: Consumer, batch: ReceivedBatch) -> None:
    """``BatchConsumer.ack_batch`` on any consumer, for a batch from ``poll_batch`` above."""
    batch_consumer(consumer).ack_batch(batch)
