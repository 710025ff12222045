"""The load processes of one run: started with a plan file and a role, read through their
progress lines (``harness/load/progress_line.py``, parsed once here), and always stopped
(SIGTERM, then SIGKILL) when the run ends, however it ends (``Children`` is a context manager).
"""

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Literal, Protocol, Self

from pydantic import BaseModel

from harness import redaction
from harness.load.plan_file import write_plan
from harness.load.progress_line import NOTHING_YET, ProgressLine, parse


class Role(Enum):
    """What a load process does in the run (its label, e.g. ``consumer-3``, only names it)."""

    PRODUCER = "producer"
    CONSUMER = "consumer"
    """A plain consumer (raw throughput): its lines count ``received``."""
    SERVICE = "service"
    """A flow's service process: its lines count what it ``handled`` and ``published``."""
    DEAD_LETTER_READER = "dead-letter-reader"
    """A flow's reader of a topic's dead letters (a service process too)."""

    @property
    def consumes(self) -> bool:
        """Takes messages off the broker: stopped after the drain; dying is a failure."""
        return self is not Role.PRODUCER

    @property
    def saturation_role(self) -> Literal["producer", "consumer"]:
        """Its role in the saturation samples (flow services count as consumers)."""
        return "producer" if self is Role.PRODUCER else "consumer"


class ProcessHandle(Protocol):
    """What the run uses of a load process: a ``subprocess.Popen`` here, or a process on a
    worker (``harness/distributed/placed_children.py``)."""

    @property
    def pid(self) -> int: ...
    @property
    def returncode(self) -> int | Any: ...
    @property
    def stdin(self) -> IO[str] | None: ...
    @property
    def stdout(self) -> IO[str] | None: ...
    def poll(self) -> int | None: ...
    def wait(self, timeout: float | None = None) -> int: ...
    def kill(self) -> None: ...
    def send_signal(self, sig: int) -> None: ...


@dataclass
class Child:
    label: str
    role: Role
    process: ProcessHandle
    log: Path
    last: ProgressLine = NOTHING_YET
    """The latest progress line."""
    machine: str | None = None
    """The worker that runs it (``brokerbench worker``); None: this machine."""

    @property
    def exited(self) -> bool:
        return self.process.poll() is not None


Listener = Callable[[Child, ProgressLine], None]


class Children:
    """Starts ``python -m MODULE PLAN.json`` processes; a reader thread per child keeps its
    latest progress line."""

    preexec: Callable[[], None] | None = None
    """Run in each child before it starts (a worker ties its children's life to its own)."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.children: dict[str, Child] = {}
        self.listeners: list[Listener] = []
        """Called with (child, line) for every progress line, on the child's reader thread."""

    def start(
        self, label: str, role: Role, module: str, plan: BaseModel, *, stdin: bool = False
    ) -> Child:
        """Start ``label``; with ``stdin``, its standard input is a pipe for ``tell``. Its plan
        file holds no secret: they reach the process in its environment (``plan_file``)."""
        plan_path = self.run_dir / "plans" / f"{label}.json"
        secrets = write_plan(plan_path, plan)
        log = self.run_dir / "logs" / f"{label}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("w", encoding="utf-8") as stderr:
            process = subprocess.Popen(
                [sys.executable, "-m", module, str(plan_path)],
                stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
                start_new_session=True,
                env=os.environ | secrets if secrets else None,
                # Only a worker agent sets it: one OS thread (gevent), and prctl is safe there.
                preexec_fn=self.preexec,  # noqa: PLW1509
            )
        child = Child(label, role, process, log)
        self.children[label] = child
        threading.Thread(target=self._read, args=(child,), daemon=True).start()
        return child

    def _read(self, child: Child) -> None:
        assert child.process.stdout is not None
        for raw in child.process.stdout:
            line = parse(raw)
            if line is None:
                continue
            child.last = line
            for listener in self.listeners:
                listener(child, line)

    def of(self, *roles: Role) -> list[Child]:
        """The children started in one of ``roles`` (every one ever started, in start order)."""
        return [child for child in list(self.children.values()) if child.role in roles]

    def consuming(self) -> list[Child]:
        """The children that take messages off the broker (``Role.consumes``)."""
        return [child for child in list(self.children.values()) if child.role.consumes]

    def tell(self, label: str, line: str) -> None:
        """Write one line to a child started with ``stdin``."""
        pipe = self.children[label].process.stdin
        assert pipe is not None, f"{label} was started without stdin"
        pipe.write(line + "\n")
        pipe.flush()

    def stop(self, labels: list[str], grace_seconds: float = 30.0) -> None:
        """SIGTERM the named children, wait, SIGKILL whatever is left."""
        targets = [self.children[label] for label in labels if label in self.children]
        for child in targets:
            if not child.exited:
                child.process.send_signal(signal.SIGTERM)
        for child in targets:
            try:
                child.process.wait(timeout=grace_seconds)
            except subprocess.TimeoutExpired:
                child.process.kill()
                child.process.wait(timeout=10)

    def check(self) -> None:
        """Raise ``RunFailedError`` when the run cannot go on for a reason outside any one
        process (a lost worker); the monitor calls it while it waits."""

    def stop_all(self) -> None:
        self.stop(list(self.children), grace_seconds=10.0)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop_all()

    def failure(self, label: str) -> str:
        """Why a child failed: its own summary of what failed, else its last stderr line."""
        child = self.children[label]
        lines = [line for line in child.log.read_text(errors="replace").splitlines() if line]
        reported = child.last.errors
        last = redaction.scrub("; ".join(reported) if reported else lines[-1] if lines else "")
        return (
            f"{label} exited with code {child.process.returncode}: {last[:300] or 'no output'} "
            f"(log: {child.log})"
        )
