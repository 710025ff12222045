"""Analysis in bounded memory (harness/analysis/): checking and evaluating a history range by
range gives the verdicts and figures of the whole-history path.

The histories: test_checker_speed's synthetic Kafka-like one (every anomaly planted, 32
partitions moving between 8 consumers), sorted by identity as compacted, and small hand-made
ones for what spans ranges (a lost-write seen only from another key's range, two consumers
reading one scope at once from different ranges).
"""

import itertools
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from harness.analysis import allocation, bounded_figures, evaluation
from harness.analysis import exact_ranks as exact_ranks_module
from harness.analysis.bounded_checks import check_ranges, max_offsets_read
from harness.analysis.ranges import NotSortedError, identity_ranges, table_batches
from harness.checkers import HistoryIndex, Verdict, check_all
from harness.drivers.base import OrderingScope
from harness.errors import UserError
from harness.history.schema import EVENTS, RECEIVES, SENDS
from harness.history.store import SORT_KEYS
from harness.run.figures import IDENTITY, Window
from harness.run.result import evaluate
from tests.benchmarks.big_history import replicate_history, synthetic_base
from tests.benchmarks.test_checker_speed import START_NS, make_history
from tests.unit.test_checkers import CONSUMERS, build

SECOND = 1_000_000_000


def _sorted(table: pa.Table, name: str) -> pa.Table:
    return table.sort_by([(column, "ascending") for column in SORT_KEYS[name]])


@pytest.fixture(scope="module")
def synthetic() -> tuple[pa.Table, pa.Table, pa.Table, pa.Table]:
    sends, receives, events, lag = make_history(0)  # its smallest: 640,000 messages
    return _sorted(sends, "sends"), _sorted(receives, "receives"), events, lag


def _in_ranges(  # noqa: PLR0917
    sends: pa.Table,
    receives: pa.Table,
    events: pa.Table,
    ordering: OrderingScope,
    lag: pa.Table | None,
    per_range: int,
    *,
    exactly_once: bool = False,
) -> list[Verdict]:
    def ranges():  # type: ignore[no-untyped-def]
        return identity_ranges(
            table_batches(sends, 7_000),
            table_batches(receives, 7_000),
            (sends.schema, receives.schema),
            per_range,
        )

    read_up_to = max_offsets_read(table_batches(receives))
    return check_ranges(ranges, read_up_to, events, ordering, lag, exactly_once=exactly_once)


def _without_rebalance_examples(verdict: Verdict) -> dict[str, object]:
    found = verdict.to_dict()
    found["examples"] = [e for e in verdict.examples if e["kind"] != "rebalance"]
    return found


def _assert_same(whole: list[Verdict], ranged: list[Verdict]) -> None:
    assert [v.name for v in ranged] == [v.name for v in whole]
    for expected, found in zip(whole, ranged, strict=True):
        assert _without_rebalance_examples(found) == _without_rebalance_examples(expected)
        kinds = [e for e in found.examples if e["kind"] == "rebalance"]
        assert len(kinds) == len([e for e in expected.examples if e["kind"] == "rebalance"])


@pytest.mark.parametrize(
    ("ordering", "exactly_once", "per_range"),
    [
        (OrderingScope.PARTITION, False, 40_000),
        (OrderingScope.PARTITION, True, 60_000),
        (OrderingScope.ORDERING_KEY, False, 100_000),
        (OrderingScope.NONE, False, 100_000),
    ],
)
def test_ranges_give_the_whole_history_verdicts(
    synthetic: tuple[pa.Table, pa.Table, pa.Table, pa.Table],
    ordering: OrderingScope,
    exactly_once: bool,
    per_range: int,
) -> None:
    sends, receives, events, lag = synthetic
    whole = check_all(sends, receives, events, ordering, lag, exactly_once=exactly_once)
    ranged = _in_ranges(
        sends, receives, events, ordering, lag, per_range, exactly_once=exactly_once
    )
    _assert_same(whole, ranged)
    counts = {v.name: v.counts for v in ranged}
    assert counts["lost"]["lost_write"] == 5  # planted
    assert counts["duplicates"]["failed_acks"] == 0


def test_ranges_smaller_than_one_producer_key_still_hold_it_whole(
    synthetic: tuple[pa.Table, pa.Table, pa.Table, pa.Table],
) -> None:
    sends, receives, events, lag = synthetic
    few = pc.and_(pc.less(sends["key_id"], 30), pc.less_equal(sends["producer_id"], 2))
    sends = sends.filter(few)
    receives = receives.filter(
        pc.and_(pc.less(receives["key_id"], 30), pc.less_equal(receives["producer_id"], 2))
    )
    whole = check_all(sends, receives, events, OrderingScope.PARTITION, lag)
    _assert_same(whole, _in_ranges(sends, receives, events, OrderingScope.PARTITION, lag, 3))


