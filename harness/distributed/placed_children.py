"""``PlacedChildren``: the run's ``Children``, each load process here or on a worker.

The run, its monitor and its load slots use it as they use ``Children`` (same methods): a
process placed on the master starts as always; one placed on a worker is started there by
``brokerbench worker`` (``worker_agent.py``) and stands here as a ``RemoteProcess`` fed by the
worker's messages (progress lines, exit). At the run's start each worker's clock offset is
measured; a ``start <ns>`` told to a remote producer is put in the worker's clock. At the end
(also after a failure) every process is stopped, each worker's shards and logs come back into
the run folder, the time columns are put on the master's clock (``shard_offsets.py``) and
``distribution.json`` records the workers, their offsets and the placement (result.json's
``distribution`` section).
"""

import json
import logging
import secrets
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from pydantic import BaseModel

from harness import redaction
from harness.atomic import write_text_atomically
from harness.distributed import messages as m
from harness.distributed.clock import UNCERTAINTY_BOUND_NS, ClockOffset
from harness.distributed.cluster import Cluster
from harness.distributed.placement import MASTER, Placement
from harness.distributed.returned_files import log_of, worker_shards
from harness.distributed.shard_offsets import correct_shards
from harness.errors import RunFailedError
from harness.history.shards import shard_path
from harness.load.plan import ProducerPlan
from harness.load.progress_line import parse
from harness.run.children import Child, Children, Role
from harness.run.result_model import DISTRIBUTION_FILE, DistributionSection, WorkerClock

COLLECT_SECONDS = 300.0
"""How long one worker may take to send a run's files back."""
STOP_EXTRA_SECONDS = 15.0
"""Beyond a stop's grace, for the worker's answer to arrive."""


class RemoteProcess:
    """A load process on a worker, as the run sees it (``ProcessHandle``)."""

    pid = -1
    stdin: IO[str] | None = None
    stdout: IO[str] | None = None

    def __init__(self, stop: Any) -> None:
        self.returncode: int | None = None
        self.exited = threading.Event()
        self._stop = stop

    def ended(self, code: int) -> None:
        if self.returncode is None:
            self.returncode = code
        self.exited.set()

    def poll(self) -> int | None:
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if not self.exited.wait(timeout):
            raise TimeoutError("a remote load process did not report its exit")
        assert self.returncode is not None
        return self.returncode

    def kill(self) -> None:
        self._stop(0.0)

    def send_signal(self, sig: int) -> None:
        self._stop(30.0)


