"""A large compacted history built cheaply: a base history replicated with new identities.

``replicate_history`` writes ``sends.parquet``, ``receives.parquet`` and ``events.parquet`` into
``RUN_DIR/history/`` as ``compact`` would (same schemas, version metadata, sorted by identity),
copy after copy, each copy's producers renumbered past the previous copy's (copy ``c`` of
producer ``p`` is producer ``p + c * stride``) and its times moved after the previous copy's
(by the base's span plus a second), so the run gets longer at the base's rate, as a soak does.
Only one copy is in memory at a time, so building 100 M messages takes a couple of minutes and
the base's memory, not 20 GB. Keys, seqs, partitions, offsets, consumers and scopes are kept:
the same anomalies, ``copies`` times over (a lost message stays unseen, since its partition's
offsets repeat rather than grow), and each copy's partitions move between consumers again.

    .venv/bin/python -m tests.benchmarks.big_history RUN_DIR --messages 100000000

The base is ``test_checker_speed.make_history`` (planted anomalies) unless ``--base RUN_DIR``
names a real run's compacted history.
"""

import argparse
import shutil
import time
from pathlib import Path

import numpy as np
import pyarrow as pa  # type: ignore[import-untyped, unused-ignore]
import pyarrow.compute as pc  # type: ignore[import-untyped, unused-ignore]
import pyarrow.parquet as pq  # type: ignore[import-untyped, unused-ignore]

from harness.history.schema import SCHEMAS
from harness.history.store import (
    _PLAIN_COLUMNS,  # the encodings compaction writes, so reading costs the same
    SORT_KEYS,
    History,
    history_dir,
    load,
    parquet_path,
)

ROW_GROUP_ROWS = 1 << 20


def _sorted(table: pa.Table, name: str) -> pa.Table:
    return table.sort_by([(column, "ascending") for column in SORT_KEYS[name]])


_TIMES = ("intended_ns", "invoke_ns", "complete_ns", "receive_ns")


def _renumbered(table: pa.Table, shift: int, later_ns: int) -> pa.Table:
    """``table`` with its producers ``shift`` higher and its times ``later_ns`` later."""
    at = table.schema.get_field_index("producer_id")
    producers = pc.add(table.column(at), pa.scalar(shift, pa.uint32()))
    table = table.set_column(at, table.schema.field(at), producers)
    for name in _TIMES:
        if name in table.column_names:
            at = table.schema.get_field_index(name)
            later = pc.add(table.column(at), pa.scalar(later_ns, pa.int64()))
            table = table.set_column(at, table.schema.field(at), later)
    return table


def _span_ns(sends: pa.Table, receives: pa.Table) -> int:
    """From the first intended send to the last receive, plus a second."""
    first = pc.min(sends["intended_ns"]).as_py()
    last = max(pc.max(sends["intended_ns"]).as_py(), pc.max(receives["receive_ns"]).as_py() or 0)
    return int(last - first) + 1_000_000_000


def replicate_history(base: History, run_dir: Path, messages: int) -> int:
    """Write copies of ``base`` (renumbered producers) until at least ``messages`` sends; the
    number of sends written."""
    sends, receives = _sorted(base.sends, "sends"), _sorted(base.receives, "receives")
    if not sends.num_rows:
        raise ValueError("the base history has no sends")
    stride = max(int(pc.max(t["producer_id"]).as_py() or 0) for t in (sends, receives)) + 1
    span = _span_ns(sends, receives)
    copies = -(-messages // sends.num_rows)
    if (copies * stride) >= 1 << 32:
        raise ValueError(f"{copies} copies of {stride} producers overflow producer_id")
    history_dir(run_dir).mkdir(parents=True, exist_ok=True)
    pq.write_table(base.events, parquet_path(run_dir, "events"))
    for name, table in (("sends", sends), ("receives", receives)):
        schema = SCHEMAS[name]
        with pq.ParquetWriter(
            parquet_path(run_dir, name),
            schema,
            compression="zstd",
            compression_level=1,  # compaction's 9 reads as fast, but writes 4x slower
            use_dictionary=[n for n in schema.names if n not in _PLAIN_COLUMNS],
        ) as writer:
            for copy in range(copies):
                renumbered = _renumbered(table, copy * stride, copy * span).cast(schema)
                writer.write_table(renumbered, row_group_size=ROW_GROUP_ROWS)
    return copies * sends.num_rows


def synthetic_base(messages: int = 1_000_000) -> History:
    """``test_checker_speed``'s history (planted anomalies), as a ``History``."""
    from tests.benchmarks.test_checker_speed import make_history

    sends, receives, events, _ = make_history(messages)
    events = events.cast(SCHEMAS["events"]) if events.num_rows else SCHEMAS["events"].empty_table()
    return History(sends.cast(SCHEMAS["sends"]), receives.cast(SCHEMAS["receives"]), events)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--messages", type=int, default=100_000_000)
    parser.add_argument("--base", type=Path, help="a run folder whose history to replicate")
    args = parser.parse_args()
    started = time.perf_counter()
    base = load(args.base) if args.base else synthetic_base()
    written = replicate_history(base, args.run_dir, args.messages)
    if args.base and (args.base / "lag.parquet").exists():  # its times fit the first copy
        shutil.copy(args.base / "lag.parquet", args.run_dir / "lag.parquet")
    print(f"{written:,} messages in {time.perf_counter() - started:.1f} s -> {args.run_dir}")


if __name__ == "__main__":
    np.seterr(all="raise")
    main()
