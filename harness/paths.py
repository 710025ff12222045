"""Where brokerbench keeps downloads (cache) and the running stack's state."""

import os
from pathlib import Path


def home() -> Path:
    """The cache root: ``$BROKERBENCH_HOME`` or ``~/.cache/brokerbench``."""
    configured = os.environ.get("BROKERBENCH_HOME")
    root = Path(configured) if configured else Path.home() / ".cache" / "brokerbench"
    return root.expanduser().resolve()


def state_dir() -> Path:
    """Pid files, configs, data and logs of the locally started services."""
    return home() / "state"


def service_dir(service: str) -> Path:
    path = state_dir() / service
    path.mkdir(parents=True, exist_ok=True)
    return path
