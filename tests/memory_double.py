"""The memory TEST DOUBLE broker for the tests of the harness's own logic (the ``memory_stack``
fixture in tests/conftest.py): started through the stack (``Stack`` with ``only=["memory"]``) in
a home of its own on a free port, so it never touches the session's stack, and stopped
afterwards. Nothing here needs a real broker or skips; no real-broker test is replaced by it."""

import contextlib
import json
import os
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness.drivers.memory.knobs import Knobs
from harness.settings import Ports, Settings
from harness.stack.manager import Stack
from tests.stack import cli


@dataclass(frozen=True)
class MemoryStack:
    home: Path
    settings: Settings

    @property
    def port(self) -> int:
        return self.settings.ports.memory

    def environment(self, config: Path | None = None) -> dict[str, str]:
        """For a ``brokerbench`` child process: this home and port (and a config file)."""
        extra = {"BROKERBENCH_HOME": str(self.home), "BROKERBENCH_PORT_MEMORY": str(self.port)}
        if config is not None:
            extra["BROKERBENCH_CONFIG"] = str(config)
        return os.environ | extra

    def brokerbench(
        self, *args: str, config: Path | None = None, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        """The real ``brokerbench`` command in a child process, reaching this double."""
        env = self.environment(config) | {"COLUMNS": "200"}
        return cli.brokerbench(*args, env=env, timeout=timeout)


def targets_file(path: Path, targets: dict[str, Knobs]) -> Path:
    """A brokerbench.yaml with one ``memory`` target per name, each with its knobs."""
    document = {
        name: {"driver": "memory", "settings": knobs.model_dump(exclude_defaults=True)}
        for name, knobs in targets.items()
    }
    path.write_text(json.dumps({"targets": document}), encoding="utf-8")  # JSON is YAML
    return path


@contextlib.contextmanager
def home(path: Path) -> Iterator[None]:
    """``$BROKERBENCH_HOME`` set to ``path`` for the block only (other tests keep theirs)."""
    before = os.environ.get("BROKERBENCH_HOME")
    os.environ["BROKERBENCH_HOME"] = str(path)
    try:
        yield
    finally:
        if before is None:
            del os.environ["BROKERBENCH_HOME"]
        else:
            os.environ["BROKERBENCH_HOME"] = before


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def start_memory_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MemoryStack]:
    path = tmp_path_factory.mktemp("memory-home")
    settings = Settings(ports=Ports(memory=free_port()))
    stack = Stack(settings, ["memory"])
    with home(path):
        stack.up()
    try:
        yield MemoryStack(path, settings)
    finally:
        with home(path):
            stack.down()
