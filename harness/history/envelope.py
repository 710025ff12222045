"""The envelope: a 36-byte little-endian header at the start of every message brokerbench sends.

Layout (``docs/history.md``): magic ``b"BB"``, version 1, flags 0, run_id u64, producer_id u32,
key_id u32, seq u64, intended_ns i64. A message is ``header + body + padding``, the padding
(pseudo-random, so that broker compression cannot shrink it) filling it up to the configured
size. ``decode`` cannot tell a body from padding: it returns everything after the header, so a
workload that sends a body *and* pads must make the body self-delimiting (or pass a size no
larger than header + body, which means no padding).

``decode_columns`` decodes many headers at once into numpy columns (the consumers' hot path).
"""

import os
import struct
import threading
from collections.abc import Sequence
from dataclasses import dataclass, fields
from operator import itemgetter

import numpy as np
import numpy.typing as npt

MAGIC = b"BB"
VERSION = 1
HEADER = struct.Struct("<2sBBQIIQq")
HEADER_SIZE = HEADER.size
_PREFIX = MAGIC + bytes([VERSION])

_pack = HEADER.pack
_unpack_from = HEADER.unpack_from

HEADER_DTYPE = np.dtype(
    [
        ("magic", "S2"),
        ("version", "u1"),
        ("flags", "u1"),
        ("run_id", "<u8"),
        ("producer_id", "<u4"),
        ("key_id", "<u4"),
        ("seq", "<u8"),
        ("intended_ns", "<i8"),
    ]
)
"""The header as a packed numpy record, field for field ``HEADER``."""
if HEADER_DTYPE.itemsize != HEADER_SIZE:  # pragma: no cover - the two layouts drifted apart
    raise ImportError("HEADER_DTYPE does not match HEADER")
_header_of = itemgetter(slice(0, HEADER_SIZE))
_NO_HEADER = bytes(HEADER_SIZE)  # its magic is not MAGIC: stands in for a short payload

# Grown in place (never replaced) so that the hot path can read it without the lock.
_pad = bytearray(os.urandom(64 * 1024))
_pad_lock = threading.Lock()


@dataclass(frozen=True, slots=True)
class Envelope:
    """Who sent a message and when it was meant to be sent.

    ``(producer_id, key_id, seq)`` identifies the message within the run; ``run_id`` tells this
    run's messages from those of other runs left in the same destination.
    """

    run_id: int
    producer_id: int
    key_id: int
    seq: int
    intended_ns: int


# A frozen dataclass's __init__ sets each field through object.__setattr__, which costs more
# than all the rest of decode (which consumers call per message): decode fills the slots
# directly, halving its time. The unpacking fails at import if the fields ever change.
_new = object.__new__
_set_run_id, _set_producer_id, _set_key_id, _set_seq, _set_intended_ns = (
    getattr(Envelope, field.name).__set__ for field in fields(Envelope)
)


def encode(envelope: Envelope, size: int, body: bytes = b"") -> bytes:
    """The message for ``envelope``: header, then ``body``, then padding up to ``size`` bytes.

    Never shorter than header + body, whatever ``size`` says. Raises ``struct.error`` when a
    field does not fit its width.
    """
    header = _pack(
        MAGIC,
        VERSION,
        0,
        envelope.run_id,
        envelope.producer_id,
        envelope.key_id,
        envelope.seq,
        envelope.intended_ns,
    )
    fill = size - HEADER_SIZE - len(body)
    if fill <= 0:
        return header + body
    if fill > len(_pad):
        _grow_pad(fill)
    return header + body + _pad[:fill]


_HEADER_FIELDS = [
    ("magic", "S2"),
    ("version", "u1"),
    ("flags", "u1"),
    ("run_id", "<u8"),
    ("producer_id", "<u4"),
    ("key_id", "<u4"),
    ("seq", "<u8"),
    ("intended_ns", "<i8"),
]
HEADER_DTYPE = np.dtype(_HEADER_FIELDS)
assert HEADER_DTYPE.itemsize == HEADER_SIZE


