"""Nanoseconds per envelope ``encode``/``decode`` (pytest-benchmark reports the mean; the ns/op
figure is also printed and stored in ``extra_info``)."""

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from harness.history.envelope import Envelope, decode, encode

# Many calls per timed round, so that the timer's own cost does not dominate ~100 ns calls.
pytestmark = pytest.mark.benchmark(min_time=0.0002)

ENVELOPE = Envelope(0x0123456789ABCDEF, 3, 17, 12_345, 1_767_225_600_123_456_789)


def _report(benchmark: BenchmarkFixture, what: str) -> None:
    if benchmark.stats is None:  # --benchmark-disable: called once, nothing measured
        return
    ns = benchmark.stats.stats.mean * 1e9
    benchmark.extra_info["ns_per_op"] = round(ns, 1)
    print(f"\n{what}: {ns:.0f} ns/op")


@pytest.mark.parametrize("size", [36, 1024, 65_536])
def test_bench_encode(benchmark: BenchmarkFixture, size: int) -> None:
    payload = benchmark(encode, ENVELOPE, size)
    assert len(payload) == size
    _report(benchmark, f"encode {size} B")


def test_bench_encode_with_body(benchmark: BenchmarkFixture) -> None:
    payload = benchmark(encode, ENVELOPE, 1024, b'{"order": 42, "status": "paid"}')
    assert len(payload) == 1024
    _report(benchmark, "encode 1024 B with a body")


@pytest.mark.parametrize("size", [36, 1024])
def test_bench_decode(benchmark: BenchmarkFixture, size: int) -> None:
    payload = encode(ENVELOPE, size)
    decoded = benchmark(decode, payload)
    assert decoded is not None
    assert decoded[0] == ENVELOPE
    _report(benchmark, f"decode {size} B")


def test_bench_decode_foreign(benchmark: BenchmarkFixture) -> None:
    assert benchmark(decode, b'{"not": "ours"}' * 10) is None
    _report(benchmark, "decode foreign")
