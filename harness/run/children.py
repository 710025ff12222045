"""The load processes of one run: started with a plan file, read through their JSON progress
lines, and always stopped (SIGTERM, then SIGKILL) when the run ends, however it ends."""

import json
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from harness.atomic import write_text_atomically


@dataclass
class Child:
    label: str
    process: subprocess.Popen[str]
    log: Path
    last: dict[str, Any] = field(default_factory=dict)
    """The latest progress line."""

    @property
    def exited(self) -> bool:
        return self.process.poll() is not None


class Children:
    """Starts ``python -m MODULE PLAN.json`` processes; a reader thread per child keeps its
    latest progress line."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.children: dict[str, Child] = {}
        self.listeners: list[Callable[[str, dict[str, Any]], None]] = []
        """Called with (label, fields) for every progress line, on the child's reader thread."""

    def start(self, label: str, module: str, plan: BaseModel, *, stdin: bool = False) -> Child:
        """Start ``label``; with ``stdin``, its standard input is a pipe for ``tell``."""
        plan_path = self.run_dir / "plans" / f"{label}.json"
        write_text_atomically(plan_path, plan.model_dump_json(indent=2))
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
            )
        child = Child(label, process, log)
        self.children[label] = child
        threading.Thread(target=self._read, args=(child,), daemon=True).start()
        return child

    def _read(self, child: Child) -> None:
        assert child.process.stdout is not None
        for raw in child.process.stdout:
            try:
                fields = json.loads(raw)
            except json.JSONDecodeError:
                continue
            if not isinstance(fields, dict):
                continue
            child.last = fields
            for listener in self.listeners:
                listener(child.label, fields)

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

    def stop_all(self) -> None:
        self.stop(list(self.children), grace_seconds=10.0)

    def failure(self, label: str) -> str:
        """Why a child failed: its last stderr line."""
        child = self.children[label]
        lines = [line for line in child.log.read_text(errors="replace").splitlines() if line]
        reported = child.last.get("errors")  # a load process's own summary of what failed
        last = "; ".join(map(str, reported)) if reported else lines[-1] if lines else "no output"
        return (
            f"{label} exited with code {child.process.returncode}: {last[:300]} (log: {child.log})"
        )