class EnvelopePacker:
    """``encode`` for many envelopes of one producer without bodies (the batched send path):
    the same bytes, packed into a reused template whose constant fields and padding are
    written once."""

    def __init__(self, run_id: int, producer_id: int, size: int) -> None:
        fill = max(0, size - HEADER_SIZE)
        if fill > len(_pad):
            _grow_pad(fill)
        self._dtype = np.dtype([*_HEADER_FIELDS, ("pad", f"V{fill}")]) if fill else HEADER_DTYPE
        self._constants = {
            "magic": MAGIC,
            "version": VERSION,
            "flags": 0,
            "run_id": run_id,
            "producer_id": producer_id,
        }
        self._padding = np.void(bytes(_pad[:fill])) if fill else None
        self._template = self._new_template(0)

    def _new_template(self, rows: int) -> npt.NDArray[np.void]:
        template = np.empty(rows, self._dtype)
        for name, value in self._constants.items():
            template[name] = value
        if self._padding is not None:
            template["pad"] = self._padding
        return template

    def pack(
        self,
        key_ids: npt.NDArray[np.uint32],
        seqs: npt.NDArray[np.uint64],
        intended_ns: npt.NDArray[np.int64],
    ) -> list[bytes]:
        count = len(key_ids)
        if count > len(self._template):
            self._template = self._new_template(max(count, 2 * len(self._template)))
        records = self._template[:count]
        records["key_id"] = key_ids
        records["seq"] = seqs
        records["intended_ns"] = intended_ns
        raw = records.tobytes()
        width = self._dtype.itemsize
        return [raw[start : start + width] for start in range(0, len(raw), width)]


def decode(payload: bytes) -> tuple[Envelope, bytes] | None:
    """The envelope and everything after the header, or ``None`` for a foreign payload (one
    that does not start with the magic and version 1)."""
    if len(payload) < HEADER_SIZE or payload[:3] != _PREFIX:
        return None
    _, _, _, run_id, producer_id, key_id, seq, intended_ns = _unpack_from(payload)
    envelope = _new(Envelope)
    _set_run_id(envelope, run_id)
    _set_producer_id(envelope, producer_id)
    _set_key_id(envelope, key_id)
    _set_seq(envelope, seq)
    _set_intended_ns(envelope, intended_ns)
    return envelope, payload[HEADER_SIZE:]


@dataclass(frozen=True, slots=True)
class EnvelopeColumns:
    """The envelopes of many payloads as columns, one row per payload (``decode_columns``).

    ``foreign`` marks the payloads that are not this run's envelopes (another run's, or not
    brokerbench's at all); the other columns hold no meaning in those rows.
    """

    producer_id: npt.NDArray[np.uint32]
    key_id: npt.NDArray[np.uint32]
    seq: npt.NDArray[np.uint64]
    intended_ns: npt.NDArray[np.int64]
    foreign: npt.NDArray[np.bool_]

    def __len__(self) -> int:
        return len(self.foreign)


def decode_columns(payloads: Sequence[bytes], run_id: int) -> EnvelopeColumns:
    """``decode`` of every payload at once, as columns. A payload is foreign when it is shorter
    than the header, does not start with the magic and version 1, or belongs to another run."""
    headers = list(map(_header_of, payloads))
    joined = b"".join(headers)
    if len(joined) != HEADER_SIZE * len(headers):
        joined = b"".join(h if len(h) == HEADER_SIZE else _NO_HEADER for h in headers)
    rows = np.frombuffer(joined, dtype=HEADER_DTYPE)
    foreign = (rows["magic"] != MAGIC) | (rows["version"] != VERSION) | (rows["run_id"] != run_id)
    return EnvelopeColumns(
        producer_id=np.ascontiguousarray(rows["producer_id"]),
        key_id=np.ascontiguousarray(rows["key_id"]),
        seq=np.ascontiguousarray(rows["seq"]),
        intended_ns=np.ascontiguousarray(rows["intended_ns"]),
        foreign=foreign,
    )


def _grow_pad(size: int) -> None:
    """Extend the process's pad to at least ``size`` bytes, keeping its prefix: the padding of
    equal-sized messages stays identical for the life of the process."""
    with _pad_lock:
        if len(_pad) < size:
            _pad.extend(os.urandom(max(size, 2 * len(_pad)) - len(_pad)))
