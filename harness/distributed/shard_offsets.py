"""Each machine's clock offset taken out of the history's time columns, before compaction.

A worker's times are on its own clock; the master subtracts the worker's estimated offset so
that every time column of the run is on the master's clock:

- a worker's ``sends`` shards: ``intended_ns``, ``invoke_ns``, ``complete_ns`` (its producers
  were told the start in its own clock, so their schedule is too);
- a worker's ``events`` shards: ``time_ns``;
- every ``receives`` shard: ``receive_ns`` by the offset of the consumer's machine, and
  ``intended_ns`` (read from the envelope, written on the *producer's* clock) by the offset of
  the machine that ran that ``producer_id``.

The master's own ``sends`` and ``events`` shards are on its clock already and are not touched
(its runner's shards are still open then); of its shards only its load processes' ``receives``
are, for their ``intended_ns``. Each rewritten shard replaces the old one
atomically (written beside it, then renamed).
"""

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.compute as pc  # type: ignore[import-untyped]

from harness.history.shards import read_shard

OWN_CLOCK_COLUMNS = {
    "sends": ("intended_ns", "invoke_ns", "complete_ns"),
    "events": ("time_ns",),
    "receives": ("receive_ns",),
}


def correct_shards(
    shard_machine: Mapping[Path, str],
    offsets: Mapping[str, int],
    producer_machine: Mapping[int, str],
) -> int:
    """Rewrite shards onto the master's clock; the number rewritten. ``shard_machine``: each
    shard to consider (a worker's returned shards, the master's own load processes' receives;
    never a shard still open, like the runner's) -> the machine that wrote it; ``offsets``:
    machine -> offset (ns, its clock minus the master's; absent: 0, the master);
    ``producer_machine``: producer id -> the machine that ran it."""
    by_producer = {p: offsets.get(m, 0) for p, m in producer_machine.items()}
    rewritten = 0
    for path, machine in shard_machine.items():
        table = path.name.split("-", 1)[0]
        own = offsets.get(machine, 0)
        shifts = dict.fromkeys(OWN_CLOCK_COLUMNS.get(table, ()), own)
        producers = by_producer if table == "receives" else None
        if not path.exists() or (not any(shifts.values()) and not any((producers or {}).values())):
            continue
        _rewrite(path, shifts, producers)
        rewritten += 1
    return rewritten


def _rewrite(path: Path, shifts: dict[str, int], by_producer: dict[int, int] | None) -> None:
    batches = read_shard(path)
    if not batches:  # nothing recorded (or not even the schema): no time to shift
        return
    with pa.OSFile(str(path)) as source:
        schema = pa.ipc.open_stream(source).schema
    fixed = [_shift(batch, shifts, by_producer) for batch in batches]
    temporary = path.with_name(path.name + ".clock")
    options = pa.ipc.IpcWriteOptions(compression="zstd")
    with pa.OSFile(str(temporary), "wb") as sink:
        writer = pa.ipc.new_stream(sink, schema, options=options)
        for batch in fixed:
            writer.write_batch(batch)
        writer.close()
    temporary.replace(path)


def _shift(
    batch: pa.RecordBatch, shifts: dict[str, int], by_producer: dict[int, int] | None
) -> pa.RecordBatch:
    columns = {name: batch.column(name) for name in batch.schema.names}
    for name, offset in shifts.items():
        if offset:
            columns[name] = pc.subtract(columns[name], pa.scalar(offset, pa.int64()))
    if by_producer and any(by_producer.values()):
        producers = columns["producer_id"].to_numpy(zero_copy_only=False).astype(np.int64)
        lookup = np.zeros(max(by_producer) + 1 if by_producer else 1, dtype=np.int64)
        for producer, offset in by_producer.items():
            lookup[producer] = offset
        known = producers < len(lookup)
        shift = np.where(known, lookup[np.minimum(producers, len(lookup) - 1)], 0)
        intended = columns["intended_ns"].to_numpy(zero_copy_only=False)
        columns["intended_ns"] = pa.array(intended - shift, pa.int64())
    return pa.RecordBatch.from_arrays(list(columns.values()), schema=batch.schema)