def _tables(
    sends: list[tuple[int, int, int, int, int]],
    receives: list[tuple[int, int, int, int, int, int, str]],
) -> tuple[pa.Table, pa.Table]:
    """sends: (producer, key, seq, partition, offset), all acknowledged; receives: (consumer,
    producer, key, seq, receive_ns, partition, offset, scope)."""
    send_columns = list(zip(*sends, strict=True))
    n = len(sends)
    sent = pa.table(
        {
            "producer_id": pa.array(send_columns[0], pa.uint32()),
            "key_id": pa.array(send_columns[1], pa.uint32()),
            "seq": pa.array(send_columns[2], pa.uint64()),
            "intended_ns": pa.array([START_NS] * n, pa.int64()),
            "invoke_ns": pa.array([START_NS] * n, pa.int64()),
            "complete_ns": pa.array([START_NS + 1] * n, pa.int64()),
            "outcome": pa.array([0] * n, pa.uint8()),
            "partition": pa.array(send_columns[3], pa.int32()),
            "offset": pa.array(send_columns[4], pa.int64()),
        }
    ).cast(SENDS)
    columns = list(zip(*receives, strict=True))
    m = len(receives)
    received = pa.table(
        {
            "consumer_id": pa.array(columns[0], pa.uint32()),
            "producer_id": pa.array(columns[1], pa.uint32()),
            "key_id": pa.array(columns[2], pa.uint32()),
            "seq": pa.array(columns[3], pa.uint64()),
            "intended_ns": pa.array([START_NS] * m, pa.int64()),
            "receive_ns": pa.array(columns[4], pa.int64()),
            "partition": pa.array(columns[5], pa.int32()),
            "offset": pa.array(columns[6], pa.int64()),
            "message_id": pa.nulls(m, pa.string()),
            "delivery_attempt": pa.array([1] * m, pa.int16()),
            "disposition": pa.array([0] * m, pa.uint8()),
            "scope": pa.array(columns[7], pa.string()),
            "subscriber": pa.nulls(m, pa.string()),
        }
    ).cast(RECEIVES)
    return _sorted(sent, "sends"), _sorted(received, "receives")


def test_a_lost_write_is_seen_from_another_keys_range() -> None:
    # Key 0's offset 0 was never read; key 1 (another range) read offset 1 of that partition.
    sends, receives = _tables(
        [(0, 0, 0, 0, 0), (0, 1, 0, 0, 1)],
        [(0, 0, 1, 0, START_NS + 5, 0, 1, "p0")],
    )
    events = EVENTS.empty_table()
    whole = check_all(sends, receives, events, OrderingScope.PARTITION)
    ranged = _in_ranges(sends, receives, events, OrderingScope.PARTITION, None, 1)
    assert whole[0].counts["lost_write"] == 1
    _assert_same(whole, ranged)


def test_two_consumers_reading_one_scope_at_once_are_counted_exactly() -> None:
    # Scope p0 read by consumers 1 and 2 in turns, by keys that fall in different ranges: the
    # ranges' runs interleave, so the handoffs are counted from the deliveries themselves.
    sends, receives = [], []
    for key in range(4):
        for seq in range(3):
            offset = seq * 4 + key  # the keys take turns, in time and in the partition
            sends.append((0, key, seq, 0, offset))
            consumer = 1 + key % 2
            receives.append((consumer, 0, key, seq, START_NS + 10 * offset, 0, offset, "p0"))
    sent, received = _tables(sends, receives)
    events = EVENTS.empty_table()
    whole = check_all(sent, received, events, OrderingScope.PARTITION)
    ranged = _in_ranges(sent, received, events, OrderingScope.PARTITION, None, 3)
    assert whole[5].counts["rebalance"] == 11
    _assert_same(whole, ranged)


