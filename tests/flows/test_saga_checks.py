"""The saga's services and checks without a broker: sagas are driven in process through the
real services (each with its own SQLite database), then the checks judge the databases, first
as the services left them, then after planting each anomaly by hand."""

import time
from collections import deque
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
from sqlalchemy import Connection, delete, insert, select, update

from harness.checkers.verdict import Verdict
from harness.flows.api import Event, Flow, FlowState, Service, event_id, event_rng
from harness.flows.database import create_tables, open_engine
from workloads.saga.flow import OrchestratedSagaFlow, SagaFlow
from workloads.saga.messages import SagaConfig
from workloads.saga.tables import LEDGER, STOCK

RUN_ID = 7
ORDERS = 60
NAMES = ("saga-terminal", "saga-steps", "saga-conservation", "saga-idempotence")


def drive(flow: type[Flow], config: SagaConfig, databases: dict[str, Connection]) -> None:
    """Every entry event through the flow's services until no message is left, each emitted
    message delivered once to every service subscribed to its topic (a fan-out topic, such as
    the choreography's ``shipments``, reaches several), and every fifth one twice (a
    redelivery)."""
    subscribed: dict[str, list[Service]] = {}
    for service_class in flow.services:
        service = service_class(config)
        for topic in service.topics:
            subscribed.setdefault(topic, []).append(service)
    queue: deque[Event] = deque()
    now = time.time_ns()
    for seq in range(ORDERS):
        body = flow.generate(config, seq % 5, seq, event_rng(RUN_ID, 0, seq % 5, seq))
        entry = Event(flow.entry_topic, f"c{seq % 5}", event_id(0, seq % 5, seq), body, 1, now)
        queue.append(entry)
    emitted = 0
    while queue:
        event = queue.popleft()
        for service in subscribed[event.topic]:
            for delivery in range(2 if emitted % 5 == 0 else 1):
                db = databases[service.name]
                with db.begin():
                    emits = service.handle(db, event)
                if delivery == 0:
                    for emit in emits:
                        emitted += 1
                        queue.append(Event(emit.topic, emit.key, f"e-{emitted}", emit.body, 1, 0))


@pytest.fixture(params=[SagaFlow, OrchestratedSagaFlow], ids=["choreography", "orchestration"])
def flow(request: pytest.FixtureRequest) -> type[Flow]:
    chosen: type[Flow] = request.param
    return chosen


def open_databases(flow: type[Flow], tmp_path: Path, stack: ExitStack) -> dict[str, Connection]:
    databases = {}
    for service in flow.services:
        engine = open_engine(f"sqlite:///{tmp_path / service.name}.sqlite")
        stack.callback(engine.dispose)
        create_tables(engine, service.metadata)
        databases[service.name] = stack.enter_context(engine.connect())
    return databases


@pytest.fixture
def run(flow: type[Flow], tmp_path: Path) -> Iterator[tuple[SagaConfig, FlowState]]:
    # little stock and frequent failures: every path of the saga is taken
    config = SagaConfig(
        rate=10, skus=4, initial_stock=40, payment_failure_rate=0.2, shipping_failure_rate=0.2
    )
    with ExitStack() as stack:
        databases = open_databases(flow, tmp_path, stack)
        drive(flow, config, databases)
        sends = [(0, seq % 5, seq, "ok") for seq in range(ORDERS)]
        yield config, FlowState(run_id=RUN_ID, databases=databases, sends=sends)


def judge(flow: type[Flow], config: SagaConfig, state: FlowState) -> dict[str, Verdict]:
    for db in state.databases.values():
        db.commit()
    return {verdict.name: verdict for verdict in flow.check(config, state)}


def invalid(verdicts: dict[str, Verdict]) -> dict[str, set[object]]:
    return {
        name: {example["kind"] for example in v.examples}
        for name, v in verdicts.items()
        if v.valid is not True
    }


def ledger_row(db: Connection, action: str) -> dict[str, object]:
    row = db.execute(select(LEDGER).where(LEDGER.c.action == action).limit(1)).one()
    return dict(row._mapping)


def test_the_services_keep_every_invariant(
    flow: type[Flow], run: tuple[SagaConfig, FlowState]
) -> None:
    config, state = run
    verdicts = judge(flow, config, state)
    assert sorted(verdicts) == sorted(NAMES)
    assert invalid(verdicts) == {}
    counts = verdicts["saga-terminal"].counts
    assert counts["completed"] + counts["compensated"] == ORDERS
    # the run took every path: success, declined payment, failed shipment, out of stock
    assert min(counts["completed"], counts["payment_declined"], counts["shipping_failed"]) > 0
    assert counts["out_of_stock"] > 0
    assert counts["latency_max_us"] >= counts["latency_p50_us"]
    assert verdicts["saga-conservation"].counts["snapshots"] > 0


