"""The load slots of one run: the producer processes (the producers shared among
``config.processes``) and the consuming processes (``harness/run/topology.py``) it starts, by
slot label, and the nemesis's handle on each kind (kill a slot's process, start a replacement).
"""

from collections.abc import Callable

from harness.flows.api import Flow
from harness.history.shards import process_shard_paths, read_shard
from harness.load.plan import ProducerPlan, RunShared
from harness.load.throughput import ThroughputConfig
from harness.run.children import Children, Role
from harness.run.topology import ProcessPlan, replacement_plan

PRODUCER_MODULE = "harness.load.producer_process"
REPLACEMENT_ID_STEP = 1000
"""A replacement consumer's id: its slot's id + 1000 x the replacement's number."""


def producer_shares(config: ThroughputConfig) -> list[int]:
    """How many producers (Locust users) each producer process runs."""
    base, extra = divmod(config.producers, config.processes)
    return [base + (1 if index < extra else 0) for index in range(config.processes)]


def producer_plans(
    shared: RunShared, config: ThroughputConfig, flow: type[Flow] | None
) -> dict[str, ProcessPlan]:
    """``producer-<index>`` -> what to start: one producer process per share; each connects,
    says ``ready`` and waits to be told the schedule's start (``Children.tell``)."""
    plans = {}
    first = 0
    for index, count in enumerate(producer_shares(config)):
        plan = ProducerPlan(
            run=shared,
            process_index=index,
            first_producer=first,
            producers=count,
            total_producers=config.producers,
            steps=config.load_steps(),
            message_size=config.message_size,
            keys=config.keys,
            key_distribution=config.key_distribution,
            zipf_exponent=config.zipf_exponent,
            flow=None if flow is None else flow.kind,
            flow_params={} if flow is None else config.model_dump(mode="json"),
            schema_bodies=flow is None and config.payload_schema == "avro",
        )
        plans[f"producer-{index}"] = ProcessPlan(Role.PRODUCER, PRODUCER_MODULE, plan)
        first += count
    return plans


def slot_of(label: str) -> str:
    """The slot a replacement's label (``consumer-1003``) stands in for (``consumer-3``)."""
    prefix, index = label.rsplit("-", 1)
    return f"{prefix}-{int(index) % REPLACEMENT_ID_STEP}"


class LoadSlots:
    """The nemesis's handle on one kind of load process (``chaos.context.LoadProcesses``): kill
    the process in a slot (its exit is then expected) and start a replacement."""

    def __init__(
        self, children: Children, labels: list[str], start: Callable[[str, int], None] | None
    ) -> None:
        self.children = children
        self.current = {label: label for label in labels}
        self.killed: set[str] = set()
        self.final_received: dict[str, int] = {}
        """Deliveries a killed consumer recorded (its last progress line may be older)."""
        self._start = start
        self._generation = 0

    def labels(self) -> list[str]:
        return list(self.current)

    def kill(self, label: str) -> None:
        running = self.current[label]
        self.killed.add(running)
        child = self.children.children[running]
        child.process.kill()
        child.process.wait()
        parts = process_shard_paths(self.children.run_dir, "receives", running)
        if parts:
            self.final_received[running] = sum(
                batch.num_rows for part in parts for batch in read_shard(part)
            )

    def restart(self, label: str) -> None:
        if self._start is None:
            raise RuntimeError(f"{label}: this kind of load process is not restarted")
        self._generation += 1
        index = int(label.rsplit("-", 1)[1]) + REPLACEMENT_ID_STEP * self._generation
        replacement = f"{label.rsplit('-', 1)[0]}-{index}"
        self._start(replacement, index)
        self.current[label] = replacement


class Load:
    """What one run starts on its ``children``, by slot: ``producers`` and ``consumers``
    (label -> plan), and the nemesis's handles on both."""

    def __init__(
        self,
        children: Children,
        producers: dict[str, ProcessPlan],
        consumers: dict[str, ProcessPlan],
    ) -> None:
        self.children = children
        self.producers = producers
        self.consumers = consumers
        self.producer_slots = LoadSlots(children, list(producers), None)
        self.consumer_slots = LoadSlots(children, list(consumers), self.start_replacement)

    def start_producers(self) -> list[str]:
        """Start every producer process (each with a stdin to be told the start)."""
        for label, process in self.producers.items():
            self.children.start(label, process.role, process.module, process.plan, stdin=True)
        return list(self.producers)

    def start_consumers(self) -> list[str]:
        """Start every consuming process (plain consumers, or a flow's services)."""
        for label, process in self.consumers.items():
            self.children.start(label, process.role, process.module, process.plan)
        return list(self.consumers)

    def start_replacement(self, label: str, consumer_id: int) -> None:
        """Start ``label``, a replacement in the slot it names (``slot_of``), with the slot's
        plan and a new consumer id."""
        process = self.consumers[label if label in self.consumers else slot_of(label)]
        plan = replacement_plan(process.plan, consumer_id)
        self.children.start(label, process.role, process.module, plan)
