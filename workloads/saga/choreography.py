"""Choreography: each service reacts to the previous one's event and emits the next.

OrderCreated -> Inventory (reserve) -> InventoryReserved -> Payment (charge) -> PaymentProcessed
-> Shipping (schedule) -> ShipmentScheduled -> Order (COMPLETED) and Inventory (commit).
ShipmentScheduled is one event both consume: it goes to the ``shipments`` topic, which fans out
to the Order and Inventory services (``fan_out: on``); where the broker cannot fan out
(``off``: ElasticMQ) Shipping sends it to each one's inbox instead.
Failures walk back: ShipmentFailed -> Payment (refund) -> PaymentRefunded -> Inventory (release)
-> InventoryReleased -> Order (COMPENSATED); PaymentFailed -> Inventory (release);
InventoryRejected (out of stock) -> Order (COMPENSATED)."""

from typing import ClassVar

from workloads.saga.messages import ORDER_CREATED
from workloads.saga.services import (
    Inventory,
    OrderService,
    Payment,
    Route,
    SagaService,
    Shipping,
)

SHIPMENTS = "shipments"
FAN_OUT_INBOXES: dict[str, tuple[str, ...]] = {SHIPMENTS: ("inventory", "order")}
"""The fan-out topic, and the inboxes its events go to where the broker cannot fan out."""


class ChoreographedInventory(Inventory):
    topics: ClassVar[tuple[str, ...]] = ("inventory", SHIPMENTS)
    routes: ClassVar[dict[str, Route]] = {
        ORDER_CREATED: Route(
            "reserve",
            on_success=(("InventoryReserved", "payment"),),
            on_failure=(("InventoryRejected", "order"),),
        ),
        "PaymentFailed": Route("release", on_success=(("InventoryReleased", "order"),)),
        "PaymentRefunded": Route("release", on_success=(("InventoryReleased", "order"),)),
        "ShipmentScheduled": Route("commit"),
    }


class ChoreographedPayment(Payment):
    routes: ClassVar[dict[str, Route]] = {
        "InventoryReserved": Route(
            "charge",
            on_success=(("PaymentProcessed", "shipping"),),
            on_failure=(("PaymentFailed", "inventory"),),
        ),
        "ShipmentFailed": Route("refund", on_success=(("PaymentRefunded", "inventory"),)),
    }


class ChoreographedShipping(Shipping):
    fan_out_inboxes: ClassVar[dict[str, tuple[str, ...]]] = FAN_OUT_INBOXES
    routes: ClassVar[dict[str, Route]] = {
        "PaymentProcessed": Route(
            "schedule",
            on_success=(("ShipmentScheduled", SHIPMENTS),),
            on_failure=(("ShipmentFailed", "payment"),),
        ),
    }


class ChoreographedOrder(OrderService):
    topics: ClassVar[tuple[str, ...]] = ("order", SHIPMENTS)
    routes: ClassVar[dict[str, Route]] = {
        "ShipmentScheduled": Route("complete"),
        "InventoryReleased": Route("compensate"),
        "InventoryRejected": Route("compensate"),
    }


SERVICES: tuple[type[SagaService], ...] = (
    ChoreographedOrder,
    ChoreographedInventory,
    ChoreographedPayment,
    ChoreographedShipping,
)
