import struct

import numpy as np
import pytest

from harness.history.envelope import HEADER_SIZE, Envelope, EnvelopePacker, decode, encode

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
