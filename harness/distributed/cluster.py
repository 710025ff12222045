"""The orchestrator's handle on the master and its workers, for a whole suite.

``Cluster`` starts the master agent (``master_agent.py``: Locust's ``MasterRunner`` in a gevent
process of its own), waits until the suite's ``distribution.workers`` workers joined, and
relays: messages to a worker, clock estimates, the return of a run's files. What the workers
say (progress lines, exits, a worker lost) goes to the run's ``PlacedChildren``
(``placed_children.py``) through ``listen``.
"""

import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

from harness.distributed.clock import ClockOffset
from harness.distributed.placement import Distribution, parse_bind
from harness.errors import UserError

AGENT_MODULE = "harness.distributed.master_agent"
LISTEN_SECONDS = 30.0
CLOCK_SECONDS = 30.0
WORKERS_SECONDS = 120.0
"""How long ``brokerbench run`` waits for the workers to join."""

Listener = Callable[[dict[str, Any]], None]
T = TypeVar("T")


@dataclass(frozen=True)
class Worker:
    name: str
    host: str


class Cluster:
    """The master agent process and the workers that joined it (in join order)."""

    def __init__(self, bind: tuple[str, int], distribution: Distribution, log: Path) -> None:
        self.bind = bind
        self.distribution = distribution
        self.log = log
        self.workers: list[Worker] = []
        self.lost: dict[str, str] = {}
        """Worker name -> why it was lost (for the rest of the suite)."""
        self._changed = threading.Condition()
        self._clocks: dict[str, dict[str, Any]] = {}
        self._collected: dict[tuple[str, str], dict[str, Any]] = {}
        self._listening: dict[str, Any] | None = None
        self._listeners: list[Listener] = []
        self._write = threading.Lock()
        self._agent: subprocess.Popen[str] | None = None

    @property
    def address(self) -> str:
        return f"{self.bind[0]}:{self.bind[1]}"

    def __enter__(self) -> Self:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("a", encoding="utf-8") as stderr:
            self._agent = subprocess.Popen(
                [sys.executable, "-m", AGENT_MODULE, self.bind[0], str(self.bind[1])],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
                start_new_session=True,  # Ctrl-C reaches the orchestrator, which quits it
            )
        threading.Thread(target=self._read, daemon=True).start()
        try:
            listening = self._wait(lambda: self._listening, LISTEN_SECONDS)
            if listening is None or listening.get("ev") == "fatal":
                why = "no answer" if listening is None else listening["message"]
                raise UserError(
                    f"the master could not listen on {self.address} ({why}): choose another "
                    "--master-bind HOST:PORT"
                )
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Quit the master agent: Locust tells every worker to quit."""
        agent = self._agent
        if agent is None or agent.poll() is not None:
            return
        try:
            self._send({"op": "quit"})
            assert agent.stdin is not None
            agent.stdin.close()
            agent.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            agent.kill()
            agent.wait(timeout=10)

    # --- the agent's lines -----------------------------------------------------------------

    def _read(self) -> None:
        assert self._agent is not None and self._agent.stdout is not None
        for raw in self._agent.stdout:
            try:
                event = json.loads(raw)
            except ValueError:
                continue
            self._on_event(event)
        with self._changed:  # the agent is gone: every worker with it
            for worker in self.workers:
                self.lost.setdefault(worker.name, "the master agent exited")
            self._changed.notify_all()
        for worker in self.workers:
            self._tell_listeners({"ev": "lost", "worker": worker.name, "why": "master exited"})

    def _on_event(self, event: dict[str, Any]) -> None:
        kind = event.get("ev")
        with self._changed:
            if kind in ("listening", "fatal"):
                self._listening = event
            elif kind == "joined":
                self.workers = [w for w in self.workers if w.name != event["worker"]]
                self.workers.append(Worker(event["worker"], event["host"]))
                self.lost.pop(event["worker"], None)
            elif kind == "lost":
                self.lost[event["worker"]] = event["why"]
                self.workers = [w for w in self.workers if w.name != event["worker"]]
            elif kind == "clock":
                self._clocks[event["worker"]] = event
            elif kind == "collected":
                self._collected[(event["worker"], event["run"])] = event
            self._changed.notify_all()
        if kind in ("msg", "lost"):
            self._tell_listeners(event)

    def _tell_listeners(self, event: dict[str, Any]) -> None:
        for listener in list(self._listeners):
            listener(event)

    def _wait(self, found: Callable[[], T | None], timeout: float) -> T | None:
        deadline = time.monotonic() + timeout
        with self._changed:
            while (value := found()) is None:
                left = deadline - time.monotonic()
                if left <= 0 or (self._agent is not None and self._agent.poll() is not None):
                    return found()
                self._changed.wait(min(left, 0.5))
            return value

    def _send(self, command: dict[str, Any]) -> None:
        assert self._agent is not None and self._agent.stdin is not None
        with self._write:
            self._agent.stdin.write(json.dumps(command) + "\n")
            self._agent.stdin.flush()

    # --- what a run uses -------------------------------------------------------------------

    def listen(self, listener: Listener) -> Callable[[], None]:
        """Hear the workers' messages and losses; returns the call that stops it."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def wait_for_workers(
        self, progress: Callable[[int, int], None], timeout: float = WORKERS_SECONDS
    ) -> list[Worker]:
        """Every one of the ``distribution.workers`` joined; a ``UserError`` naming the worker
        command when they do not within ``timeout``."""
        wanted = self.distribution.workers
        deadline = time.monotonic() + timeout
        seen = -1
        while time.monotonic() < deadline:
            if len(self.workers) != seen:
                seen = len(self.workers)
                progress(seen, wanted)
            if seen >= wanted:
                return self.workers[:wanted]
            self._wait(partial(self._joined_besides, seen), 1.0)
        raise UserError(
            f"{len(self.workers)} of {wanted} workers joined within {timeout:.0f} s: start "
            f"`brokerbench worker --master {self.address}` on each load machine"
        )

    def _joined_besides(self, seen: int) -> bool | None:
        return len(self.workers) != seen or None

    def send(self, worker: str, kind: str, data: dict[str, Any]) -> None:
        self._send({"op": "send", "worker": worker, "type": kind, "data": data})

    def clock(self, worker: str) -> ClockOffset:
        """``worker``'s clock offset, measured now (``clock.py``)."""
        with self._changed:
            self._clocks.pop(worker, None)
        self._send({"op": "clock", "worker": worker})
        answer = self._wait(lambda: self._clocks.get(worker), CLOCK_SECONDS)
        if answer is None or "error" in answer:
            why = "no answer" if answer is None else answer["error"]
            raise UserError(f"worker {worker}: could not measure its clock offset ({why})")
        return ClockOffset(answer["offset_ns"], answer["uncertainty_ns"], answer["samples"])

    def collect(self, worker: str, run: str, run_dir: Path, timeout: float) -> list[str]:
        """Ask ``worker`` for ``run``'s shards and logs (written into ``run_dir`` by the
        agent); the files returned. ``RuntimeError`` when the worker cannot send them."""
        self._send({"op": "collect", "worker": worker, "run": run, "dest": str(run_dir)})
        answer = self._wait(
            lambda: self._collected.get((worker, run)) or self._lost_answer(worker), timeout
        )
        if answer is None:
            raise RuntimeError(f"worker {worker} did not send its files within {timeout:.0f} s")
        if answer.get("error"):
            raise RuntimeError(str(answer["error"]))
        return [str(path) for path in answer.get("files", [])]

    def _lost_answer(self, worker: str) -> dict[str, Any] | None:
        why = self.lost.get(worker)
        return None if why is None else {"error": f"worker {worker} lost: {why}"}


@contextmanager
def open_cluster(
    distribution: Distribution, bind_text: str, output: Path, say: Callable[[str], None]
) -> Iterator[Cluster]:
    """The master listening on ``bind_text`` with every worker joined (``brokerbench run``);
    the agent's log is ``OUTPUT/master-agent.log``."""
    cluster = Cluster(parse_bind(bind_text), distribution, output / "master-agent.log")
    with cluster:

        def progress(joined: int, wanted: int) -> None:
            say(
                f"master on {cluster.address}: {joined} of {wanted} workers joined "
                f"(start `brokerbench worker --master {cluster.address}` on each load machine)"
            )

        workers = cluster.wait_for_workers(progress)
        say("workers: " + ", ".join(f"{worker.name} ({worker.host})" for worker in workers))
        yield cluster
