"""Run the real ``brokerbench`` command in a subprocess with its own home and ports."""

import os
import subprocess
import sys
from pathlib import Path

from harness import paths
from harness.settings import Ports
from harness.setup import artifacts

# The whole local stack shifted by 2000, so these tests never touch the session's stack. Every
# shifted port stays below 32768, where Linux picks no ephemeral port for an outgoing connection
# (with the tests on several workers, a shift into 32768-60999 met client sockets there).
SHIFTED_PORTS = {name: port + 2000 for name, port in Ports().model_dump().items()}


def isolated_home(root: Path, *installed: str) -> Path:
    """A BROKERBENCH_HOME whose named runtimes link to the real cache (nothing re-downloaded)."""
    real = {
        a.name: a
        for a in (
            artifacts.kafka(),
            artifacts.elasticmq(),
            artifacts.toxiproxy(),
            artifacts.schema_registry_server(),
        )
    }
    root.mkdir(parents=True, exist_ok=True)
    for name in installed:
        source = real[name].root
        assert source.exists(), f"{name} is not installed in {paths.home()}: run brokerbench setup"
        (root / source.name).symlink_to(source)
    return root


def environment(home: Path, path: str | None = None, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["BROKERBENCH_HOME"] = str(home)
    env.update(
        {f"BROKERBENCH_PORT_{name.upper()}": str(port) for name, port in SHIFTED_PORTS.items()}
    )
    if path is not None:
        env["PATH"] = path
    env.update(extra)
    return env


def brokerbench(
    *args: str, env: dict[str, str], cwd: Path | None = None, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "harness", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def one_line_error(completed: subprocess.CompletedProcess[str]) -> str:
    """The single error line of a failed command (asserting it is exactly one line, exit 2)."""
    lines = completed.stderr.strip().splitlines()
    assert completed.returncode == 2, (completed.returncode, completed.stdout, completed.stderr)
    assert len(lines) == 1, completed.stderr
    assert lines[0].startswith("error: "), lines[0]
    return lines[0]
