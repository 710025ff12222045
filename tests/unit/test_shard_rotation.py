"""A process's shard of a table rotates into part files: each part a complete stream, the last
one of a killed process readable up to its last complete batch, and every reader (``shard_paths``,
``read_shards``, compaction in memory and in buckets, ``load``) sees every part."""

from pathlib import Path

import pyarrow as pa  # type: ignore[import-untyped]
import pytest

from harness.errors import UserError
from harness.history import bounded_compaction
from harness.history.recorder import Recorder
from harness.history.schema import SENDS, SendOutcome
from harness.history.shards import (
    PART_BYTES,
    PART_BYTES_ENV,
    ShardWriter,
    configured_part_bytes,
    process_shard_paths,
    read_shard,
    shard_path,
    shard_paths,
)
from harness.history.store import compact, load, read_shards


def _send_row(seq: int) -> tuple[int, ...]:
    return (1, 2, seq, seq, seq, seq, int(SendOutcome.OK), 0, seq)


def _write(writer: ShardWriter, rows: int) -> None:
    for seq in range(rows):
        writer.append(_send_row(seq))


def test_a_part_that_reaches_its_size_is_closed_and_the_next_batch_begins_another(
    tmp_path: Path,
) -> None:
    writer = ShardWriter.for_process(
        tmp_path, "sends", "producer-0", SENDS, batch_rows=10, part_bytes=1
    )
    _write(writer, 35)
    writer.close()

    parts = process_shard_paths(tmp_path, "sends", "producer-0")
    assert (
        parts == writer.paths == [shard_path(tmp_path, "sends", "producer-0", n) for n in range(4)]
    )
    assert [[b.num_rows for b in read_shard(part)] for part in parts] == [[10], [10], [10], [5]]
    assert read_shards(tmp_path, "sends").column("seq").to_pylist() == list(range(35))


def test_a_shard_below_its_part_size_stays_one_file(tmp_path: Path) -> None:
    writer = ShardWriter.for_process(tmp_path, "sends", "producer-0", SENDS, batch_rows=10)
    _write(writer, 35)
    writer.close()
    assert shard_paths(tmp_path, "sends") == [shard_path(tmp_path, "sends", "producer-0")]


def test_rotate_ends_the_part_now_and_never_leaves_an_empty_one(tmp_path: Path) -> None:
    writer = ShardWriter.for_process(tmp_path, "sends", "consumer-1", SENDS, batch_rows=100)
    _write(writer, 5)
    writer.rotate()
    writer.rotate()  # nothing written since: no new part
    assert len(writer.paths) == 1
    assert [b.num_rows for b in read_shard(writer.paths[0])] == [5]  # complete, stream ended
    _write(writer, 3)
    writer.close()
    assert [[b.num_rows for b in read_shard(p)] for p in writer.paths] == [[5], [3]]


def test_a_killed_process_keeps_its_earlier_parts_and_the_last_ones_complete_batches(
    tmp_path: Path,
) -> None:
    writer = ShardWriter.for_process(
        tmp_path, "sends", "producer-0", SENDS, batch_rows=10, part_bytes=3_000
    )
    ends: list[tuple[int, int]] = []  # (part, size) after each batch
    for seq in range(200):
        writer.append(_send_row(seq))
        if (seq + 1) % 10 == 0:
            ends.append((len(writer.paths) - 1, writer.path.stat().st_size))
    last = writer.path
    # No close: the process was killed while its last part was open; then its tail was torn
    # (killed in the middle of writing a batch).
    last_part = len(writer.paths) - 1
    last_ends = [size for part, size in ends if part == last_part]
    assert len(writer.paths) >= 3 and len(last_ends) >= 2, (writer.paths, ends)
    last.write_bytes(last.read_bytes()[: (last_ends[-2] + last_ends[-1]) // 2])

    sends = read_shards(tmp_path, "sends")

    assert sends.column("seq").to_pylist() == list(range(190))  # one batch lost, no more


def test_parts_sort_by_process_then_part_whatever_the_labels(tmp_path: Path) -> None:
    """``+`` sorts before every label character: a plain sort keeps each process's parts
    together and in order, also where one label is another's prefix."""
    names = ["producer-1", "producer-10", "producer-1.x", "producer-1-b", "producer-1_c"]
    expected = []
    for label in names:
        writer = ShardWriter.for_process(
            tmp_path, "sends", label, SENDS, batch_rows=1, part_bytes=1
        )
        _write(writer, 12)  # parts 0..11: part 10 sorts after part 9
        writer.close()
        expected.append(writer.paths)
    found = shard_paths(tmp_path, "sends")
    by_label = {tuple(paths): paths for paths in expected}
    groups = [found[i : i + 12] for i in range(0, len(found), 12)]
    assert len(found) == 12 * len(names)
    assert all(tuple(group) in by_label for group in groups), found
    assert process_shard_paths(tmp_path, "sends", "producer-1") == expected[0]


def test_a_shard_written_before_parts_is_still_read(tmp_path: Path) -> None:
    old = tmp_path / "history" / "shards" / "sends-producer-0.arrow"
    writer = ShardWriter(old, SENDS, batch_rows=10)
    _write(writer, 15)
    writer.close()
    assert shard_paths(tmp_path, "sends") == [old]
    assert process_shard_paths(tmp_path, "sends", "producer-0") == [old]
    assert read_shards(tmp_path, "sends").num_rows == 15


@pytest.mark.parametrize("bounded", [False, True])
def test_compaction_reads_every_part_and_removes_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bounded: bool
) -> None:
    monkeypatch.setenv(PART_BYTES_ENV, "2000")
    if bounded:  # the bucketed compaction of large tables, forced
        monkeypatch.setattr(bounded_compaction, "BOUNDED_ABOVE_BYTES", 0)
    for producer in range(2):
        with Recorder(tmp_path, f"producer-{producer}", batch_rows=20) as recorder:
            for seq in range(300):
                token = recorder.send_invoked(producer, seq % 7, seq, seq, seq)
                recorder.send_completed(token, SendOutcome.OK, seq + 1, 0, seq)
    assert len(process_shard_paths(tmp_path, "sends", "producer-0")) > 2

    compact(tmp_path)

    assert not shard_paths(tmp_path, "sends")
    sends = load(tmp_path).sends
    assert sends.num_rows == 600
    assert sorted(zip(*sends.select(["producer_id", "seq"]).to_pydict().values(), strict=True)) == [
        (p, s) for p in range(2) for s in range(300)
    ]


def test_the_part_size_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PART_BYTES_ENV, raising=False)
    assert configured_part_bytes() == PART_BYTES
    monkeypatch.setenv(PART_BYTES_ENV, "4096")
    assert configured_part_bytes() == 4096
    for bad in ("0", "-1", "1e6", "lots"):
        monkeypatch.setenv(PART_BYTES_ENV, bad)
        with pytest.raises(UserError, match=rf"{PART_BYTES_ENV}=.*whole number of bytes"):
            configured_part_bytes()


def test_a_part_path_must_be_fresh(tmp_path: Path) -> None:
    """Two processes with one label must not overwrite each other's parts."""
    shard_path(tmp_path, "sends", "p", 1).parent.mkdir(parents=True)
    shard_path(tmp_path, "sends", "p", 1).write_bytes(b"")
    writer = ShardWriter.for_process(tmp_path, "sends", "p", SENDS, batch_rows=1, part_bytes=1)
    writer.append(_send_row(0))  # part 0, now full
    with pytest.raises(FileExistsError):
        writer.append(_send_row(1))
    assert pa.Table.from_batches(read_shard(writer.paths[0])).num_rows == 1
