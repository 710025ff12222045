"""Which provider started this home's stack: ``state/provider.json`` (docs/containers.md).

Written by a provider's ``up``, removed by a whole stack's ``down``; read by ``down`` and
``status`` (to find the provider again), the fingerprint, the warm-up policy and the
saturation sampler. Its own module so that the providers (harness/stack/provider.py,
harness/stack/containers.py) both use it without importing each other.
"""

import json
from typing import Literal

from harness import paths
from harness.atomic import write_text_atomically

ProviderName = Literal["local", "containers"]
RECORD_FILE = "provider.json"


def recorded_provider() -> ProviderName | None:
    """The provider recorded by the last ``up`` in this home, if any."""
    path = paths.state_dir() / RECORD_FILE
    try:
        name = json.loads(path.read_text(encoding="utf-8")).get("provider")
    except (OSError, ValueError, AttributeError):
        return None
    return "containers" if name == "containers" else "local" if name == "local" else None


def record_provider(name: ProviderName) -> None:
    write_text_atomically(paths.state_dir() / RECORD_FILE, json.dumps({"provider": name}) + "\n")


def forget_provider() -> None:
    (paths.state_dir() / RECORD_FILE).unlink(missing_ok=True)


def current_provider() -> ProviderName:
    """The provider of this home's stack: the recorded one, else local (a stack started
    through ``Stack`` directly, as this repository's own tests do, is local)."""
    return recorded_provider() or "local"