def test_a_lost_terminal_state_is_a_stuck_saga(
    flow: type[Flow], run: tuple[SagaConfig, FlowState]
) -> None:
    config, state = run
    order = state.databases["order"]
    victim = ledger_row(order, "COMPLETED")
    order.execute(delete(LEDGER).where(LEDGER.c.id == victim["id"]))
    assert invalid(judge(flow, config, state)) == {"saga-terminal": {"stuck"}}


def test_a_second_terminal_state_is_caught(
    flow: type[Flow], run: tuple[SagaConfig, FlowState]
) -> None:
    config, state = run
    order = state.databases["order"]
    second = ledger_row(order, "COMPLETED") | {"action": "COMPENSATED", "event_id": "x-1"}
    del second["id"]
    order.execute(insert(LEDGER), second)
    assert invalid(judge(flow, config, state)) == {"saga-terminal": {"several-terminal-states"}}


def test_a_late_saga_is_caught(flow: type[Flow], run: tuple[SagaConfig, FlowState]) -> None:
    config, state = run
    order = state.databases["order"]
    victim = ledger_row(order, "COMPENSATED")
    late = int(config.saga_timeout * 1e9) + 1
    order.execute(
        update(LEDGER).where(LEDGER.c.id == victim["id"]).values(at_ns=LEDGER.c.started_ns + late)
    )
    assert invalid(judge(flow, config, state)) == {"saga-terminal": {"late"}}


def test_a_skipped_release_is_an_uncompensated_step(
    flow: type[Flow], run: tuple[SagaConfig, FlowState]
) -> None:
    config, state = run
    inventory = state.databases["inventory"]
    victim = ledger_row(inventory, "release")
    inventory.execute(delete(LEDGER).where(LEDGER.c.id == victim["id"]))
    assert invalid(judge(flow, config, state)) == {"saga-steps": {"not-compensated"}}


def test_a_refund_without_a_charge_is_caught(
    flow: type[Flow], run: tuple[SagaConfig, FlowState]
) -> None:
    config, state = run
    payment = state.databases["payment"]
    declined = ledger_row(payment, "decline")
    refund = declined | {"action": "refund", "event_id": "x-2", "amount_cents": 1}
    del refund["id"]
    payment.execute(insert(LEDGER), refund)
    assert invalid(judge(flow, config, state)) == {
        "saga-steps": {"compensation-without-action"},
        "saga-conservation": {"money-mismatch"},
    }


def test_a_reapplied_message_breaks_idempotence_only(
    flow: type[Flow], run: tuple[SagaConfig, FlowState]
) -> None:
    config, state = run
    shipping = state.databases["shipping"]
    again = ledger_row(shipping, "ship")
    del again["id"]
    shipping.execute(insert(LEDGER), again)
    assert invalid(judge(flow, config, state)) == {"saga-idempotence": {"redelivery-applied-again"}}


def test_a_step_applied_by_two_messages_is_applied_twice(
    flow: type[Flow], run: tuple[SagaConfig, FlowState]
) -> None:
    config, state = run
    shipping = state.databases["shipping"]
    again = ledger_row(shipping, "ship") | {"event_id": "x-3"}
    del again["id"]
    shipping.execute(insert(LEDGER), again)
    assert invalid(judge(flow, config, state)) == {"saga-steps": {"applied-twice"}}


def test_stock_created_from_nothing_is_caught(
    flow: type[Flow], run: tuple[SagaConfig, FlowState]
) -> None:
    config, state = run
    inventory = state.databases["inventory"]
    inventory.execute(update(STOCK).where(STOCK.c.sku == 0).values(available=-1))
    assert invalid(judge(flow, config, state)) == {
        "saga-conservation": {"stock-not-conserved", "negative-stock"}
    }


def test_a_saga_whose_send_failed_is_judged_like_the_others(
    flow: type[Flow], run: tuple[SagaConfig, FlowState]
) -> None:
    config, state = run
    state.sends.pop()  # as if the send had failed yet reached the broker
    verdicts = judge(flow, config, state)
    assert invalid(verdicts) == {}
    assert verdicts["saga-terminal"].counts["started_after_failed_send"] == 1
    assert verdicts["saga-terminal"].counts["sagas"] == ORDERS


def test_a_saga_nobody_sent_is_a_phantom(
    flow: type[Flow], run: tuple[SagaConfig, FlowState]
) -> None:
    config, state = run
    order = state.databases["order"]
    phantom = ledger_row(order, "COMPLETED") | {"order_id": "not-an-order"}
    del phantom["id"]
    order.execute(insert(LEDGER), phantom)
    assert invalid(judge(flow, config, state)) == {"saga-terminal": {"phantom"}}
