"""Targets: named broker endpoints a driver connects to.

Built in are the local stack's brokers (``kafka``, ``elasticmq``, ``moto``, ``pubsub``), each
reachable directly or through its toxiproxy proxy; users add their own clusters or cloud
accounts under ``targets:`` in brokerbench.yaml. ``memory`` is brokerbench's in-memory test
double (``brokerbench up --only memory``), well-behaved; targets with ``driver: memory`` and
knobs make it misbehave. It has no proxy and is never a local-stack broker.
"""

from typing import Any

from pydantic import BaseModel, ValidationError

from harness.drivers.base import Driver, fan_out_unavailable
from harness.drivers.registry import driver_class
from harness.errors import UserError
from harness.models import LOOPBACK
from harness.settings import LOCAL_DRIVERS as LOCAL_DRIVERS  # noqa: PLC0414 - re-exported
from harness.settings import TEST_DOUBLE as TEST_DOUBLE  # noqa: PLC0414 - re-exported
from harness.settings import Settings


def is_local_broker(target: str, settings: Settings) -> bool:
    """True only for a broker of the local stack, whose proxy and processes brokerbench
    controls; never for a target the user defined (settings refuse user targets named like a
    local broker, and this holds even for settings built without that validation)."""
    return target in LOCAL_DRIVERS and target not in settings.targets


def target_names(settings: Settings) -> list[str]:
    return sorted({*LOCAL_DRIVERS, TEST_DOUBLE, *settings.targets})


def _unknown_target(target: str, settings: Settings) -> UserError:
    brokers = sorted({*LOCAL_DRIVERS, *settings.targets})
    return UserError(
        f"unknown broker {target!r}: choose from {', '.join(brokers)}, or {TEST_DOUBLE} (the "
        "in-memory test double), or define it under targets: in brokerbench.yaml"
    )


def _defaults(driver: str, settings: Settings) -> dict[str, Any]:
    """Endpoint settings a target of ``driver`` gets from the stack's settings."""
    return {"port": settings.ports.memory} if driver == TEST_DOUBLE else {}


def _local_endpoint(target: str, settings: Settings, via_proxy: bool) -> dict[str, Any]:
    p = settings.ports
    if target == "kafka":
        cluster = settings.stack.kafka
        if cluster.is_cluster:
            if via_proxy:
                raise UserError(
                    "the local Kafka cluster (stack.kafka.nodes > 1) has no toxiproxy proxy: "
                    "use proxy: none"
                )
            return {"bootstrap_servers": cluster.bootstrap_servers(p.kafka)}
        return {"bootstrap_servers": f"{LOOPBACK}:{p.kafka_proxy if via_proxy else p.kafka}"}
    if target in ("elasticmq", "moto"):
        port = getattr(p, f"{target}_proxy" if via_proxy else target)
        endpoint: dict[str, Any] = {
            "endpoint_url": f"http://{LOOPBACK}:{port}",
            "access_key_id": "local",
            "secret_access_key": "local",
        }
        if target == "moto":
            # moto's ReceiveMessage is not atomic: concurrent receives on one queue can hand
            # out the same message twice (moto 5.2.5, sqs/models.py receive_message; 1 in 300
            # messages with 3 threads here). One receive in flight per consumer keeps the
            # driver from causing what the checkers would report as moto's redeliveries.
            endpoint["receive_threads"] = 1
            endpoint["sns"] = True  # moto serves SNS on the same port (ElasticMQ has none)
        return endpoint
    port = p.pubsub_proxy if via_proxy else p.pubsub
    return {"project": settings.pubsub_project, "emulator_host": f"{LOOPBACK}:{port}"}


def target_driver(target: str, settings: Settings) -> type[Driver]:
    """The driver class of ``target``; UserError if the target is unknown."""
    if target in settings.targets:
        return driver_class(settings.targets[target].driver)
    if target == TEST_DOUBLE or target in LOCAL_DRIVERS:
        return driver_class(LOCAL_DRIVERS.get(target, TEST_DOUBLE))
    raise _unknown_target(target, settings)


def open_driver(
    target: str,
    settings: Settings,
    *,
    via_proxy: bool = False,
    overrides: dict[str, Any] | None = None,
) -> Driver:
    """Connect to ``target``; UserError if it is unknown, misconfigured or unreachable.

    ``overrides`` replace fields of the target's endpoint settings (e.g. timeouts).
    """
    cls, endpoint = target_endpoint(target, settings, via_proxy=via_proxy, overrides=overrides)
    return cls(endpoint)


def fan_out_refusal(target: str, settings: Settings) -> str | None:
    """Why ``target`` cannot fan out a destination to several groups, or None if it can;
    decided from its driver and settings alone, before any broker I/O (plan time)."""
    cls, endpoint = target_endpoint(target, settings)
    return fan_out_unavailable(cls, endpoint)


def target_endpoint(
    target: str,
    settings: Settings,
    *,
    via_proxy: bool = False,
    overrides: dict[str, Any] | None = None,
) -> tuple[type[Driver], BaseModel]:
    """``target``'s driver class and validated endpoint settings, without connecting;
    UserError if it is unknown or misconfigured."""
    if target in settings.targets:
        if via_proxy:
            raise UserError(
                f"target {target!r} is external: only the local stack's brokers have a proxy"
            )
        external = settings.targets[target]
        cls = driver_class(external.driver)
        raw = _defaults(external.driver, settings) | external.settings
    elif target == TEST_DOUBLE:
        if via_proxy:
            raise UserError(
                "target 'memory' is the in-memory test double: it has no proxy (use proxy: none)"
            )
        cls, raw = driver_class(TEST_DOUBLE), _defaults(TEST_DOUBLE, settings)
    elif target in LOCAL_DRIVERS:
        cls, raw = driver_class(LOCAL_DRIVERS[target]), _local_endpoint(target, settings, via_proxy)
    else:
        raise _unknown_target(target, settings)
    try:
        endpoint = cls.endpoint_model.model_validate(raw | (overrides or {}))
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"])
        raise UserError(f"targets.{target}.settings.{field}: {first['msg']}") from exc
    return cls, endpoint
