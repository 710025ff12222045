"""Loading refuses what it cannot trust (issue 12, item 2): a damaged or incomplete history is
a one-line error naming the file and the fix, exit 2, never a re-check that invents (or hides)
anomalies; ``analyze`` never replaces result.json unless told to."""

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa  # type: ignore[import-untyped, unused-ignore]
import pyarrow.parquet as pq  # type: ignore[import-untyped, unused-ignore]
import pytest

from harness.history.schema import SCHEMAS, VERSION_KEY
from harness.history.store import load, parquet_path
from harness.history.trusted import UntrustedTableError
from harness.run.result_model import ANALYSIS_FILE, RESULT_FILE
from tests.unit.stored_runs import analyzable_run, brokerbench, result_header

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    return analyzable_run(tmp_path / "run")


def rewrite(path: Path, change: Callable[[pa.Table], pa.Table]) -> None:
    """Rewrite a Parquet file with ``change(table)`` applied (the metadata kept unless
    ``change`` drops it)."""
    pq.write_table(change(pq.read_table(path)), path)


def refused(run_dir: Path) -> str:
    """``analyze`` on ``run_dir``: exit 2 with one error line; result.json untouched."""
    before = (run_dir / RESULT_FILE).read_bytes()
    completed = brokerbench("analyze", str(run_dir))
    assert completed.code == 2, completed
    assert (run_dir / RESULT_FILE).read_bytes() == before
    assert not (run_dir / ANALYSIS_FILE).exists()
    return completed.error_line()


@pytest.mark.parametrize("table", ["sends", "receives"])
def test_a_history_without_seq_and_offset_is_refused(run_dir: Path, table: str) -> None:
    # Before: read with nulls, checked as 0 / -1: 1,050 "lost" and exit 0 on a real run.
    path = parquet_path(run_dir, table)
    rewrite(path, lambda t: t.drop_columns(["seq", "offset"]))
    line = refused(run_dir)
    assert f"{path}: column 'seq' is missing" in line
    assert "run it again" in line


def test_a_missing_receives_file_is_refused(run_dir: Path) -> None:
    # Before: read as an empty table, every acknowledged send "lost", exit 0.
    parquet_path(run_dir, "receives").unlink()
    line = refused(run_dir)
    assert line == (
        f"error: {parquet_path(run_dir, 'receives')}: missing: restore the run folder from a "
        "copy, or run it again"
    )


def test_a_truncated_file_is_refused_without_a_traceback(run_dir: Path) -> None:
    # Before: a 61-line traceback. A real process, to see what a user sees.
    path = parquet_path(run_dir, "sends")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    completed = subprocess.run(
        [sys.executable, "-m", "harness", "analyze", str(run_dir)],
        capture_output=True, text=True, timeout=120, check=False, cwd=ROOT,
    )  # fmt: skip
    assert completed.returncode == 2, completed.stderr
    assert completed.stderr.splitlines() == [
        f"error: {path}: unreadable, truncated or not Parquet (Parquet magic bytes not found in "
        "footer. Either the file is corrupted or this is not a parquet file.): restore the run "
        "folder from a copy, or run it again"
    ]


@pytest.mark.parametrize(
    ("metadata", "expected"),
    [
        ({VERSION_KEY: b"2"}, "history version '2', this brokerbench reads version 1: analyze it "
         "with the brokerbench version that wrote it"),
        ({}, "no brokerbench.history.version metadata"),
    ],
)  # fmt: skip
def test_another_history_version_is_refused(
    run_dir: Path, metadata: dict[bytes, bytes], expected: str
) -> None:
    # Before: the version was written and never read.
    rewrite(parquet_path(run_dir, "events"), lambda t: t.replace_schema_metadata(metadata))
    assert expected in refused(run_dir)


def test_a_null_in_a_required_column_is_refused(run_dir: Path) -> None:
    def null_first_partition(table: pa.Table) -> pa.Table:
        at = table.schema.get_field_index("partition")
        values = table.column(at).to_pylist()
        loose = table.schema.set(at, pa.field("partition", pa.int32()))
        return table.set_column(at, loose.field(at), [pa.array([None, *values[1:]], pa.int32())])

    rewrite(parquet_path(run_dir, "receives"), null_first_partition)
    assert "column 'partition' has 1 empty (null) value(s)" in refused(run_dir)


