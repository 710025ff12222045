"""Faults on the harness's own load processes: a consumer killed mid-batch, a producer crash.

A killed consumer's unacknowledged deliveries come back through the broker's own mechanism
(Kafka: group rebalance after the session timeout; SQS: visibility timeout; Pub/Sub: ack
deadline); at the fault's end the runner starts a replacement consumer so the run can drain.
A crashed producer is not replaced: the rest of its schedule is never sent, and rows its
history had not flushed are missing (their deliveries can show up as phantoms).
"""

from chaos.faults.base import Fault
from chaos.state import Entry


class ConsumerKill(Fault):
    """SIGKILL a consumer process (``target``: its slot, default ``consumer-0``); start a
    replacement at the fault's end."""

    action = "consumer-kill"
    default_target = "consumer-0"

    def check(self) -> None:
        if self.context.consumers is None:
            raise RuntimeError("consumer-kill needs the runner's consumers in the context")

    def entries(self) -> list[Entry]:
        return [{"id": self.fault_id, "kind": "load-process", "label": self.target}]

    def apply(self) -> None:
        assert self.context.consumers is not None
        self.context.consumers.kill(self.target)

    def heal(self) -> None:
        assert self.context.consumers is not None
        self.context.consumers.restart(self.target)


class ProducerCrash(Fault):
    """SIGKILL a producer process (``target``: its slot, default ``producer-0``); not replaced."""

    action = "producer-crash"
    default_target = "producer-0"

    def check(self) -> None:
        if self.context.producers is None:
            raise RuntimeError("producer-crash needs the runner's producers in the context")

    def entries(self) -> list[Entry]:
        return [{"id": self.fault_id, "kind": "load-process", "label": self.target}]

    def apply(self) -> None:
        assert self.context.producers is not None
        self.context.producers.kill(self.target)

    def heal(self) -> None:
        """Nothing to undo: the producer's share of the schedule is gone."""
