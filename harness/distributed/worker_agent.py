"""``brokerbench worker --master HOST:PORT``: a load machine's agent.

A Locust ``WorkerRunner`` connected to the master's runner (``master_agent.py``); it never
spawns a Locust user. When the master says so it starts the ordinary load processes
(``python -m harness.load.producer_process PLAN.json`` ...) with the ``Children`` class every
run uses, in a temporary run folder of its own, so the hot path and its CPU accounting are those
of a single-machine run. It forwards each process's progress lines and exit, relays lines to
their stdin and stop requests, and at the run's end sends their history shards and logs back.

The broker addresses come from this machine's own settings (brokerbench.yaml, its environment),
never from the master: a plan's ``settings`` and ``run_dir`` are replaced here.

When the master quits, or is silent for ``MASTER_SILENCE_SECONDS`` (killed, or the network
cut), the agent stops every load process it started and exits.
"""

import contextlib
import ctypes
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import gevent
import locust  # noqa: F401 - first: monkey-patches the process for gevent
from gevent.event import Event
from locust.env import Environment
from locust.runners import WorkerRunner
from pydantic import BaseModel

from harness.distributed import messages as m
from harness.load.plan import ConsumerPlan, ProducerPlan
from harness.load.progress_line import ProgressLine
from harness.run.children import Child, Children, Role
from harness.settings import load_settings

