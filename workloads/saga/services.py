"""The saga's services: what each one does to its own database, whatever the style.

A service maps each message type it accepts to a **route**: one of its operations (which
returns whether the step succeeded) and the messages to emit on success or failure. The
choreography and orchestration variants differ only in their routes (``choreography.py``,
``orchestration.py``). Every operation is guarded by the idempotence check (the pair (saga,
message type) is handled once) in the same transaction, unless the config disables it."""

import time
from dataclasses import dataclass
from typing import ClassVar

from sqlalchemy import Connection, MetaData, insert, literal, select, update
from sqlalchemy.exc import IntegrityError

from harness.flows.api import Emit, Event, PoisonError, Service
from workloads.saga.messages import Message, Order, SagaConfig, ServiceName, parse
from workloads.saga.tables import HANDLED, LEDGER, SAGAS, STOCK, STOCK_SNAPSHOTS, metadata_with

TERMINAL_ACTIONS = ("COMPLETED", "COMPENSATED")


@dataclass(frozen=True)
class Route:
    operation: str
    """The name of the service's method ``(db, message, event_id) -> bool``."""
    on_success: tuple[tuple[str, str], ...] = ()
    """(message type, topic) pairs to emit when the operation succeeded."""
    on_failure: tuple[tuple[str, str], ...] = ()


class SagaService(Service):
    name: ClassVar[ServiceName]
    routes: ClassVar[dict[str, Route]]
    fan_out_inboxes: ClassVar[dict[str, tuple[str, ...]]] = {}
    """Fan-out topic -> the inboxes of its subscribers: where its messages go instead when the
    broker cannot fan out (``fan_out: off``)."""

    def __init__(self, config: SagaConfig) -> None:
        super().__init__(config)
        self.saga = config

    def handle(self, db: Connection, event: Event) -> list[Emit]:
        message = parse(event)
        route = self.routes.get(message.type)
        if route is None:
            raise PoisonError(f"{self.name} does not handle {message.type}")
        if self.name not in self.saga.dedup_disabled and not _first_time(db, message):
            return []
        succeeded: bool = getattr(self, route.operation)(db, message, event.event_id)
        emits = route.on_success if succeeded else route.on_failure
        return [
            Emit(topic, message.order_id, message.but(kind).to_json())
            for kind, to in emits
            for topic in self._destinations(to)
        ]

    def _destinations(self, topic: str) -> tuple[str, ...]:
        if self.config.fan_out == "off" and topic in self.fan_out_inboxes:
            return self.fan_out_inboxes[topic]
        return (topic,)

    def record(
        self, db: Connection, message: Message, action: str, event_id: str, amount: int = 0
    ) -> int:
        """Appends ``action`` to the ledger; returns its row id."""
        result = db.execute(
            insert(LEDGER),
            {
                "order_id": message.order_id,
                "action": action,
                "event_id": event_id,
                "amount_cents": amount,
                "started_ns": message.started_ns,
                "at_ns": time.time_ns(),
            },
        )
        key = result.inserted_primary_key
        assert key is not None
        return int(key[0])


def _first_time(db: Connection, message: Message) -> bool:
    """The idempotence guard: marks (saga, message type) handled; False if it already was."""
    seen = db.execute(
        select(HANDLED.c.order_id).where(
            HANDLED.c.order_id == message.order_id, HANDLED.c.message == message.type
        )
    ).first()
    if seen is not None:
        return False
    try:
        with db.begin_nested():
            db.execute(insert(HANDLED), {"order_id": message.order_id, "message": message.type})
    except IntegrityError:
        return False  # another consumer of this service handled it meanwhile (PostgreSQL)
    return True


