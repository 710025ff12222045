"""What a suite with a ``distribution:`` cannot run (yet), refused before any broker I/O, each
in one line naming the fix (docs/distributed.md, "Limits")."""

from pathlib import Path

from chaos.scenario import Scenario
from harness import redaction
from harness.errors import UserError
from harness.load.throughput import ThroughputConfig
from harness.settings import Settings
from harness.suite import Suite
from harness.yamlconfig import where


def refuse_undistributable(
    path: Path,
    suite: Suite,
    configs: dict[str, ThroughputConfig],
    scenarios: list[Scenario],
    settings: Settings,
) -> None:
    distribution = suite.distribution
    if distribution is None:
        return
    here = where(path, ("distribution",))
    for entry in suite.workloads:
        if entry.kind != "throughput":
            raise UserError(
                f"{here}: distribution: workload {entry.name!r} is a {entry.kind} flow; only "
                "the throughput workload runs across machines: run it without distribution"
            )
        if configs[entry.name].payload_schema == "avro":
            raise UserError(
                f"{here}: distribution: workload {entry.name!r} has payload_schema: avro, "
                "which runs on one machine only: remove distribution or payload_schema"
            )
    faulted = [scenario.name for scenario in scenarios if scenario.faults]
    if faulted:
        raise UserError(
            f"{here}: distribution: scenario {faulted[0]!r} has faults, which run on one "
            "machine only: use scenarios: [baseline] with distribution"
        )
    remote = "workers" in (distribution.producers, distribution.consumers)
    for broker in suite.brokers:
        _, hidden = redaction.split(settings.for_target(broker).model_dump(mode="json"))
        if remote and hidden:
            raise UserError(
                f"{here}: distribution: target {broker!r} needs secrets, which are never sent "
                "to workers: use a target without credentials, or run it on one machine"
            )
