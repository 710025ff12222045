"""The service process counts each message's first ack once, so a Kafka rewind after a nack
(re-delivering messages already handled) cannot end the drain early."""

from harness.drivers.base import Received
from workloads.flows.service_process import _FirstAcks


def kafka(offset: int, partition: int = 0) -> Received:
    return Received("k", b"", f"{partition}:{offset}", partition, offset)


def test_a_rewind_after_a_nack_counts_only_the_nacked_message_again() -> None:
    firsts = _FirstAcks()
    firsts.nacked(kafka(10))
    assert [firsts.acked(kafka(o)) for o in (11, 12)] == [True, True]
    # the rewind: 10 was never acked, 11 and 12 were
    assert [firsts.acked(kafka(o)) for o in (10, 11, 12)] == [True, False, False]
    assert firsts.acked(kafka(10)) is False
    assert firsts.acked(kafka(10, partition=1)) is True


def test_a_message_nacked_again_after_its_ack_is_not_counted_twice() -> None:
    firsts = _FirstAcks()
    assert firsts.acked(kafka(5)) is True
    firsts.nacked(kafka(5))
    assert firsts.acked(kafka(5)) is False


def test_messages_without_offsets_count_every_ack() -> None:
    firsts = _FirstAcks()
    message = Received("k", b"", "sqs-id")
    firsts.nacked(message)
    assert firsts.acked(message) is True
