"""A run's history on disk: reading the shards, compacting them into Parquet, loading it.

When a run ends (every recorder closed), ``compact`` merges each table's shards into
``RUN_DIR/history/<table>.parquet``, sorted by message identity, and removes the shards;
``load`` reads whichever form is there, so checkers and ``analyze`` need not care, and refuses
a history it cannot trust (``harness.history.trusted``).
"""

import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]

from harness.atomic import create_temporary
from harness.history import bounded_compaction
from harness.history.schema import SCHEMAS
from harness.history.shards import read_shard, shard_paths, shards_dir
from harness.history.trusted import DAMAGED_FIX, UntrustedTableError, read_parquet

SORT_KEYS: dict[str, list[str]] = {
    "sends": ["producer_id", "key_id", "seq"],
    "receives": ["producer_id", "key_id", "seq", "receive_ns"],
    "events": ["time_ns"],
}

# Measured on a 1M-message Kafka-like history (tests/benchmarks/test_history_size.py, 25.4
# bytes per message for sends + receives). Sorted by identity, ids, partitions, flags and scopes
# are long runs that dictionary + RLE reduce to nearly nothing. Timestamps, offsets and seqs
# are left PLAIN for zstd: DELTA_BINARY_PACKED came out 5% larger (deltas of ~160 ms per
# (producer, key) are near-random bits either way) and BYTE_STREAM_SPLIT needs newer readers.
# zstd level 9 instead of the default 3 saves 3% for ~4x the (one-off) write time.
_PLAIN_COLUMNS = frozenset(
    {"seq", "intended_ns", "invoke_ns", "complete_ns", "receive_ns", "offset", "time_ns"}
)
_COMPRESSION_LEVEL = 9
BOUNDED_TABLES = frozenset({"sends", "receives"})
"""Tables that may be too large to sort in memory (``bounded_compaction``); events never are."""


@dataclass(frozen=True)
class History:
    """The three tables of one run (``docs/history.md``)."""

    sends: pa.Table
    receives: pa.Table
    events: pa.Table


def history_dir(run_dir: Path) -> Path:
    return run_dir / "history"


def parquet_path(run_dir: Path, table: str) -> Path:
    return history_dir(run_dir) / f"{table}.parquet"


def read_shards(run_dir: Path, table: str) -> pa.Table:
    """Every complete batch of every shard of ``table`` (unsorted); a shard torn by a crash
    contributes the batches it completed."""
    batches = [batch for path in shard_paths(run_dir, table) for batch in read_shard(path)]
    return pa.Table.from_batches(batches, schema=SCHEMAS[table])


def compact(run_dir: Path) -> None:
    """Merge each table's shards into its Parquet file, then remove the shards.

    Run it once every recorder of the run is closed. Each Parquet file appears atomically, and
    a table whose Parquet file already exists is not rewritten: compacting again after an
    interruption just finishes removing the shards.
    """
    for table in SCHEMAS:
        target = parquet_path(run_dir, table)
        if (
            not target.exists()
            and table in BOUNDED_TABLES
            and (
                bounded_compaction.shard_bytes(run_dir, table)
                > bounded_compaction.BOUNDED_ABOVE_BYTES
            )
        ):
            _write_parquet_in_buckets(run_dir, table, target)
        elif not target.exists():
            _write_parquet(read_shards(run_dir, table), target, SORT_KEYS[table])
    for table in SCHEMAS:
        for path in shard_paths(run_dir, table):
            path.unlink()
    with contextlib.suppress(OSError):  # absent, or holding something that is not a shard
        shards_dir(run_dir).rmdir()


def load(run_dir: Path) -> History:
    """The run's history: each table from its Parquet file where compacted, else from its
    shards (a run not compacted yet, or interrupted).

    Only a history that can be trusted loads (``harness.history.trusted``): a table with
    neither a Parquet file nor a shard, an unreadable or truncated Parquet file, another
    history version, a missing column or a null where the schema forbids one is a one-line
    ``UserError`` naming the file. A shard torn by a crash still gives its complete batches.
    """
    if not history_dir(run_dir).is_dir():
        raise UntrustedTableError(
            f"{history_dir(run_dir)}: no history here (give a run folder written by "
            f"`brokerbench run`): {DAMAGED_FIX}"
        )
    tables = {}
    for table, schema in SCHEMAS.items():
        path = parquet_path(run_dir, table)
        if path.exists() or not shard_paths(run_dir, table):
            tables[table] = read_parquet(path, schema, versioned=True)
            continue
        try:
            tables[table] = read_shards(run_dir, table)
        except (pa.ArrowException, ValueError) as exc:
            raise UntrustedTableError(
                f"{shards_dir(run_dir)}: the {table} shards do not hold the {table} schema "
                f"({str(exc).splitlines()[0]}): {DAMAGED_FIX}"
            ) from exc
    return History(**tables)


def _parquet_options(schema: pa.Schema, ordering: list[tuple[str, str]]) -> dict[str, Any]:
    return {
        "compression": "zstd",
        "compression_level": _COMPRESSION_LEVEL,
        "use_dictionary": [name for name in schema.names if name not in _PLAIN_COLUMNS],
        "sorting_columns": pq.SortingColumn.from_ordering(schema, ordering),
    }


def _write_parquet(table: pa.Table, target: Path, sort_keys: list[str]) -> None:
    """Write ``table`` sorted by ``sort_keys`` to a temporary file next to ``target``, then
    rename it into place."""
    ordering = [(column, "ascending") for column in sort_keys]
    table = table.sort_by(ordering)
    _write_atomically(
        target,
        lambda temporary: pq.write_table(
            table, temporary, **_parquet_options(table.schema, ordering)
        ),
    )


def _write_parquet_in_buckets(run_dir: Path, table: str, target: Path) -> None:
    """``_write_parquet`` of a table too large to sort in memory (``bounded_compaction``)."""
    schema = SCHEMAS[table]
    ordering = [(column, "ascending") for column in SORT_KEYS[table]]
    _write_atomically(
        target,
        lambda temporary: bounded_compaction.write_sorted(
            run_dir,
            table,
            schema,
            temporary,
            ordering=ordering,
            parquet_options=_parquet_options(schema, ordering),
        ),
    )


def _write_atomically(target: Path, write: Callable[[str], None]) -> None:
    """``write`` a temporary file next to ``target``, then rename it into place."""
    fd, temporary = create_temporary(target)
    os.close(fd)
    try:
        write(str(temporary))
        with Path(temporary).open("rb") as written:
            os.fsync(written.fileno())
        Path(temporary).replace(target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
