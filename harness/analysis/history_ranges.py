"""Identity ranges of a run folder's compacted history, read from its Parquet files."""

from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa  # type: ignore[import-untyped, unused-ignore]
import pyarrow.parquet as pq  # type: ignore[import-untyped, unused-ignore]

from harness.analysis.ranges import IdentityRange, identity_ranges, parquet_batches
from harness.history.schema import RECEIVES, SENDS
from harness.history.shards import shard_paths
from harness.history.store import parquet_path

MESSAGES_PER_RANGE = 500_000
"""Sends per identity range: about 250 MB of memory per range being checked."""


def is_compacted(run_dir: Path) -> bool:
    """Whether the run's sends and receives are compacted (and so sorted by identity)."""
    return all(
        parquet_path(run_dir, table).is_file() and not shard_paths(run_dir, table)
        for table in ("sends", "receives")
    )


def message_count(run_dir: Path) -> int | None:
    """The compacted history's sends, from the Parquet footer (nothing else is read); None if
    the footer is unreadable (loading the history then says what is wrong)."""
    try:
        return int(pq.ParquetFile(parquet_path(run_dir, "sends")).metadata.num_rows)
    except (pa.ArrowException, OSError, ValueError, EOFError):
        return None


def history_ranges(
    run_dir: Path, messages_per_range: int = MESSAGES_PER_RANGE
) -> Iterator[IdentityRange]:
    """A pass over the compacted history's identity ranges (trusted, batch by batch)."""
    return identity_ranges(
        parquet_batches(parquet_path(run_dir, "sends"), SENDS),
        parquet_batches(parquet_path(run_dir, "receives"), RECEIVES),
        (SENDS, RECEIVES),
        messages_per_range,
    )
