import random
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]
import pytest

from harness.errors import UserError
from harness.history.envelope import Envelope, decode, decode_columns, encode
from harness.history.recorder import Recorder, partition_scopes
from harness.history.schema import (
    EVENTS,
    RECEIVES,
    SENDS,
    Disposition,
    EventKind,
    SendOutcome,
)
from harness.history.shards import ShardWriter, read_shard, shard_path, shard_paths
from harness.history.store import SORT_KEYS, compact, load, parquet_path, read_shards

Row = dict[str, Any]
RUN_ID = 0x5EED


def _rows(table: pa.Table) -> list[Row]:
    """The rows in a canonical order, to compare tables regardless of row order."""
    return sorted(table.to_pylist(), key=lambda row: repr(sorted(row.items())))


def _record_producer(run_dir: Path, producer_id: int, messages: int) -> tuple[list[Row], list[Row]]:
    """Sends of one producer process, completed from a second ("delivery callback") thread,
    and the receives of a consumer process; returns the rows it expects in the history."""
    rng = random.Random(producer_id)
    sends: list[Row] = []
    receives: list[Row] = []
    recorder = Recorder(run_dir, f"producer-{producer_id}", batch_rows=50)
    consumer = Recorder(run_dir, f"consumer-{producer_id}", batch_rows=64)
    completions: list[tuple[int, Row]] = []
    lock = threading.Lock()
    done = threading.Event()

    def complete() -> None:
        while not done.is_set() or completions:
            with lock:
                batch = completions[:]
                completions.clear()
            for token, row in batch:
                recorder.send_completed(
                    token, SendOutcome(row["outcome"]), row["complete_ns"], row["partition"], 5
                )

    callback_thread = threading.Thread(target=complete)
    callback_thread.start()
    seqs: dict[int, int] = {}
    for index in range(messages):
        key_id = rng.randrange(20)
        seq = seqs.get(key_id, 0)
        seqs[key_id] = seq + 1
        intended = 1_000 * index
        token = recorder.send_invoked(producer_id, key_id, seq, intended, intended + 7)
        row = {
            "producer_id": producer_id,
            "key_id": key_id,
            "seq": seq,
            "intended_ns": intended,
            "invoke_ns": intended + 7,
            "complete_ns": intended + 100,
            "outcome": rng.choice(list(SendOutcome)),
            "partition": key_id % 3,
            "offset": 5,
        }
        sends.append(row)
        with lock:
            completions.append((token, row))
        receive: Row = {
            "consumer_id": producer_id,
            "producer_id": producer_id,
            "key_id": key_id,
            "seq": seq,
            "intended_ns": intended,
            "receive_ns": intended + 500,
            "partition": -1,
            "offset": -1,
            "message_id": f"m-{index}" if index % 2 else None,
            "delivery_attempt": 1 + index % 3,
            "disposition": rng.choice(list(Disposition)),
            "scope": f"k-{key_id}" if index % 5 else None,
        }
        consumer.received(**receive)
        receives.append(receive)
    done.set()
    callback_thread.join()
    recorder.close()
    consumer.close()
    return sends, receives


