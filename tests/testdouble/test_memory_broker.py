"""The memory TEST DOUBLE's broker state and settings, in-process (no socket, no stack): each
knob's effect on delivery, groups, redelivery, and the file:line errors of its target
settings. The double tests the harness; it never replaces a real-broker test."""

import re
import time
from pathlib import Path

import pytest
import yaml

from harness.drivers.memory import broker as broker_module
from harness.drivers.memory.broker import Delivery, MemoryBroker
from harness.drivers.memory.knobs import DEFAULT_PORT, Fates, Knobs
from harness.drivers.memory.server import answer
from harness.drivers.targets import open_driver, target_names
from harness.errors import UserError
from harness.settings import Ports, Settings, load_settings
from harness.stack.manager import Stack
from harness.stack.provider import _make, open_provider

pytestmark = pytest.mark.test_double


def broker_with(
    knobs: Knobs, partitions: int = 1, max_deliveries: int | None = None
) -> MemoryBroker:
    broker = MemoryBroker()
    broker.create("d", partitions, ["g"], max_deliveries, knobs)
    return broker


def polled(broker: MemoryBroker, member: str, timeout: float = 0.0) -> list[tuple[str, int]]:
    return [(d.payload.decode(), d.attempt) for d in broker.poll(member, 100, timeout)]


def test_fates_are_a_function_of_the_seed() -> None:
    knobs = Knobs(lose=0.2, duplicate=0.2, reorder=0.2, delay=0.2, seed=5)
    first, again = Fates(knobs), Fates(knobs)
    drawn = [first.next() for _ in range(500)]
    assert drawn == [again.next() for _ in range(500)]
    other = Fates(knobs.model_copy(update={"seed": 6}))
    assert drawn != [other.next() for _ in range(500)]
    assert 50 < sum(fate.lost for fate in drawn) < 150
    # A knob's draws do not depend on the other knobs' settings.
    lose_only = Fates(Knobs(lose=0.2, seed=5))
    assert [f.lost for f in drawn] == [lose_only.next().lost for _ in range(500)]


def test_a_well_behaved_destination_delivers_in_order_once() -> None:
    broker = broker_with(Knobs())
    member = broker.join("d", "g", 30.0)
    broker.publish("d", ["k"] * 5, [f"{n}".encode() for n in range(5)])
    assert polled(broker, member) == [(f"{n}", 1) for n in range(5)]
    broker.settle("d", "g", [(0, n) for n in range(5)], [])
    assert broker.backlog("d", "g") == 0
    assert polled(broker, member) == []


def test_lose_acknowledges_an_offset_but_never_delivers() -> None:
    broker = broker_with(Knobs(lose=1.0))
    member = broker.join("d", "g", 30.0)
    partitions, offsets = broker.publish("d", ["k", "k"], [b"a", b"b"])
    assert (partitions, offsets) == ([0, 0], [0, 1])
    assert polled(broker, member, timeout=0.1) == []
    assert broker.backlog("d", "g") == 0
    assert broker.stats("d")["lost"] == 2


def test_duplicate_delivers_the_same_offset_twice() -> None:
    broker = broker_with(Knobs(duplicate=1.0))
    member = broker.join("d", "g", 30.0)
    broker.publish("d", ["k"], [b"a"])
    found = broker.poll(member, 100, 0)
    assert [(d.offset, d.attempt) for d in found] == [(0, 1), (0, 2)]
    broker.settle("d", "g", [(0, 0), (0, 0)], [])
    assert broker.backlog("d", "g") == 0


def test_reorder_swaps_a_message_with_the_next_of_its_key() -> None:
    broker = broker_with(Knobs(reorder=0.5, seed=0))
    fates = Fates(Knobs(reorder=0.5, seed=0))
    first_held = next(n for n in range(100) if fates.next().reordered)
    member = broker.join("d", "g", 30.0)
    payloads = [f"{n}".encode() for n in range(first_held + 2)]
    broker.publish("d", ["k"] * len(payloads), payloads)
    order = [int(payload) for payload, _ in polled(broker, member)]
    assert order[first_held : first_held + 2] == [first_held + 1, first_held]