def test_ranges_hold_whole_pairs_and_know_their_first_receive_row(
    synthetic: tuple[pa.Table, pa.Table, pa.Table, pa.Table],
) -> None:
    sends, receives, _, _ = synthetic
    parts = list(
        identity_ranges(
            table_batches(sends), table_batches(receives), (sends.schema, receives.schema), 50_000
        )
    )
    assert len(parts) > 10
    assert sum(p.sends.num_rows for p in parts) == sends.num_rows
    row = 0
    for earlier, later in itertools.pairwise(parts):
        last = earlier.sends.slice(earlier.sends.num_rows - 1).to_pylist()[0]
        first = later.sends.slice(0, 1).to_pylist()[0]
        assert (last["producer_id"], last["key_id"]) < (first["producer_id"], first["key_id"])
    for part in parts:
        assert part.first_receive_row == row
        row += part.receives.num_rows
    assert row == receives.num_rows


def test_an_unsorted_history_is_refused() -> None:
    sends, receives = _tables(
        [(1, 0, 0, 0, 0), (0, 0, 0, 0, 1)], [(0, 0, 0, 0, START_NS, 0, 1, "p0")]
    )
    unsorted = sends.take(pa.array([1, 0]))
    with pytest.raises(NotSortedError):
        list(
            identity_ranges(table_batches(unsorted), table_batches(receives), (SENDS, RECEIVES), 1)
        )


@pytest.mark.parametrize("broker_lag", [False, True])
def test_evaluate_in_ranges_gives_the_whole_history_result(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, broker_lag: bool
) -> None:
    run_dir = tmp_path / "run"
    replicate_history(synthetic_base(0), run_dir, 1_000_000)  # two copies, 1.28 M messages
    if broker_lag:
        _, _, _, lag = make_history(0)
        with_error = lag.append_column("error", pa.nulls(lag.num_rows, pa.string()))
        pq.write_table(with_error, run_dir / "lag.parquet")
    window = Window(START_NS + SECOND, START_NS + 2 * SECOND)
    found = {}
    for above in (1 << 62, 0):
        monkeypatch.setattr(evaluation, "BOUNDED_ABOVE_MESSAGES", above)
        monkeypatch.setattr(evaluation, "MESSAGES_PER_RANGE", 100_000)
        result = evaluate(run_dir, OrderingScope.PARTITION, window, 200, broker_lag=broker_lag)
        found[above] = result.model_dump(mode="json")
    whole, ranged = found[1 << 62], found[0]
    for document in (whole, ranged):
        for check in document["checks"]:
            check["examples"] = [e for e in check["examples"] if e["kind"] != "rebalance"]
    assert ranged == whole
    assert ranged["figures"]["series"]["e2e_p99_ms"][0] is not None
    assert ranged["counts"]["sent"] == 2 * 640_000


