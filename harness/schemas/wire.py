"""The Confluent wire format: what every registry-aware serializer puts before the body.

A message is ``0x00`` (the magic byte), the schema's registry id as a 4-byte big-endian
unsigned integer, then the body encoded with that schema (for Avro: the record's binary
encoding, without a container header). A consumer finds the writer's schema by the id, so a
producer may move to a newer schema mid-stream and every consumer can still decode.
"""

import struct

MAGIC_BYTE = 0
_PREFIX = struct.Struct(">BI")
PREFIX_SIZE = _PREFIX.size


class UndecodableError(ValueError):
    """A payload that cannot be decoded: not in the wire format, a schema id the registry does
    not know, or a body its schema cannot read."""


def frame(schema_id: int, body: bytes) -> bytes:
    """``body`` behind the magic byte and ``schema_id``."""
    return _PREFIX.pack(MAGIC_BYTE, schema_id) + body


def schema_id_of(payload: bytes) -> int:
    """The registry id of the schema ``payload`` was written with; ``UndecodableError`` when it
    is not in the wire format."""
    if len(payload) < PREFIX_SIZE:
        raise UndecodableError(f"{len(payload)} bytes: shorter than the wire format's prefix")
    magic, schema_id = _PREFIX.unpack_from(payload)
    if magic != MAGIC_BYTE:
        raise UndecodableError(f"magic byte {magic}, not {MAGIC_BYTE}: not in the wire format")
    return int(schema_id)
