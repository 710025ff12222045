"""Compaction bucket by bucket (harness/history/bounded_compaction.py) writes exactly what the
in-memory compaction writes: the same rows in the same order, the same schema and metadata."""

import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from harness.history import bounded_compaction
from harness.history.store import compact, parquet_path
from tests.unit.test_history import _record_run


def test_bucketed_compaction_writes_what_the_in_memory_one_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    whole, bucketed = tmp_path / "whole", tmp_path / "bucketed"
    whole.mkdir()
    _record_run(whole, producers=4, messages=300)
    shutil.copytree(whole, bucketed)
    compact(whole)
    monkeypatch.setattr(bounded_compaction, "BOUNDED_ABOVE_BYTES", 0)
    monkeypatch.setattr(bounded_compaction, "ROWS_PER_BUCKET", 100)  # about 12 buckets
    monkeypatch.setattr(bounded_compaction, "SAMPLE_EVERY", 3)
    written: list[int] = []
    boundaries = bounded_compaction._boundaries

    def counted(run_dir: Path, table: str):  # type: ignore[no-untyped-def]
        found = boundaries(run_dir, table)
        written.append(found.size)
        return found

    monkeypatch.setattr(bounded_compaction, "_boundaries", counted)
    compact(bucketed)
    assert min(written) >= 3  # several buckets for both tables
    for table in ("sends", "receives", "events"):
        expected = pq.read_table(parquet_path(whole, table))
        found = pq.read_table(parquet_path(bucketed, table))
        assert found.schema.equals(expected.schema, check_metadata=True)
        assert found.to_pylist() == expected.to_pylist()  # dictionaries may be laid out apart
        metadata = pq.ParquetFile(parquet_path(bucketed, table)).metadata.row_group(0)
        assert metadata.sorting_columns == (
            pq.ParquetFile(parquet_path(whole, table)).metadata.row_group(0).sorting_columns
        )
    assert not list((bucketed / "history").glob("shards/*"))