def test_a_small_history_is_evaluated_whole(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    replicate_history(synthetic_base(0), run_dir, 1)
    assert not evaluation.applies(run_dir, has_flow_checks=False, has_scenario=False)
    assert evaluation.BOUNDED_ABOVE_MESSAGES > 640_000


def test_flow_checks_and_scenarios_keep_the_whole_history_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_dir = tmp_path / "run"
    replicate_history(synthetic_base(0), run_dir, 1)
    monkeypatch.setattr(evaluation, "BOUNDED_ABOVE_MESSAGES", 0)
    assert evaluation.applies(run_dir, has_flow_checks=False, has_scenario=False)
    assert not evaluation.applies(run_dir, has_flow_checks=True, has_scenario=False)
    assert not evaluation.applies(run_dir, has_flow_checks=False, has_scenario=True)


def test_a_history_out_of_identity_order_is_a_one_line_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_dir = tmp_path / "run"
    replicate_history(synthetic_base(0), run_dir, 1)
    path = run_dir / "history" / "sends.parquet"
    shuffled = pq.read_table(path)
    pq.write_table(shuffled.take(pa.array(np.arange(shuffled.num_rows)[::-1])), path)
    monkeypatch.setattr(evaluation, "BOUNDED_ABOVE_MESSAGES", 0)
    window = Window(START_NS + SECOND, START_NS + 2 * SECOND)
    with pytest.raises(UserError, match="not sorted by producer_id, key_id, as compaction"):
        evaluate(run_dir, OrderingScope.PARTITION, window, 200, broker_lag=True)


@pytest.mark.parametrize("budget", [0, 50, 1_000_000])
def test_exact_ranks_narrow_down_to_the_sorted_value(
    monkeypatch: pytest.MonkeyPatch, budget: int
) -> None:
    # Budget 0: counting passes until one value is left; 50: some, then gathering; a million:
    # gathering at once. Latencies: mostly near 3 ms (many equal), some <= 0, a few huge.
    monkeypatch.setattr(exact_ranks_module, "GATHER_BUDGET", budget)
    rng = np.random.default_rng(7)
    n, seconds = 40_000, 5
    received = START_NS + rng.integers(0, seconds * SECOND, n)
    latency = np.where(
        rng.random(n) < 0.5, 3_000_000, rng.integers(2_900_000, 3_100_000, n)
    ).astype(np.int64)
    latency[rng.random(n) < 0.02] = -rng.integers(0, 1_000, 1)[0]
    latency[rng.random(n) < 0.01] = 1 << 50
    receives = pa.table({"receive_ns": received, "intended_ns": received - latency})
    second = (received - START_NS) // SECOND
    bins = np.zeros((seconds + 1, exact_ranks_module.BINS), dtype=np.int64)
    np.add.at(bins, (second, exact_ranks_module.bin_of(latency)), 1)
    found = exact_ranks_module.exact_ranks(
        bins,
        START_NS,
        exact_ranks_module.in_one_part(lambda: iter(receives.to_batches(max_chunksize=4_096))),
        (0.5, 0.99),
    )
    for index, q in enumerate((0.5, 0.99)):
        expected: list[float | None] = []
        for s in range(seconds + 1):
            values = np.sort(latency[second == s]) / 1e6
            expected.append(
                round(float(values[int(q * (values.size - 1))]), 3) if values.size else None
            )
        assert found[index] == expected


def test_an_empty_history_is_judged_as_check_all_judges_it() -> None:
    sends, receives = SENDS.empty_table(), RECEIVES.empty_table()
    events = EVENTS.empty_table()
    whole = check_all(sends, receives, events, OrderingScope.PARTITION)
    _assert_same(whole, _in_ranges(sends, receives, events, OrderingScope.PARTITION, None, 10))


def test_e2e_uncorrected_pairs_as_the_join_on_identity_does() -> None:
    # Identity (0, 1, 2) sent twice (a resend) and delivered twice: four pairs, as the inner
    # join of harness.run.figures makes; a send and a receive outside the window pair with
    # nothing; a phantom pairs with nothing.
    history = build("fifo", producers=1, keys=3, per_key=4)
    resent = dict(history.sent(0, 1, 2))
    history.sends.append(resent | {"invoke_ns": resent["invoke_ns"] + 777})
    again = dict(history.receives[history.find(0, 1, 2)])
    history.receives.append(again | {"receive_ns": again["receive_ns"] + 5_000})
    history.sent(0, 2, 3)["intended_ns"] = 0  # before the window
    history.receive(CONSUMERS[0], 5, 0, 0, SECOND * 3)  # a phantom
    for row in history.receives[:-1]:  # the phantom's stays 0: outside the window
        row["intended_ns"] = history.sent(0, row["key_id"], row["seq"])["intended_ns"]
    history.receives[-1]["intended_ns"] = SECOND + 1  # inside: it must still pair with nothing
    sends, receives, _ = history.tables()
    window = Window(SECOND, 2 * SECOND)
    index = HistoryIndex(sends, receives)

    def inside(table: pa.Table) -> npt.NDArray[np.bool_]:
        intended = np.asarray(table["intended_ns"].to_numpy(), dtype=np.int64)
        return (intended >= window.start_ns) & (intended < window.end_ns)

    found = bounded_figures._receive_minus_send(
        index, inside(sends), inside(receives), sends["invoke_ns"].to_numpy(),
        receives["receive_ns"].to_numpy(),
    )  # fmt: skip
    kept_sends = sends.filter(window.mask(sends))
    kept_receives = receives.filter(window.mask(receives))
    joined = kept_receives.select([*IDENTITY, "receive_ns"]).join(
        kept_sends.select([*IDENTITY, "invoke_ns"]), keys=IDENTITY, join_type="inner"
    )
    expected = joined["receive_ns"].to_numpy() - joined["invoke_ns"].to_numpy()
    assert sorted(found.tolist()) == sorted(expected.tolist())
    # 11 messages in the window (not the early one); the resent one's 2 deliveries x 2 sends.
    assert found.size == 10 + 2 * 2


def test_freed_memory_is_kept_only_inside_the_evaluation() -> None:
    before = pa.default_memory_pool()
    with allocation.freed_memory_kept():
        inside = pa.default_memory_pool().backend_name
        kept = pa.array(np.arange(1_000_000))  # allocated from the pool in use inside
    assert pa.default_memory_pool().backend_name == before.backend_name
    assert inside in {"jemalloc", before.backend_name}  # jemalloc where pyarrow has it
    assert kept.sum().as_py() == 499_999_500_000  # still readable once the pool changed back
