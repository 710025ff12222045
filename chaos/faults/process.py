"""Process faults on the local stack's broker services: pause, crash, graceful restart.

Each acts on the broker's whole process group (``harness/stack/processes.py``). ``crash`` and
``restart`` start the service again at the fault's end and wait until it answers its protocol;
an in-memory broker (ElasticMQ, moto, the Pub/Sub emulator) comes back empty, so the fault is
marked ``non_durable`` and the run's destination is created again.
"""

import os
import signal

from chaos.faults.base import Fault, require_local_broker
from chaos.service_control import continue_service, pause_group, start_again
from chaos.state import Entry
from harness.stack import processes
from harness.stack.manager import Stack

IN_MEMORY_BROKERS = frozenset({"elasticmq", "moto", "pubsub"})
"""Local brokers that keep their state in memory only (lost when the process dies)."""


class ServiceFault(Fault):
    def check(self) -> None:
        require_local_broker(self)

    def _group(self) -> int:
        directory = Stack(self.context.settings).service(self.target).directory
        record = processes.recorded(directory)
        if record is None or not processes.is_alive(record):
            raise RuntimeError(f"{self.target} is not running: nothing to {self.action}")
        return record.pid


class Pause(ServiceFault):
    """SIGSTOP the broker; SIGCONT at the end (connections stay open, nothing answers)."""

    action = "pause"

    def entries(self) -> list[Entry]:
        return [{"id": self.fault_id, "kind": "paused", "service": self.target}]

    def apply(self) -> None:
        pause_group(self._group())

    def heal(self) -> None:
        continue_service(self.context.settings, self.target)


class _Restarting(ServiceFault):
    restarts_broker = True

    @property
    def non_durable(self) -> bool:
        return self.target in IN_MEMORY_BROKERS

    def entries(self) -> list[Entry]:
        return [{"id": self.fault_id, "kind": "stopped", "service": self.target}]

    def heal(self) -> None:
        start_again(self.context.settings, self.target)
        if self.non_durable and self.context.recreate_destination is not None:
            self.context.recreate_destination()


class Crash(_Restarting):
    """SIGKILL the broker's process group; start it again at the end."""

    action = "crash"

    def apply(self) -> None:
        group = self._group()
        os.killpg(group, signal.SIGCONT)  # a paused group would not die before it continues
        os.killpg(group, signal.SIGKILL)


class Restart(_Restarting):
    """Stop the broker gracefully (SIGTERM, SIGKILL after 15 s); start it again at the end."""

    action = "restart"

    def apply(self) -> None:
        self._group()
        processes.stop(Stack(self.context.settings).service(self.target).directory)
