"""Choreography: each service reacts to the previous one's event and emits the next.

OrderCreated -> Inventory (reserve) -> InventoryReserved -> Payment (charge) -> PaymentProcessed
-> Shipping (schedule) -> ShipmentScheduled -> Order (COMPLETED) and Inventory (commit).
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


class ChoreographedInventory(Inventory):
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
    routes: ClassVar[dict[str, Route]] = {
        "PaymentProcessed": Route(
            "schedule",
            on_success=(("ShipmentScheduled", "inventory"), ("ShipmentScheduled", "order")),
            on_failure=(("ShipmentFailed", "payment"),),
        ),
    }


class ChoreographedOrder(OrderService):
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
