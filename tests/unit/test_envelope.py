import struct

import numpy as np
import pytest

from harness.history.envelope import (
    HEADER_SIZE,
    Envelope,
    EnvelopeColumns,
    EnvelopePacker,
    decode,
    decode_columns,
    encode,
)

ENVELOPE = Envelope(
    run_id=0xDEADBEEF_01234567,
    producer_id=7,
    key_id=2**32 - 1,
    seq=2**64 - 1,
    intended_ns=-1,
)


def test_header_layout_is_the_documented_one() -> None:
    payload = encode(Envelope(1, 2, 3, 4, 5), 0)
    assert HEADER_SIZE == 36
    assert payload == (
        b"BB\x01\x00"
        + (1).to_bytes(8, "little")
        + (2).to_bytes(4, "little")
        + (3).to_bytes(4, "little")
        + (4).to_bytes(8, "little")
        + (5).to_bytes(8, "little")
    )


def test_header_only_round_trip() -> None:
    assert decode(encode(ENVELOPE, 0)) == (ENVELOPE, b"")


def test_body_without_padding_round_trips() -> None:
    body = b'{"order": 42}'
    payload = encode(ENVELOPE, HEADER_SIZE + len(body), body)
    assert decode(payload) == (ENVELOPE, body)


def test_never_shorter_than_header_and_body() -> None:
    body = b"x" * 100
    assert len(encode(ENVELOPE, 10, body)) == HEADER_SIZE + 100


@pytest.mark.parametrize("size", [HEADER_SIZE + 1, 1024, 100_000, 1_000_000])
def test_padding_fills_up_to_size(size: int) -> None:
    payload = encode(ENVELOPE, size)
    assert len(payload) == size
    decoded = decode(payload)
    assert decoded is not None
    assert decoded[0] == ENVELOPE
    assert len(decoded[1]) == size - HEADER_SIZE


def test_padding_follows_the_body_and_is_constant_per_process() -> None:
    body = b"business event"
    payload = encode(ENVELOPE, 4096, body)
    assert len(payload) == 4096
    decoded = decode(payload)
    assert decoded is not None
    envelope, rest = decoded
    assert envelope == ENVELOPE
    assert rest.startswith(body)
    padding = rest[len(body) :]
    assert padding == encode(ENVELOPE, 4096)[HEADER_SIZE : HEADER_SIZE + len(padding)]
    assert len(set(padding)) > 200, "padding should not compress away"


def test_growing_the_pad_keeps_its_prefix() -> None:
    small = encode(ENVELOPE, 1000)
    encode(ENVELOPE, 3_000_000)
    assert encode(ENVELOPE, 1000) == small


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"BB",
        b'{"hello": "world", "padding": "................................"}',
        b"BB\x02" + bytes(33),  # a future version
        encode(ENVELOPE, 0)[:-1],  # too short for a header
    ],
)
def test_foreign_payload_is_not_decoded(payload: bytes) -> None:
    assert decode(payload) is None


def test_out_of_range_field_is_refused() -> None:
    with pytest.raises(struct.error):
        encode(Envelope(1, 2**32, 0, 0, 0), 0)


def test_envelope_is_frozen() -> None:
    with pytest.raises(AttributeError):
        ENVELOPE.seq = 1  # type: ignore[misc]


def test_the_packer_writes_the_same_bytes_as_encode() -> None:
    key_ids = np.array([0, 5, 2**32 - 1], np.uint32)
    seqs = np.array([0, 1, 2**64 - 1], np.uint64)
    intended = np.array([-(2**63), 0, 2**63 - 1], np.int64)
    for size in (0, HEADER_SIZE, HEADER_SIZE + 1, 200, 70_000):
        packer = EnvelopePacker(2**64 - 1, 9, size)
        for count in (1, 3):  # and again, from the reused template
            packed = packer.pack(key_ids[:count], seqs[:count], intended[:count])
            expected = [
                encode(Envelope(2**64 - 1, 9, int(k), int(s), int(t)), size)
                for k, s, t in zip(key_ids[:count], seqs[:count], intended[:count], strict=True)
            ]
            assert packed == expected, size


def _ours(columns: EnvelopeColumns, run_id: int) -> list[Envelope | None]:
    """Each row of ``columns`` as the Envelope ``decode`` would give, None where foreign."""
    return [
        None if foreign else Envelope(run_id, int(producer), int(key), int(seq), int(intended))
        for producer, key, seq, intended, foreign in zip(
            columns.producer_id,
            columns.key_id,
            columns.seq,
            columns.intended_ns,
            columns.foreign,
            strict=True,
        )
    ]


def test_columns_decode_like_decode_and_mark_every_kind_of_foreign_payload() -> None:
    run_id = ENVELOPE.run_id
    payloads = [
        encode(ENVELOPE, 200),
        b"",  # empty
        encode(Envelope(run_id, 1, 2, 3, 4), 0)[:-1],  # one byte short of a header
        encode(Envelope(run_id, 0, 0, 0, 2**63 - 1), 0),  # header only, extreme values
        encode(Envelope(run_id + 1, 5, 6, 7, 8), 100),  # another run's
        b"BB\x02" + bytes(60),  # a future version
        b"XY" + encode(ENVELOPE, 100)[2:],  # wrong magic
        encode(Envelope(run_id, 9, 10, 11, -5), 36, b'{"body": 1}'),  # a body, no padding
        b"short",
    ]
    columns = decode_columns(payloads, run_id)

    expected = []
    for payload in payloads:
        decoded = decode(payload)
        expected.append(None if decoded is None or decoded[0].run_id != run_id else decoded[0])
    assert _ours(columns, run_id) == expected
    assert columns.foreign.tolist() == [e is None for e in expected]
    assert len(columns) == len(payloads)


def test_columns_have_the_history_dtypes_and_survive_many_payloads() -> None:
    run_id = 99
    start_ns = 1_700_000_000_000_000_000
    envelopes = [Envelope(run_id, i % 7, i % 64, i, start_ns + i) for i in range(5000)]
    payloads = [encode(envelope, 36 + i % 300) for i, envelope in enumerate(envelopes)]
    columns = decode_columns(payloads, run_id)
    assert _ours(columns, run_id) == envelopes
    assert columns.producer_id.dtype == columns.key_id.dtype == np.uint32
    assert columns.seq.dtype == np.uint64
    assert columns.intended_ns.dtype == np.int64
    assert all(
        array.flags.c_contiguous
        for array in (columns.producer_id, columns.key_id, columns.seq, columns.intended_ns)
    )


def test_no_payloads_give_empty_columns() -> None:
    columns = decode_columns([], 1)
    assert len(columns) == 0
    assert columns.seq.dtype == np.uint64