MASTER_SILENCE_SECONDS = 10.0
"""No heartbeat from the master for this long: it is gone; stop everything."""
PRODUCER_MODULE = "harness.load.producer_process"
PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In a load process before it starts: SIGTERM when the agent dies, even by SIGKILL
    (Linux's PR_SET_PDEATHSIG), so a killed worker leaves no load process behind."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class ReportingChildren(Children):
    """``Children`` that tell the agent when a process's output has ended (it exited), and
    whose processes die with the agent."""

    preexec = staticmethod(_die_with_parent)

    def __init__(self, run_dir: Path, on_end: Any) -> None:
        super().__init__(run_dir)
        self._on_end = on_end

    def _read(self, child: Child) -> None:
        super()._read(child)
        child.process.wait()
        self._on_end(child)


class WorkerAgent:
    def __init__(self, runner: WorkerRunner, name: str, master_host: str) -> None:
        self.runner = runner
        self.name = name
        self.master_host = master_host
        self.runs: dict[str, ReportingChildren] = {}
        self.chunk_acked = Event()
        self.finished = Event()
        self.refused: str | None = None
        handlers = {
            m.PING: self._ping,
            m.START: self._start,
            m.TELL: self._tell,
            m.STOP: self._stop,
            m.COLLECT: self._collect,
            m.CHUNK_ACK: lambda data: self.chunk_acked.set(),
            m.REFUSE: self._refuse,
        }
        for kind, handler in handlers.items():
            runner.register_message(kind, self._dispatch(handler), concurrent=kind != m.PING)

    def send(self, kind: str, data: dict[str, Any]) -> None:
        self.runner.send_message(kind, data)

    @staticmethod
    def _dispatch(handler: Any) -> Any:
        def listener(environment: Environment, msg: Any, **_: Any) -> None:
            handler(msg.data or {})

        return listener

    def hello(self) -> None:
        self.send(m.HELLO, {"name": self.name, "host": self._address(), "pid": os.getpid()})

    def _address(self) -> str:
        """This machine's address on the route to the master (what the master sees)."""
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
                probe.connect((self.master_host, 9))
                return str(probe.getsockname()[0])
        except OSError:
            return socket.gethostname()

    # --- the master's requests -------------------------------------------------------------

    def _ping(self, data: dict[str, Any]) -> None:
        self.send(m.PONG, {"id": data["id"], "t": time.time_ns()})

    def _children(self, run: str) -> ReportingChildren:
        if run not in self.runs:
            folder = Path(tempfile.mkdtemp(prefix=f"brokerbench-worker-{run}-"))
            self.runs[run] = ReportingChildren(folder, lambda child: self._ended(run, child))
            self.runs[run].listeners.append(lambda child, line: self._line(run, child, line))
        return self.runs[run]

    def _line(self, run: str, child: Child, line: ProgressLine) -> None:
        raw = line.model_dump_json(exclude_defaults=True)
        self.send(m.LINE, {"run": run, "label": child.label, "line": raw})

    def _ended(self, run: str, child: Child) -> None:
        children = self.runs.get(run)
        failure = children.failure(child.label) if children is not None else ""
        self.send(
            m.EXIT,
            {"run": run, "label": child.label, "code": child.process.returncode,
             "failure": failure},
        )  # fmt: skip

    def _start(self, data: dict[str, Any]) -> None:
        run, label = str(data["run"]), str(data["label"])
        children = self._children(run)
        try:
            plan = self._local_plan(data["module"], data["plan"], children.run_dir)
            children.start(label, Role(data["role"]), data["module"], plan, stdin=data["stdin"])
        except Exception as exc:
            self.send(m.START_FAILED, {"run": run, "label": label, "error": str(exc)[:500]})

    @staticmethod
    def _local_plan(module: str, document: dict[str, Any], run_dir: Path) -> BaseModel:
        """The master's plan with this machine's run folder and its own broker settings."""
        target = document["run"]["target"]
        local = load_settings().for_target(target).model_dump(mode="json")
        document = document | {
            "run": document["run"] | {"run_dir": str(run_dir), "settings": local}
        }
        model: type[BaseModel] = ProducerPlan if module == PRODUCER_MODULE else ConsumerPlan
        return model.model_validate(document)

    def _tell(self, data: dict[str, Any]) -> None:
        children = self.runs.get(str(data["run"]))
        if children is not None and data["label"] in children.children:
            children.tell(str(data["label"]), str(data["line"]))

    def _stop(self, data: dict[str, Any]) -> None:
        children = self.runs.get(str(data["run"]))
        if children is not None:
            children.stop(list(data["labels"]), grace_seconds=float(data["grace"]))

    def _collect(self, data: dict[str, Any]) -> None:
        run = str(data["run"])
        children = self.runs.pop(run, None)
        if children is None:
            self.send(m.COLLECTED, {"run": run, "files": [], "error": None})
            return
        error = None
        sent: list[str] = []
        try:
            children.stop_all()
            for path in self._returned(children.run_dir):
                self._send_file(run, children.run_dir, path)
                sent.append(path.relative_to(children.run_dir).as_posix())
        except Exception as exc:
            error = f"{self.name}: sending its files back failed: {exc}"
        finally:
            shutil.rmtree(children.run_dir, ignore_errors=True)
        self.send(m.COLLECTED, {"run": run, "files": sent, "error": error})

    @staticmethod
    def _returned(run_dir: Path) -> list[Path]:
        return sorted((run_dir / "history" / "shards").glob("*.arrow")) + sorted(
            (run_dir / "logs").glob("*.log")
        )

    def _send_file(self, run: str, run_dir: Path, path: Path) -> None:
        relative = path.relative_to(run_dir).as_posix()
        with path.open("rb") as source:
            piece = source.read(m.CHUNK_BYTES)
            while True:
                following = source.read(m.CHUNK_BYTES)
                self.chunk_acked.clear()
                self.send(m.CHUNK, {"run": run, "path": relative, "data": piece,
                                    "last": not following})  # fmt: skip
                if not self.chunk_acked.wait(timeout=30):
                    raise TimeoutError(f"the master did not acknowledge a piece of {relative}")
                if not following:
                    return
                piece = following

    def _refuse(self, data: dict[str, Any]) -> None:
        self.refused = str(data.get("reason", "refused by the master"))
        self.finished.set()

    # --- ending ----------------------------------------------------------------------------

    def watch_master(self) -> None:
        """Finish when the master quit (Locust killed the runner's greenlets) or went silent."""
        while not self.finished.is_set():
            gevent.sleep(0.5)
            heard = self.runner.last_heartbeat_timestamp
            silent = heard is not None and time.time() - heard > MASTER_SILENCE_SECONDS
            if silent or not self.runner.greenlet:
                self.finished.set()

    def stop_everything(self) -> None:
        for children in list(self.runs.values()):
            children.stop_all()
            shutil.rmtree(children.run_dir, ignore_errors=True)
        self.runs.clear()


def run_worker(master: tuple[str, int], name: str) -> int:
    """Serve the master until it quits; the exit code (2: refused or never connected)."""
    environment = Environment(user_classes=[])
    host, port = master
    try:  # Locust retries until the master answers (about 5 minutes)
        runner = environment.create_worker_runner(host, port)
    except ConnectionError:
        print(f"no master answered at {host}:{port}: start `brokerbench run`", file=sys.stderr)
        return 2
    agent = WorkerAgent(runner, name, host)
    agent.hello()
    print(f"worker {name}: connected to the master at {host}:{port}", file=sys.stderr, flush=True)
    watcher = gevent.spawn(agent.watch_master)
    try:
        agent.finished.wait()
    except KeyboardInterrupt:
        pass
    finally:
        watcher.kill()
        agent.stop_everything()
        with contextlib.suppress(Exception):  # the connection may already be gone
            runner.quit()
    if agent.refused:
        print(f"worker {name}: {agent.refused}", file=sys.stderr)
        return 2
    return 0


def default_name() -> str:
    """The host name and this process's id: distinct for two workers on one machine."""
    host = "".join(c if c.isalnum() or c in "_-" else "-" for c in socket.gethostname())
    return f"{host or 'worker'}-{os.getpid()}"


def main() -> None:
    """``python -m harness.distributed.worker_agent HOST PORT NAME`` (``brokerbench worker``
    execs it: Locust's gevent must patch a fresh process before anything else is imported)."""
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    host, port, name = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    sys.exit(run_worker((host, port), name))


if __name__ == "__main__":
    main()