def test_a_held_message_is_released_alone_when_its_key_goes_quiet(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(broker_module, "REORDER_HOLD_SECONDS", 0.05)
    broker = broker_with(Knobs(reorder=1.0))
    member = broker.join("d", "g", 30.0)
    broker.publish("d", ["k"], [b"a"])
    assert polled(broker, member) == []
    assert polled(broker, member, timeout=1.0) == [("a", 1)]


def test_delay_holds_its_partition_behind_the_delayed_message() -> None:
    broker = broker_with(Knobs(delay=1.0, delay_ms=150))
    member = broker.join("d", "g", 30.0)
    started = time.monotonic()
    broker.publish("d", ["k", "k"], [b"a", b"b"])
    assert polled(broker, member) == []
    assert polled(broker, member, timeout=2.0) == [("a", 1), ("b", 1)]
    assert time.monotonic() - started >= 0.15


def test_members_share_partitions_and_a_leaver_hands_its_messages_back() -> None:
    broker = broker_with(Knobs(), partitions=4)
    first, second = broker.join("d", "g", 30.0), broker.join("d", "g", 30.0)
    keys = [f"key-{n}" for n in range(40)]
    broker.publish("d", keys, [key.encode() for key in keys])
    mine = broker.poll(first, 100, 0)
    theirs = broker.poll(second, 100, 0)
    assert {d.partition for d in mine}.isdisjoint({d.partition for d in theirs})
    assert len(mine) + len(theirs) == 40
    broker.leave(second)
    again = broker.poll(first, 100, 0)
    assert sorted((d.partition, d.offset) for d in again) == sorted(
        (d.partition, d.offset) for d in theirs
    )
    assert {d.attempt for d in again} == {2}


def test_a_silent_member_is_evicted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(broker_module, "SESSION_SECONDS", 0.05)
    broker = broker_with(Knobs(), partitions=2)
    silent, active = broker.join("d", "g", 30.0), broker.join("d", "g", 30.0)
    broker.publish("d", ["a", "b", "c", "d"], [b"a", b"b", b"c", b"d"])
    taken = broker.poll(silent, 100, 0)
    time.sleep(0.1)
    found: list[Delivery] = broker.poll(active, 100, 0)
    assert len(found) == 4 and taken  # its own partition, and the silent member's, again


def test_nacks_redeliver_then_dead_letter() -> None:
    broker = broker_with(Knobs(), max_deliveries=2)
    member = broker.join("d", "g", 30.0)
    dead = broker.join("d-dlq", "g", 30.0)
    broker.publish("d", ["k"], [b"poison"])
    for attempt in (1, 2):
        assert polled(broker, member) == [("poison", attempt)]
        broker.settle("d", "g", [], [(0, 0)])
    assert polled(broker, member) == []
    assert polled(broker, dead) == [("poison", 1)]
    assert broker.stats("d")["dead_lettered"] == 1


def test_an_expired_lease_is_redelivered() -> None:
    broker = broker_with(Knobs())
    member = broker.join("d", "g", 0.05)
    broker.publish("d", ["k"], [b"a"])
    assert polled(broker, member) == [("a", 1)]
    assert polled(broker, member, timeout=1.0) == [("a", 2)]


def test_a_bad_request_is_refused_not_fatal() -> None:
    broker = broker_with(Knobs())
    assert "error" in answer(broker, {"op": "nope"}, [])[0]
    assert "error" in answer(broker, {"op": "publish", "name": "missing", "keys": []}, [])[0]
    bad_ack = {"op": "settle", "name": "d", "group": "g", "ack_partitions": [7], "ack_offsets": [0]}
    assert "IndexError" in answer(broker, bad_ack, [])[0]["error"]
    assert answer(broker, {"op": "ping"}, [])[0]["test_double"] is True


# --- settings, targets and the stack ----------------------------------------------------------


def test_knobs_are_checked_with_file_and_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "brokerbench.yaml"
    config.write_text(
        "targets:\n"
        "  fine: {driver: memory, settings: {lose: 0.5}}\n"
        "  lossy:\n"
        "    driver: memory\n"
        "    settings:\n"
        "      lose: 1.5\n",
        encoding="utf-8",
    )
    monkeypatch.setenv("BROKERBENCH_CONFIG", str(config))
    with pytest.raises(
        UserError, match=rf"{re.escape(str(config))}:6: targets\.lossy\.settings\.lose: .*less"
    ):
        load_settings()
    config.write_text("targets:\n  typo: {driver: memory, settings: {loose: 0.1}}\n")
    with pytest.raises(
        UserError, match=rf"{re.escape(str(config))}:2: targets\.typo\.settings\.loose: Extra"
    ):
        load_settings()


def test_memory_is_a_target_without_a_proxy() -> None:
    settings = Settings()
    assert "memory" in target_names(settings)
    assert Ports().memory == DEFAULT_PORT
    with pytest.raises(UserError, match="no proxy"):
        open_driver("memory", settings, via_proxy=True)


def test_up_starts_memory_only_when_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BROKERBENCH_HOME", str(tmp_path))
    settings = Settings()
    assert "memory" not in [service.name for service in Stack(settings).services]
    assert [service.name for service in Stack(settings, ["memory"]).services] == ["memory"]
    assert open_provider(settings, ["memory"]).name == "local"
    # Once started (here: a pid file left by a crashed one), status and down see it; up still
    # starts it only when named.
    (tmp_path / "state" / "memory").mkdir(parents=True, exist_ok=True)  # service_dir made it
    (tmp_path / "state" / "memory" / "pid.json").write_text(
        '{"pid": 999999999, "started_at": 0, "argv": [], "log": "service.log"}'
    )
    stack = Stack(settings)
    assert "memory" in [service.name for service in stack.services]
    assert "memory" not in [service.name for service in stack.startable]
    assert {s.name: s.state for s in Stack(settings, ["memory"]).status()} == {"memory": "crashed"}
    with pytest.raises(UserError, match=r"test double.*--provider local"):
        _make("containers", settings, ["memory"], False)


def test_no_bundled_suite_runs_on_the_test_double() -> None:
    """The demo and the other bundled suites measure real brokers only."""
    suites = sorted((Path(__file__).parents[2] / "workloads" / "suites").glob("*.yaml"))
    assert any(path.stem == "demo" for path in suites)
    for path in suites:
        brokers = yaml.safe_load(path.read_text(encoding="utf-8"))["brokers"]
        assert "memory" not in brokers, path