class Inventory(SagaService):
    name: ClassVar[ServiceName] = "inventory"
    topics: ClassVar[tuple[str, ...]] = ("inventory",)
    metadata: ClassVar[MetaData] = metadata_with(HANDLED, LEDGER, STOCK, STOCK_SNAPSHOTS)

    def reserve(self, db: Connection, message: Message, event_id: str) -> bool:
        """Moves every item from available to reserved, or none (out of stock)."""
        self._ensure_stock(db, message.order)
        savepoint = db.begin_nested()
        for sku, quantity in message.order.items:
            moved = db.execute(
                update(STOCK)
                .where(STOCK.c.sku == sku, STOCK.c.available >= quantity)
                .values(
                    available=STOCK.c.available - quantity, reserved=STOCK.c.reserved + quantity
                )
            )
            if moved.rowcount != 1:
                savepoint.rollback()
                self._recorded(db, message, "reject", event_id)
                return False
        savepoint.commit()
        self._recorded(db, message, "reserve", event_id)
        return True

    def release(self, db: Connection, message: Message, event_id: str) -> bool:
        if self.saga.skip_compensation == "release":
            return True  # the broken handler the checks must catch
        for sku, quantity in message.order.items:
            db.execute(
                update(STOCK)
                .where(STOCK.c.sku == sku)
                .values(
                    available=STOCK.c.available + quantity, reserved=STOCK.c.reserved - quantity
                )
            )
        self._recorded(db, message, "release", event_id)
        return True

    def commit(self, db: Connection, message: Message, event_id: str) -> bool:
        """The order shipped: its reserved units leave the warehouse."""
        for sku, quantity in message.order.items:
            db.execute(
                update(STOCK)
                .where(STOCK.c.sku == sku)
                .values(reserved=STOCK.c.reserved - quantity, shipped=STOCK.c.shipped + quantity)
            )
        self._recorded(db, message, "commit", event_id)
        return True

    def _recorded(self, db: Connection, message: Message, action: str, event_id: str) -> None:
        entry = self.record(db, message, action, event_id)
        if entry % self.saga.snapshot_every == 0:
            db.execute(
                insert(STOCK_SNAPSHOTS).from_select(
                    ["snapshot", "sku", "available", "reserved", "shipped"],
                    select(
                        literal(entry), STOCK.c.sku, STOCK.c.available, STOCK.c.reserved,
                        STOCK.c.shipped,
                    ),
                )
            )  # fmt: skip

    def _ensure_stock(self, db: Connection, order: Order) -> None:
        for sku, _ in order.items:
            if db.execute(select(STOCK.c.sku).where(STOCK.c.sku == sku)).first() is not None:
                continue
            try:
                with db.begin_nested():
                    db.execute(
                        insert(STOCK),
                        {
                            "sku": sku,
                            "available": self.saga.initial_stock,
                            "reserved": 0,
                            "shipped": 0,
                        },
                    )
            except IntegrityError:
                pass  # another consumer created it first


class Payment(SagaService):
    name: ClassVar[ServiceName] = "payment"
    topics: ClassVar[tuple[str, ...]] = ("payment",)
    metadata: ClassVar[MetaData] = metadata_with(HANDLED, LEDGER)

    def charge(self, db: Connection, message: Message, event_id: str) -> bool:
        if message.order.fail_payment:
            self.record(db, message, "decline", event_id)
            return False
        self.record(db, message, "charge", event_id, message.order.total_cents)
        return True

    def refund(self, db: Connection, message: Message, event_id: str) -> bool:
        if self.saga.skip_compensation == "refund":
            return True  # the broken handler the checks must catch
        self.record(db, message, "refund", event_id, message.order.total_cents)
        return True


class Shipping(SagaService):
    name: ClassVar[ServiceName] = "shipping"
    topics: ClassVar[tuple[str, ...]] = ("shipping",)
    metadata: ClassVar[MetaData] = metadata_with(HANDLED, LEDGER)

    def schedule(self, db: Connection, message: Message, event_id: str) -> bool:
        if message.order.fail_shipping:
            self.record(db, message, "ship-failed", event_id)
            return False
        self.record(db, message, "ship", event_id)
        return True


class OrderService(SagaService):
    """Records each saga's terminal state and the time it was reached."""

    name: ClassVar[ServiceName] = "order"
    topics: ClassVar[tuple[str, ...]] = ("order",)
    metadata: ClassVar[MetaData] = metadata_with(HANDLED, LEDGER)

    def complete(self, db: Connection, message: Message, event_id: str) -> bool:
        self.record(db, message, "COMPLETED", event_id)
        return True

    def compensate(self, db: Connection, message: Message, event_id: str) -> bool:
        self.record(db, message, "COMPENSATED", event_id)
        return True


class Orchestrator(SagaService):
    """Drives each saga by commands; its ``sagas`` table holds where each one stands."""

    name: ClassVar[ServiceName] = "orchestrator"
    topics: ClassVar[tuple[str, ...]] = ("orchestrator",)
    metadata: ClassVar[MetaData] = metadata_with(HANDLED, LEDGER, SAGAS)

    def advance(self, db: Connection, message: Message, event_id: str) -> bool:
        now = time.time_ns()
        known = db.execute(
            update(SAGAS)
            .where(SAGAS.c.order_id == message.order_id)
            .values(state=message.type, updated_ns=now)
        )
        if known.rowcount == 0:
            db.execute(
                insert(SAGAS),
                {"order_id": message.order_id, "state": message.type, "updated_ns": now},
            )
        self.record(db, message, message.type, event_id)
        return True
