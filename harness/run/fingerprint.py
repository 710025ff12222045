"""The environment a result was measured in, so results are compared like with like."""

import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

import harness
from harness.stack.provider_record import current_provider

CLIENT_PACKAGES = ("confluent-kafka", "boto3", "google-cloud-pubsub", "locust", "moto")


def _git_commit() -> str | None:
    root = Path(harness.__file__).resolve().parent.parent
    try:
        completed = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return completed.stdout.strip() or None if completed.returncode == 0 else None


def _client_versions() -> dict[str, str]:
    versions = {}
    for package in CLIENT_PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    try:
        import confluent_kafka

        versions["librdkafka"] = confluent_kafka.libversion()[0]
    except ImportError:
        pass
    return versions


def fingerprint(broker_version: str | None, *, test_double: bool = False) -> dict[str, Any]:
    """Host, OS, Python, CPU count, brokerbench's version and git commit, client and broker
    versions, who ran the stack (``stack_provider``: local or containers), and ``test_double``:
    True when the target was brokerbench's in-memory test double, not a real broker (its
    figures measure nothing about any broker)."""
    if test_double and broker_version is None:
        broker_version = f"memory test double (brokerbench {harness.__version__})"
    return {
        "host": platform.node(),
        "os": f"{platform.system()} {platform.release()}",
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "brokerbench": harness.__version__,
        "git_commit": _git_commit(),
        "clients": _client_versions(),
        "broker_version": broker_version,
        "stack_provider": current_provider(),
        "test_double": test_double,
    }
