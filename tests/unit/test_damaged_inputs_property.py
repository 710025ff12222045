"""Property: whatever damage is done to a run folder's history (or its result.json),
``brokerbench analyze`` (and ``report`` / ``gate`` for results) answers with one error line and
exit 2, never a traceback and never a re-check of what is left (issue 12, item 5).

Generated damage: dropped columns, nulls in required columns, columns of another type,
truncated files, files replaced by garbage, missing files, another history version; for
result.json: truncated, garbage, another major schema. Everything runs in this process
(``harness.cli.main``) on copies of one folder built once, so a hundred examples take seconds.
"""

import json
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa  # type: ignore[import-untyped, unused-ignore]
import pyarrow.parquet as pq  # type: ignore[import-untyped, unused-ignore]
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.history.schema import ADDED_LATER, SCHEMAS, VERSION_KEY
from harness.run.result_model import ANALYSIS_FILE, RESULT_FILE
from tests.unit.stored_runs import analyzable_run, brokerbench

SETTINGS = settings(
    max_examples=60,
    deadline=None,
    database=None,  # nothing written to the checkout
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
FILES = {table: f"history/{table}.parquet" for table in SCHEMAS}
UNREADABLE_ONLY = {"saturation": "saturation.parquet", "scenario": "scenario.json"}
"""Files of the run besides the history that analyze reads: damaged only as bytes."""


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = analyzable_run(tmp_path_factory.mktemp("pristine") / "run")
    assert brokerbench("analyze", str(run_dir)).code == 0
    (run_dir / ANALYSIS_FILE).unlink(missing_ok=True)
    return run_dir


@pytest.fixture
def copy_of(pristine: Path) -> Iterator[Callable[[], Path]]:
    """A fresh copy of the pristine run per call (hypothesis calls the test many times)."""
    with tempfile.TemporaryDirectory() as scratch:
        counter = iter(range(1_000_000))

        def fresh() -> Path:
            return Path(shutil.copytree(pristine, Path(scratch) / f"run-{next(counter)}"))

        yield fresh


# -- the damage ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Damage:
    """One thing done to one file of a run folder (its ``repr`` is the counterexample)."""

    kind: str
    file: str
    column: str = ""
    amount: int = 0
    data: bytes = b""

    def apply(self, run_dir: Path) -> None:
        path = run_dir / self.file
        if not path.exists():
            return  # an earlier damage removed it: that one stands
        if self.kind == "missing":
            path.unlink()
        elif self.kind == "truncate":
            content = path.read_bytes()
            path.write_bytes(content[: self.amount % max(len(content), 1)])
        elif self.kind == "garbage":
            path.write_bytes(self.data)
        else:
            self._rewrite_table(path)

    def _rewrite_table(self, path: Path) -> None:
        try:
            table = pq.read_table(path)
        except (pa.ArrowException, OSError):
            return  # an earlier damage made it unreadable: that one stands
        if self.kind == "version":
            metadata = dict(table.schema.metadata or {})
            metadata.pop(VERSION_KEY, None)
            if self.data != b"<none>":
                metadata[VERSION_KEY] = self.data
            table = table.replace_schema_metadata(metadata)
        elif self.column not in table.column_names:
            return  # dropped earlier: that stands
        else:
            at = table.schema.get_field_index(self.column)
            if self.kind == "drop":
                table = table.remove_column(at)
            elif self.kind == "null":
                values = table.column(at).to_pylist()
                values[self.amount % len(values)] = None
                field = pa.field(self.column, table.schema.field(at).type)  # nullable
                table = table.set_column(at, field, pa.array(values, field.type))
            elif self.kind == "retype":
                expected = SCHEMAS[Path(self.file).stem].field(self.column).type
                table = table.set_column(at, self.column, _another_type(table.column(at), expected))
        pq.write_table(table, path)


def _another_type(column: pa.ChunkedArray, expected: pa.DataType) -> pa.Array:
    """As many values as ``column``, of a type that cannot stand for ``expected``."""
    if pa.types.is_integer(expected):
        return pa.array([0.5 + index for index in range(len(column))])
    return pa.array(range(len(column)), pa.int64())


def _table_damage() -> st.SearchStrategy[Damage]:
    tables = st.sampled_from(sorted(SCHEMAS))
    columns = st.sampled_from([(t, f.name) for t in sorted(SCHEMAS) for f in SCHEMAS[t]])
    # A column added to version 1 later may be absent: that is an older history, not damage.
    droppable = st.sampled_from(
        [
            (t, f.name)
            for t in sorted(SCHEMAS)
            for f in SCHEMAS[t]
            if ADDED_LATER not in (f.metadata or {})
        ]
    )
    required = st.sampled_from(
        [(t, f.name) for t in sorted(SCHEMAS) for f in SCHEMAS[t] if not f.nullable]
    )
    rows = st.integers(min_value=0, max_value=10_000)
    versions = st.one_of(st.just(b"<none>"), st.binary(max_size=6).filter(lambda v: v != b"1"))
    return st.one_of(
        droppable.map(lambda tc: Damage("drop", FILES[tc[0]], tc[1])),
        st.builds(lambda tc, n: Damage("null", FILES[tc[0]], tc[1], n), required, rows),
        columns.map(lambda tc: Damage("retype", FILES[tc[0]], tc[1])),
        st.builds(lambda t, v: Damage("version", FILES[t], data=v), tables, versions),
        tables.map(lambda t: Damage("missing", FILES[t])),
        _byte_damage(st.sampled_from([*FILES.values(), *UNREADABLE_ONLY.values()])),
    )


def _byte_damage(files: st.SearchStrategy[str]) -> st.SearchStrategy[Damage]:
    return st.one_of(
        st.builds(lambda f, n: Damage("truncate", f, amount=n), files, st.integers(0, 10**6)),
        st.builds(lambda f, b: Damage("garbage", f, data=b), files, st.binary(max_size=300)),
    )


def _garbage_is_damage(damage: Damage) -> bool:
    """Whether ``damage`` really damages: a scenario.json 'garbage' of valid JSON naming a
    scenario would be a (strange) scenario, not damage."""
    return not (damage.file == UNREADABLE_ONLY["scenario"] and damage.data.strip()[:1] == b"{")


@SETTINGS
@given(damages=st.lists(_table_damage().filter(_garbage_is_damage), min_size=1, max_size=3))
def test_a_damaged_history_is_one_error_line(
    copy_of: Callable[[], Path], damages: list[Damage]
) -> None:
    run_dir = copy_of()
    for damage in damages:
        damage.apply(run_dir)
    before = (run_dir / RESULT_FILE).read_bytes()

    completed = brokerbench("analyze", str(run_dir))

    assert completed.code == 2, (damages, completed)
    line = completed.error_line()
    assert str(run_dir) in line, line
    assert (run_dir / RESULT_FILE).read_bytes() == before
    assert not (run_dir / ANALYSIS_FILE).exists()


def _result_damage() -> st.SearchStrategy[Damage]:
    schemas = st.one_of(
        st.integers(min_value=2, max_value=10**6).map(lambda n: f"brokerbench.result/{n}"),
        st.text(max_size=30).filter(lambda s: not s.startswith("brokerbench.result/1")),
    )
    return st.one_of(
        # Keep at most all but the closing brace and newline: a shorter prefix is never JSON.
        st.integers(0, 10**6).map(lambda n: Damage("truncate-json", RESULT_FILE, amount=n)),
        st.binary(max_size=300)
        .filter(lambda b: not b.strip().startswith(b"{"))
        .map(lambda b: Damage("garbage", RESULT_FILE, data=b)),
        schemas.map(lambda s: Damage("schema", RESULT_FILE, data=s.encode())),
    )


def _damage_result(run_dir: Path, damage: Damage) -> None:
    path = run_dir / RESULT_FILE
    content = path.read_bytes()
    if damage.kind == "truncate-json":
        path.write_bytes(content[: damage.amount % (len(content) - 2)])
    elif damage.kind == "schema":
        document = json.loads(content)
        document["schema"] = damage.data.decode()
        path.write_text(json.dumps(document))
    else:
        path.write_bytes(damage.data)


@settings(SETTINGS, max_examples=25)
@given(damage=_result_damage(), command=st.sampled_from(["analyze", "report", "gate"]))
def test_a_damaged_result_is_one_error_line_for_every_reader(
    copy_of: Callable[[], Path], damage: Damage, command: str
) -> None:
    run_dir = copy_of()
    other = copy_of()
    _damage_result(run_dir, damage)
    args = {
        "analyze": ["analyze", str(run_dir)],
        "report": ["report", str(run_dir), "--md", str(other / "report.md")],
        "gate": ["gate", "--baseline", str(run_dir), "--current", str(other)],
    }[command]

    completed = brokerbench(*args)

    assert completed.code == 2, (damage, completed)
    assert str(run_dir / RESULT_FILE) in completed.error_line()
