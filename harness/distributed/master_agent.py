"""The master's end of the control channel: a Locust ``MasterRunner`` in its own process.

The orchestrator (``brokerbench run``) uses threads and blocking broker clients and never
imports gevent; Locust's runners live on gevent (``import locust`` monkey-patches the process).
So the master runner runs here, in a child process of the orchestrator
(``python -m harness.distributed.master_agent HOST PORT``), which relays between:

- the orchestrator: one JSON object a line on stdin (``op``: ``send``, ``clock``, ``collect``,
  ``quit``) and on stdout (``ev``: ``listening``, ``joined``, ``lost``, ``msg``, ``clock``,
  ``collected``, ``fatal``), like every load process's progress lines;
- the workers: Locust's own messages (``runner.send_message`` / ``register_message``, msgpack
  over ZeroMQ), with Locust's heartbeats telling a worker that went silent (state ``missing``).

It also writes the history shards and logs the workers send back, chunk by chunk, into the
run folder (each file written under a temporary name, renamed into place when complete).
The agent quits when its stdin closes (the orchestrator is gone): Locust then tells the
workers to quit, and they stop their load processes.
"""

import json
import sys
import time
from pathlib import Path
from typing import Any

import gevent
import locust  # noqa: F401 - first: monkey-patches the process for gevent
from gevent.event import AsyncResult
from gevent.fileobject import FileObjectPosix
from locust.env import Environment
from locust.runners import STATE_MISSING, MasterRunner

from harness.distributed import messages as m
from harness.distributed.clock import ROUNDS, ClockOffset, measure
from harness.distributed.returned_files import ReturnedFile, destination_of

CLOCK_TIMEOUT_SECONDS = 5.0
"""One ping's answer may take this long before the estimate gives up."""
WATCH_SECONDS = 0.5


class MasterAgent:
    def __init__(self, runner: MasterRunner) -> None:
        self.runner = runner
        self.names: dict[str, str] = {}
        """Locust client id -> worker name (from its hello)."""
        self.hosts: dict[str, str] = {}
        self.lost: set[str] = set()
        self.pongs: dict[int, AsyncResult] = {}
        self.next_ping = 0
        self.incoming: dict[str, ReturnedFile] = {}
        """Files being received, by worker name + path."""
        self.collect_dest: dict[tuple[str, str], Path] = {}
        """(worker, run) -> the run folder its files go to."""
        for kind in (m.HELLO, m.PONG, m.LINE, m.EXIT, m.CHUNK, m.COLLECTED, m.START_FAILED):
            runner.register_message(kind, self._on_message)

    # --- to the orchestrator ---------------------------------------------------------------

    @staticmethod
    def emit(event: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(event) + "\n")
        sys.stdout.flush()

    # --- from the workers ------------------------------------------------------------------

    def client_of(self, name: str) -> str | None:
        return next((client for client, known in self.names.items() if known == name), None)

    def _on_message(self, environment: Environment, msg: Any, **_: Any) -> None:
        client, data = msg.node_id, msg.data or {}
        if msg.type == m.HELLO:
            self._hello(client, data)
            return
        name = self.names.get(client)
        if name is None:
            return
        if msg.type == m.PONG:
            waiting = self.pongs.pop(int(data["id"]), None)
            if waiting is not None:
                waiting.set(int(data["t"]))
        elif msg.type == m.CHUNK:
            self._chunk(name, client, data)
        elif msg.type == m.COLLECTED:
            dest = self.collect_dest.pop((name, data["run"]), None)
            files = [] if dest is None else [str(p) for p in data.get("files", [])]
            self.emit({"ev": "collected", "worker": name, "run": data["run"], "files": files,
                       "error": data.get("error")})  # fmt: skip
        else:
            self.emit({"ev": "msg", "worker": name, "type": msg.type, "data": data})

    def _hello(self, client: str, data: dict[str, Any]) -> None:
        name = str(data["name"])
        taken = self.client_of(name)
        if taken is not None and taken != client and name not in self.lost:
            self.runner.send_message(
                m.REFUSE, {"reason": f"another worker is named {name!r}: give --name"}, client
            )
            return
        self.names[client] = name
        self.hosts[client] = str(data.get("host", ""))
        self.lost.discard(name)
        self.emit({"ev": "joined", "worker": name, "host": self.hosts[client]})

    def _chunk(self, name: str, client: str, data: dict[str, Any]) -> None:
        run, path = str(data["run"]), str(data["path"])
        dest = self.collect_dest.get((name, run))
        if dest is not None:
            key = f"{name}/{path}"
            if key not in self.incoming:
                self.incoming[key] = ReturnedFile(destination_of(dest, name, path))
            self.incoming[key].write(bytes(data["data"]))
            if data.get("last"):
                self.incoming.pop(key).finish()
        self.runner.send_message(m.CHUNK_ACK, {"run": run}, client)

    def watch(self) -> None:
        """Report a worker Locust marked missing (no heartbeat) or that left."""
        while True:
            gevent.sleep(WATCH_SECONDS)
            present = {client.id: client for client in self.runner.clients.all}
            for client, name in list(self.names.items()):
                if name in self.lost:
                    continue
                node = present.get(client)
                if node is None or node.state == STATE_MISSING:
                    why = "it quit" if node is None else "its heartbeats stopped"
                    self.lost.add(name)
                    self.emit({"ev": "lost", "worker": name, "why": why})

    # --- from the orchestrator -------------------------------------------------------------

    def handle(self, command: dict[str, Any]) -> None:
        op = command["op"]
        client = self.client_of(str(command.get("worker", "")))
        if op == "quit":
            raise SystemExit(0)
        if client is None:
            return
        if op == "send":
            self.runner.send_message(command["type"], command.get("data"), client)
        elif op == "clock":
            gevent.spawn(self._clock, command["worker"], client)
        elif op == "collect":
            self.collect_dest[(command["worker"], command["run"])] = Path(command["dest"])
            self.runner.send_message(m.COLLECT, {"run": command["run"]}, client)

    def _clock(self, name: str, client: str) -> None:
        def round_trip() -> int:
            self.next_ping += 1
            answer: AsyncResult = AsyncResult()
            self.pongs[self.next_ping] = answer
            self.runner.send_message(m.PING, {"id": self.next_ping}, client)
            return int(answer.get(timeout=CLOCK_TIMEOUT_SECONDS))

        try:
            offset: ClockOffset = measure(round_trip, time.time_ns, ROUNDS)
        except gevent.Timeout:
            self.emit({"ev": "clock", "worker": name, "error": "no answer to a clock ping"})
            return
        self.emit({"ev": "clock", "worker": name, "offset_ns": offset.offset_ns,
                   "uncertainty_ns": offset.uncertainty_ns, "samples": offset.samples})  # fmt: skip


def main() -> None:
    host, port = sys.argv[1], int(sys.argv[2])
    environment = Environment(user_classes=[])
    try:
        runner = environment.create_master_runner(host, port)
    except BaseException as exc:  # Locust logs a busy port and exits
        MasterAgent.emit({"ev": "fatal", "message": f"cannot listen on {host}:{port}: {exc}"})
        raise SystemExit(2) from exc
    agent = MasterAgent(runner)
    gevent.spawn(agent.watch)
    agent.emit({"ev": "listening", "host": host, "port": port})
    stdin = FileObjectPosix(sys.stdin.fileno(), "r", close=False)
    try:
        for raw in stdin:
            if raw.strip():
                agent.handle(json.loads(raw))
    except SystemExit:
        pass
    finally:
        runner.quit()  # tells every worker to quit: they stop their load processes


if __name__ == "__main__":
    main()
