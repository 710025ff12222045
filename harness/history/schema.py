"""The Arrow schemas of the history tables (schema version 1, ``docs/history.md``).

Columns the spec never leaves empty are declared non-nullable: Parquet then stores them as
``REQUIRED`` (no definition levels), and writing a null there fails loudly.
"""

from enum import IntEnum, StrEnum

import pyarrow as pa  # type: ignore[import-untyped]

VERSION = 1
VERSION_KEY = b"brokerbench.history.version"
"""The schema metadata key every history table carries; readers refuse another version."""
_METADATA = {VERSION_KEY: str(VERSION).encode()}
_DICTIONARY_STRING = pa.dictionary(pa.int32(), pa.string())
ADDED_LATER = b"brokerbench.added_later"
"""Field metadata of a nullable column added to version 1 after its first release: a history
written before it reads it as null, which is what it meant there (``subscriber``: the
destination's only group)."""


class SendOutcome(IntEnum):
    """``sends.outcome``: Jepsen's ok / fail / info."""

    OK = 0
    FAIL = 1
    UNKNOWN = 2
    """The broker may or may not have taken the message (also: no outcome arrived)."""


class Disposition(IntEnum):
    """``receives.disposition``: what the consumer did with a delivery."""

    ACKED = 0
    NACKED = 1
    NONE = 2
    """Neither: the consumer stopped first."""


class EventKind(StrEnum):
    """``events.kind``."""

    RUN_START = "run-start"
    FAULT_START = "fault-start"
    FAULT_END = "fault-end"
    WARMUP_END = "warmup-end"
    DRAIN_START = "drain-start"
    DRAIN_END = "drain-end"
    NOT_SENT = "not-sent"
    """A producer reached the run's bound with messages of its schedule unsent (``detail``:
    ``producer_id``, ``count``): the harness fell behind."""
    ACK_FAILED = "ack-failed"
    """A consumer's acks that the broker refused even after retries (``name``: the broker,
    ``detail``: ``count``, ``errors``): those messages are delivered again."""
    SUBSCRIBED = "subscribed"
    """A process began reading a fan-out topic as one of its subscribers (``name``:
    ``<topic>/<group>``, the ``receives.subscriber`` of its deliveries), so a subscriber that
    receives nothing is still known."""
    SCHEMA_WRITTEN = "schema-written"
    """A producer's bodies per schema version (``detail``: ``producer_id``, ``written``
    {v1, v2, bypass: count}, ``schema_ids`` {v1, v2: registry id}); at its end."""
    SCHEMA_READ = "schema-read"
    """A consumer's decoded bodies (``detail``: ``consumer_id``, ``reader`` v1 | v2,
    ``decoded`` {schema id: count}); at its end."""
    UNDECODABLE = "undecodable"
    """A delivery whose body could not be decoded, nacked to the dead-letter destination
    (``detail``: producer_id, key_id, seq, partition, offset, reason, error)."""
    DEAD_LETTERED = "dead-lettered"
    """A message read from the dead-letter destination (``detail``: producer_id, key_id,
    seq)."""
    SCHEMA_ROLLED = "schema-rolled"
    """The registry accepted the new schema; producers write it from now on (``detail``:
    subject, compatibility, schema_id)."""
    SCHEMA_REFUSED = "schema-refused"
    """The registry refused the new schema (``detail``: subject, compatibility, reason);
    producers keep writing the old one."""


def _required(name: str, type_: pa.DataType) -> pa.Field:
    return pa.field(name, type_, nullable=False)


SENDS = pa.schema(
    [
        _required("producer_id", pa.uint32()),
        _required("key_id", pa.uint32()),
        _required("seq", pa.uint64()),
        _required("intended_ns", pa.int64()),
        _required("invoke_ns", pa.int64()),
        pa.field("complete_ns", pa.int64()),
        _required("outcome", pa.uint8()),
        _required("partition", pa.int32()),
        _required("offset", pa.int64()),
    ],
    metadata=_METADATA,
)

RECEIVES = pa.schema(
    [
        _required("consumer_id", pa.uint32()),
        _required("producer_id", pa.uint32()),
        _required("key_id", pa.uint32()),
        _required("seq", pa.uint64()),
        _required("intended_ns", pa.int64()),
        _required("receive_ns", pa.int64()),
        _required("partition", pa.int32()),
        _required("offset", pa.int64()),
        pa.field("message_id", _DICTIONARY_STRING),
        _required("delivery_attempt", pa.int16()),
        _required("disposition", pa.uint8()),
        pa.field("scope", _DICTIONARY_STRING),
        pa.field("subscriber", _DICTIONARY_STRING, metadata={ADDED_LATER: b"1"}),
    ],
    metadata=_METADATA,
)

EVENTS = pa.schema(
    [
        _required("time_ns", pa.int64()),
        _required("kind", pa.string()),
        _required("name", pa.string()),
        pa.field("target", pa.string()),
        pa.field("detail", pa.string()),
    ],
    metadata=_METADATA,
)

SCHEMAS: dict[str, pa.Schema] = {"sends": SENDS, "receives": RECEIVES, "events": EVENTS}
"""Every history table by name; the name is also the file name (``sends.parquet``, ...)."""
