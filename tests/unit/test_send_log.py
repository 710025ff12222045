"""The columnar send log: rows by index, harvests into the shard, pending sends unknown at close."""

from pathlib import Path

import numpy as np
import pyarrow as pa  # type: ignore[import-untyped]

from harness.drivers.base import Outcome
from harness.history.recorder import Recorder
from harness.history.schema import SendOutcome
from harness.history.send_log import BLOCK_ROWS, SendLog
from harness.history.store import read_shards


def _invoke(log: SendLog, count: int, first_seq: int, invoke_ns: int) -> int:
    seqs = np.arange(first_seq, first_seq + count, dtype=np.uint64)
    return log.invoked(np.full(count, 7, np.uint32), seqs, (seqs * 10).astype(np.int64), invoke_ns)


def test_completed_sends_are_written_with_their_outcomes_and_pending_ones_as_unknown(
    tmp_path: Path,
) -> None:
    with Recorder(tmp_path, "producer-0") as recorder:
        log = recorder.send_log(producer_id=3)
        first = _invoke(log, 5, 0, invoke_ns=1000)
        assert first == 0
        log.ok(first + 0, partition=2, offset=40)
        log.failed(first + 1, Outcome.FAIL, "refused")
        log.failed(first + 2, Outcome.UNKNOWN, "timed out")
        harvest = log.harvest()
        assert harvest.completed == 3
        assert sorted(harvest.errors) == ["refused", "timed out"]
        assert log.in_flight == 2
        log.ok(first + 4)
    log.ok(first + 3)  # after close: already written as unknown, ignored
    sends = read_shards(tmp_path, "sends").sort_by("seq").to_pylist()
    assert [row["seq"] for row in sends] == [0, 1, 2, 3, 4]
    assert {row["producer_id"] for row in sends} == {3}
    assert [row["outcome"] for row in sends] == [
        SendOutcome.OK,
        SendOutcome.FAIL,
        SendOutcome.UNKNOWN,
        SendOutcome.UNKNOWN,
        SendOutcome.OK,
    ]
    assert sends[0]["partition"] == 2 and sends[0]["offset"] == 40
    assert sends[3]["complete_ns"] is None
    assert all(row["invoke_ns"] == 1000 for row in sends)
    assert [row["intended_ns"] for row in sends] == [0, 10, 20, 30, 40]


def test_batches_crossing_blocks_keep_every_row_and_completions_in_any_order(
    tmp_path: Path,
) -> None:
    total = BLOCK_ROWS * 2 + 100
    with Recorder(tmp_path, "producer-0") as recorder:
        log = recorder.send_log(producer_id=0)
        first = _invoke(log, BLOCK_ROWS - 10, 0, invoke_ns=1)
        second = _invoke(log, total - (BLOCK_ROWS - 10), BLOCK_ROWS - 10, invoke_ns=2)
        assert second == BLOCK_ROWS - 10
        order = np.random.default_rng(1).permutation(total)
        for step, index in enumerate(order.tolist()):
            log.ok(first + index, partition=0, offset=index)
            if step % 20_000 == 0:
                log.harvest()
        log.harvest()
        assert log.harvested_total == total
        assert log.in_flight == 0
    sends = read_shards(tmp_path, "sends")
    assert sends.num_rows == total
    table = sends.sort_by("seq")
    assert table["seq"].to_pylist() == list(range(total))
    assert table["offset"].to_pylist() == list(range(total))
    assert pa.compute.all(pa.compute.equal(table["outcome"], SendOutcome.OK)).as_py()
