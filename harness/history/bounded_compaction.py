"""Compaction of a large table in bounded memory: shards into one identity-sorted Parquet file
without holding the table.

``store.compact`` sorts a whole table in memory, about 80 bytes a row: 16 GB for a
100-million-message run. Above ``BOUNDED_ABOVE_BYTES`` of shards it calls this instead:

1. one pass reads the producer+key of every row and keeps one in ``SAMPLE_EVERY`` (and counts
   the rows), whose quantiles cut the producer+key space into buckets of about
   ``ROWS_PER_BUCKET`` rows (a pair is never split);
2. a second pass appends each batch's rows to its bucket's temporary file (Arrow IPC, lz4);
3. each bucket in turn is read, sorted and written to the Parquet file as its next row groups.

Arrow's sort is stable and rows reach their bucket in shard order, so the file holds exactly
the rows, in exactly the order, of the in-memory compaction.
"""

import logging
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]

from harness.history.shards import shard_paths

BOUNDED_ABOVE_BYTES = 64 * 1024 * 1024
"""Shards above this compact bucket by bucket. A row takes 6-40 bytes of zstd Arrow IPC, so
this is 2-10 M rows: the in-memory sort would take 0.3-1.5 GB (2 GB at 12.9 M messages, against
0.7 GB bucket by bucket, measured)."""
ROWS_PER_BUCKET = 4_000_000
SAMPLE_EVERY = 64
_BUCKET_OPTIONS = pa.ipc.IpcWriteOptions(compression="lz4")
_log = logging.getLogger(__name__)

U64 = npt.NDArray[np.uint64]


def shard_bytes(run_dir: Path, table: str) -> int:
    return sum(path.stat().st_size for path in shard_paths(run_dir, table))


def _batches(run_dir: Path, table: str) -> Iterator[pa.RecordBatch]:
    """Every complete batch of every shard, one at a time (``read_shard``'s tolerance of a
    torn tail, without its list)."""
    for path in shard_paths(run_dir, table):
        with pa.OSFile(str(path)) as source:
            try:
                reader = pa.ipc.open_stream(source)
                while True:
                    yield reader.read_next_batch()
            except StopIteration:
                pass
            except (pa.ArrowInvalid, OSError) as error:
                _log.warning("%s: truncated shard, keeping its complete batches (%s)", path, error)


def _pairs(batch: pa.RecordBatch) -> U64:
    producer = np.asarray(batch.column("producer_id").to_numpy(), dtype=np.uint64)
    key = np.asarray(batch.column("key_id").to_numpy(), dtype=np.uint64)
    packed: U64 = (producer << np.uint64(32)) | key
    return packed


def _boundaries(run_dir: Path, table: str) -> U64:
    """Producer+key values that start each bucket after the first."""
    samples: list[U64] = []
    rows = 0
    for batch in _batches(run_dir, table):
        pairs = _pairs(batch)
        samples.append(pairs[(SAMPLE_EVERY - rows % SAMPLE_EVERY) % SAMPLE_EVERY :: SAMPLE_EVERY])
        rows += batch.num_rows
    sample = np.sort(np.concatenate(samples)) if samples else np.zeros(0, dtype=np.uint64)
    buckets = max(1, -(-rows // ROWS_PER_BUCKET))
    if buckets == 1 or not sample.size:
        return np.zeros(0, dtype=np.uint64)
    cuts = sample[(np.arange(1, buckets) * sample.size) // buckets]
    found: U64 = np.unique(cuts)
    return found


def write_sorted(
    run_dir: Path,
    table: str,
    schema: pa.Schema,
    target: str,
    *,
    ordering: list[tuple[str, str]],
    parquet_options: dict[str, Any],
) -> None:
    """The table's shards into the Parquet file ``target``, sorted by ``ordering`` (which
    starts with producer_id, key_id), bucket by bucket."""
    boundaries = _boundaries(run_dir, table)
    with tempfile.TemporaryDirectory(prefix=f"brokerbench-compact-{table}-") as scratch:
        paths = [Path(scratch) / f"{b}.arrow" for b in range(boundaries.size + 1)]
        # Streams, not files: a stream may replace a dictionary (each shard batch has its own).
        sinks = [pa.OSFile(str(p), "wb") for p in paths]
        writers = [pa.ipc.new_stream(sink, schema, options=_BUCKET_OPTIONS) for sink in sinks]
        try:
            for batch in _batches(run_dir, table):
                bucket = np.searchsorted(boundaries, _pairs(batch), side="right")
                order = np.argsort(bucket, kind="stable")
                starts = np.searchsorted(bucket[order], np.arange(boundaries.size + 2))
                for b in np.flatnonzero(np.diff(starts)).tolist():
                    rows = pa.array(order[starts[b] : starts[b + 1]])
                    writers[b].write_batch(batch.take(rows))
        finally:
            for writer, sink in zip(writers, sinks, strict=True):
                writer.close()
                sink.close()
        with pq.ParquetWriter(target, schema, **parquet_options) as output:
            for path in paths:
                with pa.OSFile(str(path)) as source:
                    bucket_table = pa.ipc.open_stream(source).read_all()
                if bucket_table.num_rows:
                    output.write_table(bucket_table.sort_by(ordering))
                del bucket_table
                path.unlink()