class PlacedChildren(Children):
    """``Children`` spread over the master and the cluster's workers (``Placement``)."""

    def __init__(self, run_dir: Path, cluster: Cluster) -> None:
        super().__init__(run_dir)
        self.cluster = cluster
        self.run = secrets.token_hex(6)
        self.workers = {worker.name: worker.host for worker in cluster.workers}
        self.placement = Placement(cluster.distribution, list(self.workers))
        self.failures: dict[str, str] = {}
        self.lost: dict[str, str] = {}
        self.producer_machine: dict[int, str] = {}
        self.clocks: dict[str, ClockOffset] = {}
        self._unlisten = cluster.listen(self._on_event)
        missing = [name for name in cluster.lost if name not in self.workers]
        if len(self.workers) < cluster.distribution.workers:
            raise RunFailedError(
                f"{len(self.workers)} of {cluster.distribution.workers} workers left "
                f"(lost: {', '.join(f'{n} ({cluster.lost[n]})' for n in missing) or 'none'})"
            )
        for name in self.workers:
            self.clocks[name] = cluster.clock(name)

    # --- starting and talking --------------------------------------------------------------

    def start(
        self, label: str, role: Role, module: str, plan: BaseModel, *, stdin: bool = False
    ) -> Child:
        machine = self.placement.place(producer=role is Role.PRODUCER)
        if isinstance(plan, ProducerPlan):
            for producer in range(plan.first_producer, plan.first_producer + plan.producers):
                self.producer_machine[producer] = machine
        if machine == MASTER:
            return super().start(label, role, module, plan, stdin=stdin)
        process = RemoteProcess(lambda grace: self.stop([label], grace))
        child = Child(label, role, process, log_of(self.run_dir, machine, label), machine=machine)
        self.children[label] = child
        public, _ = redaction.split(plan.model_dump(mode="json"))  # secrets never leave
        self.cluster.send(
            machine,
            m.START,
            {"run": self.run, "label": label, "role": role.value, "module": module,
             "plan": public, "stdin": stdin},
        )  # fmt: skip
        if machine in self.lost:
            self._end_lost(machine)
        return child

    def tell(self, label: str, line: str) -> None:
        child = self.children[label]
        if child.machine is None:
            super().tell(label, line)
            return
        word, _, value = line.partition(" ")
        if word == "start":  # the schedule's start on the worker's clock
            line = f"start {int(value) + self.clocks[child.machine].offset_ns}"
        self.cluster.send(child.machine, m.TELL, {"run": self.run, "label": label, "line": line})

    def _on_event(self, event: dict[str, Any]) -> None:
        if event["ev"] == "lost":
            if event["worker"] in self.workers:
                self.lost.setdefault(event["worker"], event["why"])
                self._end_lost(event["worker"])
            return
        data = event["data"]
        if data.get("run") != self.run or data.get("label") not in self.children:
            return
        child = self.children[data["label"]]
        assert isinstance(child.process, RemoteProcess)
        if event["type"] == m.LINE:
            line = parse(data["line"])
            if line is not None:
                child.last = line
                for listener in self.listeners:
                    listener(child, line)
        elif event["type"] == m.EXIT:
            self.failures[child.label] = f"{child.machine}: {data['failure']}"
            child.process.ended(int(data["code"]))
        elif event["type"] == m.START_FAILED:
            self.failures[child.label] = f"{child.machine}: {child.label}: {data['error']}"
            child.process.ended(-1)

    def _end_lost(self, worker: str) -> None:
        why = f"worker {worker} ({self.workers.get(worker, '?')}) lost: {self.lost[worker]}"
        for child in list(self.children.values()):
            if child.machine == worker and isinstance(child.process, RemoteProcess):
                self.failures.setdefault(child.label, f"{child.label} on {why}")
                child.process.ended(-9)

    # --- watching and stopping -------------------------------------------------------------

    def check(self) -> None:
        for worker, why in self.lost.items():
            placed = [c.label for c in self.children.values() if c.machine == worker]
            raise RunFailedError(
                f"worker {worker} ({self.workers[worker]}) lost mid-run: {why} "
                f"(it ran {', '.join(placed) or 'nothing yet'})"
            )

    def failure(self, label: str) -> str:
        child = self.children[label]
        if child.machine is None:
            return super().failure(label)
        return self.failures.get(label, f"{label} on {child.machine} failed") + (
            f" (log: {child.log})"
        )

    def stop(self, labels: list[str], grace_seconds: float = 30.0) -> None:
        local = [label for label in labels if self.children[label].machine is None]
        super().stop(local, grace_seconds)
        remote = [self.children[label] for label in labels if label not in local]
        by_worker: dict[str, list[str]] = {}
        for child in remote:
            if not child.exited and child.machine is not None:
                by_worker.setdefault(child.machine, []).append(child.label)
        for worker, placed in by_worker.items():
            self.cluster.send(
                worker, m.STOP, {"run": self.run, "labels": placed, "grace": grace_seconds}
            )
        deadline = time.monotonic() + grace_seconds + STOP_EXTRA_SECONDS
        for child in remote:
            assert isinstance(child.process, RemoteProcess)
            if not child.process.exited.wait(max(0.0, deadline - time.monotonic())):
                self.failures.setdefault(child.label, f"{child.label}: no exit reported")
                child.process.ended(-9)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            super().__exit__(exc_type, exc, traceback)
        finally:
            self._unlisten()
            try:
                self._bring_back()
            except Exception:
                if exc is None:
                    raise
                # the run failed already: keep its reason, log this one
                logging.getLogger(__name__).exception("bringing the workers' files back")

    def _bring_back(self) -> None:
        """Every used worker's files into the run folder, on the master's clock, recorded."""
        used = sorted({c.machine for c in self.children.values() if c.machine is not None})
        problems: list[str] = []
        for worker in used:
            if worker in self.lost:
                problems.append(f"{worker}: lost, its shards did not come back")
                continue
            try:
                self.cluster.collect(worker, self.run, self.run_dir, COLLECT_SECONDS)
            except RuntimeError as exc:
                problems.append(str(exc))
        shard_machine = {
            shard_path(self.run_dir, "receives", child.label): MASTER
            for child in self.children.values()
            if child.machine is None and child.role.consumes
        }
        for worker in self.workers:
            shard_machine |= dict.fromkeys(worker_shards(self.run_dir, worker), worker)
        offsets = {worker: clock.offset_ns for worker, clock in self.clocks.items()}
        correct_shards(shard_machine, offsets, self.producer_machine)
        section = self.section(problems)
        write_text_atomically(
            self.run_dir / DISTRIBUTION_FILE, json.dumps(section.document(), indent=2) + "\n"
        )

    def section(self, problems: list[str]) -> DistributionSection:
        """result.json's ``distribution``: the workers, their clocks, who ran what."""
        placed: dict[str, dict[str, list[str]]] = {}
        for child in self.children.values():
            machine = child.machine or MASTER
            kind = "producers" if child.role is Role.PRODUCER else "consumers"
            placed.setdefault(machine, {"producers": [], "consumers": []})[kind].append(child.label)
        uncertainty = {MASTER: 0} | {n: c.uncertainty_ns for n, c in self.clocks.items()}
        pairs = [
            uncertainty[p] + uncertainty[c]
            for p, kinds in placed.items()
            if kinds["producers"]
            for c, other in placed.items()
            if other["consumers"] and c != p
        ]
        e2e = max(pairs, default=0)
        notes = list(problems)
        if e2e > UNCERTAINTY_BOUND_NS:
            notes.append(
                f"cross-machine latencies carry up to {e2e / 1e6:.3f} ms of clock uncertainty, "
                f"beyond the {UNCERTAINTY_BOUND_NS / 1e6:g} ms bound"
            )
        return DistributionSection(
            workers=[
                WorkerClock(
                    name=name,
                    host=self.workers[name],
                    offset_ns=clock.offset_ns,
                    uncertainty_ns=clock.uncertainty_ns,
                    samples=clock.samples,
                    producers=placed.get(name, {}).get("producers", []),
                    consumers=placed.get(name, {}).get("consumers", []),
                )
                for name, clock in self.clocks.items()
            ],
            master_producers=placed.get(MASTER, {}).get("producers", []),
            master_consumers=placed.get(MASTER, {}).get("consumers", []),
            e2e_uncertainty_ns=e2e,
            uncertainty_bound_ns=UNCERTAINTY_BOUND_NS,
            clock_uncertain=e2e > UNCERTAINTY_BOUND_NS,
            lost=dict(self.lost),
            notes=notes,
        )


def cluster_children(cluster: Cluster) -> Callable[[Path], Children]:
    """``RunRequest.make_children`` for a run on ``cluster``."""

    def make(run_dir: Path) -> Children:
        return PlacedChildren(run_dir, cluster)

    return make