def test_a_column_of_another_type_is_refused(run_dir: Path) -> None:
    def seq_as_text(table: pa.Table) -> pa.Table:
        at = table.schema.get_field_index("seq")
        return table.set_column(at, "seq", table.column(at).cast(pa.string()))

    rewrite(parquet_path(run_dir, "sends"), seq_as_text)
    assert "column 'seq' holds string, not uint64" in refused(run_dir)


def test_values_out_of_range_are_refused(run_dir: Path) -> None:
    def negative_key(table: pa.Table) -> pa.Table:
        at = table.schema.get_field_index("key_id")
        keys = [-1, *table.column(at).to_pylist()[1:]]
        return table.set_column(at, "key_id", pa.array(keys, pa.int64()))

    rewrite(parquet_path(run_dir, "sends"), negative_key)
    assert "column 'key_id' has values that do not fit uint32" in refused(run_dir)


def test_a_history_rewritten_faithfully_by_another_tool_still_loads(run_dir: Path) -> None:
    """Wider integers, plain strings and an extra column do not make a history untrustworthy."""

    def widened(table: pa.Table) -> pa.Table:
        columns = [
            column.cast(pa.int64())
            if pa.types.is_integer(column.type)
            else column.cast(pa.string())
            for column in table.columns
        ]
        return (
            pa.table(columns, names=table.column_names)
            .append_column("note", pa.array(["x"] * table.num_rows))
            .replace_schema_metadata(table.schema.metadata)
        )

    expected = load(run_dir)
    for table in SCHEMAS:
        rewrite(parquet_path(run_dir, table), widened)
    history = load(run_dir)
    for table in SCHEMAS:
        assert getattr(history, table).equals(getattr(expected, table)), table


def test_a_folder_without_history_is_refused(run_dir: Path) -> None:
    for table in SCHEMAS:
        parquet_path(run_dir, table).unlink()
    parquet_path(run_dir, "sends").parent.rmdir()
    assert "history: no history here" in refused(run_dir)
    with pytest.raises(UntrustedTableError):
        load(run_dir)


def test_a_truncated_lag_file_is_refused(run_dir: Path) -> None:
    document = json.loads((run_dir / RESULT_FILE).read_text())
    document["capabilities"]["lag_probe"] = "broker"
    (run_dir / RESULT_FILE).write_text(json.dumps(document))
    (run_dir / "lag.parquet").write_bytes(b"PAR1 not really")
    assert "lag.parquet: unreadable, truncated or not Parquet" in refused(run_dir)


def test_a_newer_result_schema_is_refused_by_analyze(run_dir: Path) -> None:
    header = result_header(schema="brokerbench.result/2")
    (run_dir / RESULT_FILE).write_text(json.dumps(header))
    line = refused(run_dir)
    assert "schema 'brokerbench.result/2' is not brokerbench.result/1" in line


def test_analyze_writes_analysis_json_and_leaves_the_result_alone(run_dir: Path) -> None:
    # Before: analyze rewrote result.json every time, silently.
    before = (run_dir / RESULT_FILE).read_bytes()
    completed = brokerbench("analyze", str(run_dir))
    assert completed.code == 0, completed
    assert (run_dir / RESULT_FILE).read_bytes() == before
    analysis = json.loads((run_dir / ANALYSIS_FILE).read_text())
    assert analysis["counts"]["received"] == 40
    assert analysis["checks"][0] == {**analysis["checks"][0], "name": "lost", "valid": True}
    assert f"wrote {run_dir / ANALYSIS_FILE} (result.json unchanged: --write replaces it)" in (
        completed.stdout
    )

    replaced = brokerbench("analyze", "--write", str(run_dir))
    assert replaced.code == 0, replaced
    assert json.loads((run_dir / RESULT_FILE).read_text())["checks"] == analysis["checks"]
    assert f"wrote {run_dir / RESULT_FILE}\n" in replaced.stdout


def test_an_empty_history_is_not_a_valid_run(run_dir: Path) -> None:
    # Before: every log-level check passed an empty history, so the run was valid: true.
    for table, schema in SCHEMAS.items():
        pq.write_table(schema.empty_table(), parquet_path(run_dir, table))
    (run_dir / "scenario.json").unlink()
    completed = brokerbench("analyze", str(run_dir))
    assert completed.code == 0, completed
    analysis = json.loads((run_dir / ANALYSIS_FILE).read_text())
    assert analysis["valid"] is None
    unknown = {c["name"]: c["notes"] for c in analysis["checks"] if c["valid"] is None}
    assert {"lost", "phantom", "duplicates", "ordering"} <= set(unknown)
    assert "no send was acknowledged" in unknown["lost"]
