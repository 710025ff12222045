"""The local stack's schema registry: Apicurio Registry 2.4.2, built by ``brokerbench setup``
(``harness/setup/schema_registry.py``); its service is ``services.SchemaRegistry``.

Opt-in like the memory test double: ``brokerbench up --only registry`` starts it (a plain ``up``
does not: most runs need no registry, and it costs about 10 s and 250 MB). Once started, the
whole stack's ``status`` and ``down`` include it. Storage is in memory: a restart forgets every
schema. It listens on 127.0.0.1 only, with no proxy in front (its faults are of the application,
not of the network). Clients use its Confluent-compatible API (``CCOMPAT_PATH``).
"""

import json
import urllib.request

from harness.models import LOOPBACK

CCOMPAT_PATH = "/apis/ccompat/v7"
"""Where Apicurio serves the Confluent Schema Registry API."""
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))
"""Never through the user's HTTP proxy (``http_proxy``): the registry is on 127.0.0.1."""


def local_registry_url(port: int) -> str:
    """The Confluent-compatible API of the registry the local stack starts on ``port``."""
    return f"http://{LOOPBACK}:{port}{CCOMPAT_PATH}"


def probe(port: int, timeout: float) -> None:
    """Raise unless a schema registry answers its API (the list of subjects) on ``port``."""
    subjects = _get(f"{local_registry_url(port)}/subjects", timeout)
    if not isinstance(subjects, list):
        raise RuntimeError(f"not a schema registry on port {port}")


def version(port: int, timeout: float) -> str:
    """What the registry says it is, from Apicurio's own API (e.g. ``apicurio 2.4.2.Final``)."""
    info = _get(f"http://{LOOPBACK}:{port}/apis/registry/v2/system/info", timeout)
    return f"apicurio {info['version']}" if isinstance(info, dict) else "apicurio"


def _get(url: str, timeout: float) -> object:
    with _DIRECT.open(url, timeout=timeout) as answer:
        return json.load(answer)