def _record_run(run_dir: Path, producers: int = 4, messages: int = 300) -> tuple[list[Row], ...]:
    results: dict[int, tuple[list[Row], list[Row]]] = {}

    def produce(producer_id: int) -> None:
        results[producer_id] = _record_producer(run_dir, producer_id, messages)

    threads = [threading.Thread(target=produce, args=(index,)) for index in range(producers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    with Recorder(run_dir, "nemesis") as nemesis:
        nemesis.event(EventKind.FAULT_START, "partition", "kafka", {"drop": 1.0}, time_ns=20)
        nemesis.event(EventKind.FAULT_END, "partition", "kafka", time_ns=30)
        nemesis.event(EventKind.WARMUP_END, "warmup", time_ns=10)
    sends = [row for sent, _ in results.values() for row in sent]
    receives = [row for _, received in results.values() for row in received]
    return sends, receives


def test_recorders_in_threads_round_trip_through_the_shards(tmp_path: Path) -> None:
    sends, receives = _record_run(tmp_path)

    history = load(tmp_path)

    assert history.sends.schema.equals(SENDS)
    assert history.receives.schema.equals(RECEIVES)
    assert history.events.schema.equals(EVENTS)
    assert _rows(history.sends) == _rows(pa.Table.from_pylist(sends, schema=SENDS))
    assert _rows(history.receives) == _rows(pa.Table.from_pylist(receives, schema=RECEIVES))
    assert history.events.num_rows == 3
    assert history.events.column("detail").to_pylist().count('{"drop": 1.0}') == 1
    assert len(shard_paths(tmp_path, "sends")) == 4 + 4 + 1  # producers, consumers, nemesis


def test_compaction_sorts_keeps_content_and_removes_shards(tmp_path: Path) -> None:
    _record_run(tmp_path)
    before = load(tmp_path)

    compact(tmp_path)

    assert not (tmp_path / "history" / "shards").exists()
    after = load(tmp_path)
    for table in ("sends", "receives", "events"):
        assert parquet_path(tmp_path, table).exists()
        compacted = getattr(after, table)
        assert compacted.schema.equals(getattr(before, table).schema)
        assert _rows(compacted) == _rows(getattr(before, table))
        keys = list(
            zip(*(compacted.column(key).to_pylist() for key in SORT_KEYS[table]), strict=True)
        )
        assert keys == sorted(keys)
    assert after.events.column("kind").to_pylist() == ["warmup-end", "fault-start", "fault-end"]
    metadata = pq.ParquetFile(parquet_path(tmp_path, "sends")).metadata
    assert metadata.row_group(0).column(0).compression == "ZSTD"


def test_compacting_again_keeps_the_compacted_history(tmp_path: Path) -> None:
    sends, _ = _record_run(tmp_path, producers=1, messages=10)
    compact(tmp_path)

    compact(tmp_path)

    assert load(tmp_path).sends.num_rows == len(sends)


def test_pending_sends_are_written_as_unknown_on_close(tmp_path: Path) -> None:
    recorder = Recorder(tmp_path, "producer-0")
    done = recorder.send_invoked(1, 2, 0, 100, 110)
    pending = recorder.send_invoked(1, 2, 1, 200, 210)
    recorder.send_completed(done, SendOutcome.OK, 150, partition=3, offset=9)

    recorder.close()
    recorder.send_completed(pending, SendOutcome.OK, 999)  # too late: ignored

    assert _rows(load(tmp_path).sends) == _rows(
        pa.Table.from_pylist(
            [
                {"producer_id": 1, "key_id": 2, "seq": 0, "intended_ns": 100, "invoke_ns": 110,
                 "complete_ns": 150, "outcome": 0, "partition": 3, "offset": 9},
                {"producer_id": 1, "key_id": 2, "seq": 1, "intended_ns": 200, "invoke_ns": 210,
                 "complete_ns": None, "outcome": 2, "partition": -1, "offset": -1},
            ],
            schema=SENDS,
        )
    )  # fmt: skip


def test_completing_a_send_twice_is_a_bug(tmp_path: Path) -> None:
    with Recorder(tmp_path, "p") as recorder:
        token = recorder.send_invoked(1, 2, 0, 100, 110)
        recorder.send_completed(token, SendOutcome.OK, 150)
        with pytest.raises(KeyError):
            recorder.send_completed(token, SendOutcome.OK, 160)


def test_recording_after_close_fails(tmp_path: Path) -> None:
    recorder = Recorder(tmp_path, "p")
    recorder.close()
    recorder.close()
    with pytest.raises(RuntimeError):
        recorder.send_invoked(1, 2, 0, 100, 110)
    with pytest.raises(RuntimeError):
        recorder.received(
            consumer_id=1,
            producer_id=1,
            key_id=2,
            seq=0,
            intended_ns=100,
            receive_ns=120,
            disposition=Disposition.ACKED,
        )


def test_two_processes_with_one_label_are_refused(tmp_path: Path) -> None:
    with Recorder(tmp_path, "consumer-1"), pytest.raises(FileExistsError):
        Recorder(tmp_path, "consumer-1")


@pytest.mark.parametrize("label", ["", "a/b", "../x", "-x"])
def test_unsafe_labels_are_refused(tmp_path: Path, label: str) -> None:
    with pytest.raises(ValueError, match="label"):
        Recorder(tmp_path, label)


def test_events_are_flushed_at_once(tmp_path: Path) -> None:
    with Recorder(tmp_path, "nemesis") as nemesis:
        nemesis.event(EventKind.DRAIN_START, "drain")
        assert load(tmp_path).events.column("kind").to_pylist() == ["drain-start"]


def _write_shard(path: Path, batches: int, rows_per_batch: int) -> list[int]:
    """Write a sends shard; returns the file size after each batch (where each batch ends)."""
    writer = ShardWriter(path, SENDS, batch_rows=rows_per_batch)
    ends = []
    for row in range(batches * rows_per_batch):
        writer.append((1, 2, row, row, row, None if row % 7 else row, 2, -1, row))
        if (row + 1) % rows_per_batch == 0:
            ends.append(path.stat().st_size)
    writer.close()
    return ends


def test_shard_writer_writes_a_batch_every_batch_rows(tmp_path: Path) -> None:
    path = tmp_path / "sends-x.arrow"
    writer = ShardWriter(path, SENDS, batch_rows=10)
    for row in range(25):
        writer.append((1, 2, row, row, row, row, 0, -1, -1))
    assert [batch.num_rows for batch in read_shard(path)] == [10, 10]
    writer.flush()
    writer.flush()
    assert [batch.num_rows for batch in read_shard(path)] == [10, 10, 5]
    writer.close()


def test_a_rejected_row_leaves_the_buffers_aligned(tmp_path: Path) -> None:
    path = tmp_path / "sends-x.arrow"
    writer = ShardWriter(path, SENDS)
    writer.append((1, 2, 0, 0, 0, 0, 0, -1, -1))
    with pytest.raises(OverflowError):
        writer.append((1, 2, 1, 0, 0, 0, -1, -1, -1))  # outcome is a uint8
    writer.append((1, 2, 2, 0, 0, 0, 0, -1, -1))
    writer.close()
    assert pa.Table.from_batches(read_shard(path)).column("seq").to_pylist() == [0, 2]


def test_a_shard_truncated_mid_batch_keeps_its_complete_batches(tmp_path: Path) -> None:
    path = shard_path(tmp_path, "sends", "crashed")
    batch_ends = _write_shard(path, batches=3, rows_per_batch=100)
    # Cut inside the third batch: the crash happened while it was being written.
    path.write_bytes(path.read_bytes()[: (batch_ends[1] + batch_ends[2]) // 2])
    _write_shard(shard_path(tmp_path, "sends", "healthy"), batches=1, rows_per_batch=50)

    sends = read_shards(tmp_path, "sends")

    assert sends.num_rows == 200 + 50
    assert sorted(sends.column("seq").to_pylist()) == sorted([*range(200), *range(50)])


@pytest.mark.parametrize("keep", [0, 10])
def test_a_shard_cut_inside_its_schema_has_no_rows(tmp_path: Path, keep: int) -> None:
    path = shard_path(tmp_path, "receives", "crashed")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"\xff\xff\xff\xff\x00\x01\x00\x00\x10\x00"[:keep])
    assert read_shards(tmp_path, "receives").num_rows == 0


def test_load_without_any_history_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"history: no history here"):
        load(tmp_path)
    (tmp_path / "history").mkdir()
    with pytest.raises(UserError, match=r"sends\.parquet: missing"):
        load(tmp_path)


def test_a_table_with_shards_but_no_parquet_file_loads_from_its_shards(tmp_path: Path) -> None:
    """A compaction interrupted after its first table: the rest still come from shards."""
    _record_run(tmp_path, producers=1, messages=10)
    expected = load(tmp_path)
    sends = read_shards(tmp_path, "sends")
    pq.write_table(sends, parquet_path(tmp_path, "sends"))
    history = load(tmp_path)
    assert _rows(history.sends) == _rows(expected.sends)
    assert _rows(history.receives) == _rows(expected.receives)


def test_a_history_written_before_the_subscriber_column_reads_it_as_null(
    tmp_path: Path,
) -> None:
    """``subscriber`` was added to version 1 later: an older receives.parquet without it still
    loads (its deliveries came through the destination's only group), while any other missing
    column is still refused."""
    _record_run(tmp_path, producers=1, messages=10)
    compact(tmp_path)
    path = parquet_path(tmp_path, "receives")
    written = pq.read_table(path)
    older = written.drop_columns(["subscriber"]).replace_schema_metadata(written.schema.metadata)
    pq.write_table(older, path)
    history = load(tmp_path)
    assert history.receives.num_rows == written.num_rows
    assert history.receives.column("subscriber").null_count == written.num_rows
    pq.write_table(older.drop_columns(["scope"]), path)
    with pytest.raises(UserError, match="column 'scope' is missing"):
        load(tmp_path)


def test_schema_matches_the_spec() -> None:
    expected = {
        "sends": "producer_id:uint32 key_id:uint32 seq:uint64 intended_ns:int64 invoke_ns:int64 "
        "complete_ns:int64 outcome:uint8 partition:int32 offset:int64",
        "receives": "consumer_id:uint32 producer_id:uint32 key_id:uint32 seq:uint64 "
        "intended_ns:int64 receive_ns:int64 partition:int32 offset:int64 "
        "message_id:dictionary<values=string, indices=int32, ordered=0> delivery_attempt:int16 "
        "disposition:uint8 scope:dictionary<values=string, indices=int32, ordered=0> "
        "subscriber:dictionary<values=string, indices=int32, ordered=0>",
        "events": "time_ns:int64 kind:string name:string target:string detail:string",
    }
    for schema, name in ((SENDS, "sends"), (RECEIVES, "receives"), (EVENTS, "events")):
        assert " ".join(f"{field.name}:{field.type}" for field in schema) == expected[name]
    nullable = {f.name for schema in (SENDS, RECEIVES, EVENTS) for f in schema if f.nullable}
    assert nullable == {"complete_ns", "message_id", "scope", "subscriber", "target", "detail"}
    assert [int(value) for value in SendOutcome] == [0, 1, 2]
    assert [int(value) for value in Disposition] == [0, 1, 2]
    assert [str(kind) for kind in EventKind] == [
        "run-start",
        "fault-start",
        "fault-end",
        "warmup-end",
        "drain-start",
        "drain-end",
        "not-sent",
        "ack-failed",
        "subscribed",
        "schema-written",
        "schema-read",
        "undecodable",
        "dead-lettered",
        "schema-rolled",
        "schema-refused",
    ]


def _deliveries(run_id: int, count: int, seed: int) -> list[tuple[bytes, int, int, str, int]]:
    """(payload, partition, offset, key, delivery attempt) of one poll, some payloads foreign."""
    rng = random.Random(seed)
    deliveries = []
    for index in range(count):
        key_id = rng.randrange(16)
        owner = run_id if index % 7 else run_id + 1  # every 7th from another run
        payload = encode(Envelope(owner, seed, key_id, index, 1_000 * index), 64)
        if index % 11 == 5:
            payload = payload[:20]  # too short for a header
        deliveries.append((payload, key_id % 5, 100 + index, f"k-{key_id}", 1 + index % 3))
    return deliveries


def _record_per_message(
    recorder: Recorder, deliveries: list[tuple[bytes, int, int, str, int]], now: int, broker: str
) -> None:
    """What the consumer process recorded per message before the batched path."""
    for position, (payload, partition, offset, key, attempt) in enumerate(deliveries):
        decoded = decode(payload)
        if decoded is None or decoded[0].run_id != RUN_ID:
            continue
        envelope = decoded[0]
        kafka = broker == "kafka"
        recorder.received(
            consumer_id=3,
            producer_id=envelope.producer_id,
            key_id=envelope.key_id,
            seq=envelope.seq,
            intended_ns=envelope.intended_ns,
            receive_ns=now + position,
            partition=partition if kafka else -1,
            offset=offset if kafka else -1,
            message_id=None if kafka else f"id-{offset}",
            delivery_attempt=attempt if broker != "pubsub" else 0,
            disposition=Disposition.ACKED,
            scope=f"p{partition}" if kafka else key if broker == "sqs" else None,
        )


def _record_batch(
    recorder: Recorder, deliveries: list[tuple[bytes, int, int, str, int]], now: int, broker: str
) -> int:
    payloads, partitions, offsets, keys, attempts = (list(c) for c in zip(*deliveries, strict=True))
    kafka = broker == "kafka"
    return recorder.received_batch(
        consumer_id=3,
        envelopes=decode_columns(payloads, RUN_ID),
        receive_ns=np.arange(now, now + len(payloads), dtype=np.int64),
        disposition=Disposition.ACKED,
        partitions=partitions if kafka else None,
        offsets=offsets if kafka else None,
        message_ids=None if kafka else [f"id-{offset}" for offset in offsets],
        delivery_attempts=attempts if broker != "pubsub" else None,
        scopes=partition_scopes(partitions) if kafka else keys if broker == "sqs" else None,
    )


@pytest.mark.parametrize("broker", ["kafka", "sqs", "pubsub"])
def test_a_batch_of_receives_writes_the_rows_received_would(tmp_path: Path, broker: str) -> None:
    polls = [_deliveries(RUN_ID, count, seed) for seed, count in enumerate([1, 100, 37, 250])]
    shards = []
    for path_name, record in (("rows", _record_per_message), ("columns", _record_batch)):
        # A small batch_rows: appended batches are cut across the shard's record batches.
        with Recorder(tmp_path / path_name, "consumer-3", batch_rows=64) as recorder:
            for number, deliveries in enumerate(polls):
                record(recorder, deliveries, 1_000_000 * number, broker)
        shards.append(read_shards(tmp_path / path_name, "receives"))
    per_message, batched = shards

    assert 0 < batched.num_rows < sum(len(poll) for poll in polls)  # foreign ones left out
    assert batched.schema.equals(RECEIVES)
    assert batched.to_pylist() == per_message.to_pylist()


def test_a_batch_returns_how_many_rows_it_recorded(tmp_path: Path) -> None:
    deliveries = _deliveries(RUN_ID, 50, 0)
    decoded = [decode(payload) for payload, *_ in deliveries]
    ours = sum(1 for d in decoded if d is not None and d[0].run_id == RUN_ID)
    with Recorder(tmp_path, "consumer-3") as recorder:
        assert _record_batch(recorder, deliveries, 0, "kafka") == ours
    assert read_shards(tmp_path, "receives").num_rows == ours


def test_batches_and_single_rows_keep_the_order_they_were_recorded_in(tmp_path: Path) -> None:
    with Recorder(tmp_path, "consumer-3") as recorder:
        _record_per_message(recorder, _deliveries(RUN_ID, 10, 1), 0, "kafka")
        _record_batch(recorder, _deliveries(RUN_ID, 10, 2), 100, "kafka")
        _record_per_message(recorder, _deliveries(RUN_ID, 10, 3), 200, "kafka")
    receive_ns = read_shards(tmp_path, "receives").column("receive_ns").to_pylist()
    assert receive_ns == sorted(receive_ns)
    assert {ns // 100 for ns in receive_ns} == {0, 1, 2}


def test_partition_scopes_name_each_partition_without_a_string_per_row() -> None:
    scopes = partition_scopes([0, 5, 5, 2, 1200, 0])
    assert scopes.type == RECEIVES.field("scope").type
    assert scopes.to_pylist() == ["p0", "p5", "p5", "p2", "p1200", "p0"]
    assert partition_scopes(np.array([3, 1], dtype=np.int32)).to_pylist() == ["p3", "p1"]
    assert partition_scopes([]).to_pylist() == []
    with pytest.raises(ValueError, match="partition -1"):
        partition_scopes([0, -1])
