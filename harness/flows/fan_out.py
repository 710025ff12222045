"""Deciding a flow's fan-out for one broker, before any broker I/O (plan time).

A flow whose topics several services consume (``Flow.subscribers``) fans them out where the
broker can (Kafka consumer groups, Pub/Sub subscriptions, SNS in front of SQS queues on moto
or AWS) and not where it cannot (ElasticMQ has no SNS). The suite resolves the workload's
``fan_out`` per broker, so the run's recorded params say which shape ran:

- ``auto``: ``on`` where the broker can fan out, ``off`` elsewhere (each fan-out topic then
  keeps its first consuming service only);
- ``on``: refused, with the broker's reason, where it cannot (a ``UserError``: exit 2);
- ``off``: as given.
"""

from harness.drivers.targets import fan_out_refusal
from harness.errors import UserError
from harness.flows.api import Flow, FlowConfig
from harness.settings import Settings


def resolve_fan_out(
    config: FlowConfig, flow: type[Flow], target: str, settings: Settings, *, where: str = ""
) -> FlowConfig:
    """``config`` with ``fan_out`` decided for ``target`` (``where``: the suite's file:line
    that a refusal names)."""
    if not flow.fans_out() or config.fan_out == "off":
        return config
    reason = fan_out_refusal(target, settings)
    if reason is None:
        return config.model_copy(update={"fan_out": "on"})
    if config.fan_out == "auto":
        return config.model_copy(update={"fan_out": "off"})
    prefix = f"{where}: " if where else ""
    raise UserError(
        f"{prefix}{flow.kind} asks for fan_out: on, but broker {target!r} cannot fan out: "
        f"{reason}; or set fan_out: auto (each topic keeps one consuming service there)"
    )
