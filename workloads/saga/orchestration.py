"""Orchestration: the orchestrator sends each participant a command and hears its reply.

OrderCreated -> ReserveInventory -> InventoryReserved -> ProcessPayment -> PaymentProcessed ->
ScheduleShipment -> ShipmentScheduled -> CommitInventory + SagaCompleted (to Order). Failures:
InventoryRejected -> SagaCompensated; PaymentFailed -> ReleaseInventory; ShipmentFailed ->
RefundPayment -> PaymentRefunded -> ReleaseInventory; InventoryReleased -> SagaCompensated."""

from typing import ClassVar

from workloads.saga.messages import ORDER_CREATED
from workloads.saga.services import (
    Inventory,
    Orchestrator,
    OrderService,
    Payment,
    Route,
    SagaService,
    Shipping,
)

_REPLY = "orchestrator"


class OrchestratedInventory(Inventory):
    routes: ClassVar[dict[str, Route]] = {
        "ReserveInventory": Route(
            "reserve",
            on_success=(("InventoryReserved", _REPLY),),
            on_failure=(("InventoryRejected", _REPLY),),
        ),
        "ReleaseInventory": Route("release", on_success=(("InventoryReleased", _REPLY),)),
        "CommitInventory": Route("commit"),
    }


class OrchestratedPayment(Payment):
    routes: ClassVar[dict[str, Route]] = {
        "ProcessPayment": Route(
            "charge",
            on_success=(("PaymentProcessed", _REPLY),),
            on_failure=(("PaymentFailed", _REPLY),),
        ),
        "RefundPayment": Route("refund", on_success=(("PaymentRefunded", _REPLY),)),
    }


class OrchestratedShipping(Shipping):
    routes: ClassVar[dict[str, Route]] = {
        "ScheduleShipment": Route(
            "schedule",
            on_success=(("ShipmentScheduled", _REPLY),),
            on_failure=(("ShipmentFailed", _REPLY),),
        ),
    }


class OrchestratedOrder(OrderService):
    routes: ClassVar[dict[str, Route]] = {
        "SagaCompleted": Route("complete"),
        "SagaCompensated": Route("compensate"),
    }


def _then(*emits: tuple[str, str]) -> Route:
    return Route("advance", on_success=emits)


class SagaOrchestrator(Orchestrator):
    routes: ClassVar[dict[str, Route]] = {
        ORDER_CREATED: _then(("ReserveInventory", "inventory")),
        "InventoryReserved": _then(("ProcessPayment", "payment")),
        "InventoryRejected": _then(("SagaCompensated", "order")),
        "PaymentProcessed": _then(("ScheduleShipment", "shipping")),
        "PaymentFailed": _then(("ReleaseInventory", "inventory")),
        "ShipmentScheduled": _then(("CommitInventory", "inventory"), ("SagaCompleted", "order")),
        "ShipmentFailed": _then(("RefundPayment", "payment")),
        "PaymentRefunded": _then(("ReleaseInventory", "inventory")),
        "InventoryReleased": _then(("SagaCompensated", "order")),
    }


SERVICES: tuple[type[SagaService], ...] = (
    SagaOrchestrator,
    OrchestratedOrder,
    OrchestratedInventory,
    OrchestratedPayment,
    OrchestratedShipping,
)
