"""The saga's configuration, its orders and the messages the services exchange.

Every message carries the whole saga context (order id, the order, the time the order was
created), so each service can act on it alone and the Order service can time the saga."""

import json
import random
from dataclasses import dataclass, replace
from typing import Annotated, Literal

from pydantic import Field

from harness.flows.api import Event, FlowConfig, PoisonError

ServiceName = Literal["order", "inventory", "payment", "shipping", "orchestrator"]
Compensation = Literal["release", "refund"]


class SagaConfig(FlowConfig):
    keys: Annotated[int, Field(ge=1, le=1_000_000)] = 1000
    """Customers (the entry events' keys; Zipf-skewed by default)."""
    skus: Annotated[int, Field(ge=1, le=100_000)] = 50
    initial_stock: Annotated[int, Field(ge=0)] = 10_000
    """Units of each SKU before the run: a finite stock makes out-of-stock a natural failure."""
    max_items: Annotated[int, Field(ge=1, le=20)] = 3
    max_quantity: Annotated[int, Field(ge=1, le=100)] = 3
    payment_failure_rate: Annotated[float, Field(ge=0, le=1)] = 0.1
    """Fraction of orders whose payment is declined (decided by the generator)."""
    shipping_failure_rate: Annotated[float, Field(ge=0, le=1)] = 0.05
    """Fraction of orders whose shipment cannot be scheduled (decided by the generator)."""
    saga_timeout: Annotated[float, Field(gt=0)] = 30.0
    """Seconds from the order's creation within which its saga must reach a terminal state."""
    snapshot_every: Annotated[int, Field(ge=1)] = 50
    """The Inventory service records the stock every this many of its ledger entries."""
    dedup_disabled: tuple[ServiceName, ...] = ()
    """Services built WITHOUT their idempotence guard, for showing what the checks catch (with
    ``redeliver_rate``); never set it for a real measurement."""
    skip_compensation: Compensation | None = None
    """A compensation handler that does nothing but still reports success, for showing what
    the checks catch; never set it for a real measurement."""


@dataclass(frozen=True)
class Order:
    items: tuple[tuple[int, int], ...]
    """(SKU, quantity), SKUs distinct and sorted (reservations lock rows in SKU order)."""
    total_cents: int
    fail_payment: bool
    fail_shipping: bool

    def to_dict(self) -> dict[str, object]:
        return {
            "items": [list(item) for item in self.items],
            "total_cents": self.total_cents,
            "fail_payment": self.fail_payment,
            "fail_shipping": self.fail_shipping,
        }

    @classmethod
    def from_dict(cls, raw: dict[str, object]) -> "Order":
        items = raw["items"]
        assert isinstance(items, list)
        return cls(
            items=tuple((int(sku), int(quantity)) for sku, quantity in items),
            total_cents=int(str(raw["total_cents"])),
            fail_payment=bool(raw["fail_payment"]),
            fail_shipping=bool(raw["fail_shipping"]),
        )


def generate_order(config: SagaConfig, rng: random.Random) -> Order:
    """One order, drawn from ``rng`` only, so the checks can draw it again."""
    count = rng.randint(1, min(config.max_items, config.skus))
    skus = sorted(rng.sample(range(config.skus), count))
    items = tuple((sku, rng.randint(1, config.max_quantity)) for sku in skus)
    total = sum(quantity * unit_price_cents(sku) for sku, quantity in items)
    return Order(
        items=items,
        total_cents=total,
        fail_payment=rng.random() < config.payment_failure_rate,
        fail_shipping=rng.random() < config.shipping_failure_rate,
    )


def unit_price_cents(sku: int) -> int:
    return 199 + (sku * 7919) % 10_000


@dataclass(frozen=True)
class Message:
    type: str
    order_id: str
    started_ns: int
    """The intended send time of the OrderCreated event that began the saga."""
    order: Order

    def but(self, message_type: str) -> "Message":
        return replace(self, type=message_type)

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "type": self.type,
                "order_id": self.order_id,
                "started_ns": self.started_ns,
                "order": self.order.to_dict(),
            },
            separators=(",", ":"),
        ).encode()


ORDER_CREATED = "OrderCreated"


def order_created(order: Order) -> bytes:
    """The generator's entry event: the order alone; its id and start time are the envelope's."""
    return json.dumps(
        {"type": ORDER_CREATED, "order": order.to_dict()}, separators=(",", ":")
    ).encode()


def parse(event: Event) -> Message:
    """The message in ``event``; an entry OrderCreated gets the event's id as order id."""
    try:
        raw = json.loads(event.body)
        order = Order.from_dict(raw["order"])
        if raw["type"] == ORDER_CREATED and "order_id" not in raw:
            return Message(ORDER_CREATED, event.event_id, event.intended_ns, order)
        return Message(str(raw["type"]), str(raw["order_id"]), int(raw["started_ns"]), order)
    except (ValueError, KeyError, TypeError, AssertionError) as exc:
        raise PoisonError(f"malformed saga message: {exc}") from exc
