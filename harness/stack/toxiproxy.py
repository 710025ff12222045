"""A small typed client for toxiproxy's HTTP API (``/proxies``, ``/populate``, ``/reset``).

toxiproxy-python keeps its host in class-global state, cannot update a toxic and ignores
server errors, so brokerbench talks to the API directly; every non-2xx answer raises.
"""

import json
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any, Literal

from harness.errors import BrokerUnreachableError


class ToxiproxyError(RuntimeError):
    """toxiproxy answered with an error status."""


@dataclass(frozen=True)
class ProxySpec:
    name: str
    listen: str
    upstream: str
    enabled: bool = True


@dataclass(frozen=True)
class Toxic:
    """A fault on one direction of a proxy; ``attributes`` as toxiproxy documents per type."""

    type: str
    name: str
    stream: Literal["upstream", "downstream"] = "downstream"
    toxicity: float = 1.0
    attributes: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Proxy:
    name: str
    listen: str
    upstream: str
    enabled: bool
    toxics: tuple[Toxic, ...]


class Client:
    """toxiproxy's API at ``http://host:port``."""

    def __init__(self, host: str = "127.0.0.1", port: int = 8474, timeout: float = 5.0) -> None:
        self.base_url = f"http://{host}:{port}"
        self.timeout = timeout

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.base_url + path,
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                payload = response.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace").strip()
            raise ToxiproxyError(f"toxiproxy {method} {path}: {exc.code} {detail}") from exc
        except (urllib.error.URLError, OSError) as exc:
            raise BrokerUnreachableError(
                f"toxiproxy at {self.base_url} is unreachable: run `brokerbench up`"
            ) from exc
        if not payload:
            return None
        try:
            return json.loads(payload)
        except json.JSONDecodeError:
            return payload.decode()

    def version(self) -> str:
        answer = self._call("GET", "/version")
        return str(answer["version"]) if isinstance(answer, dict) else str(answer).strip()

    def proxies(self) -> dict[str, Proxy]:
        answer: dict[str, dict[str, Any]] = self._call("GET", "/proxies")
        return {name: _proxy(raw) for name, raw in answer.items()}

    def populate(self, specs: list[ProxySpec]) -> None:
        """Create or replace the named proxies (others are left alone)."""
        self._call(
            "POST",
            "/populate",
            [
                {"name": s.name, "listen": s.listen, "upstream": s.upstream, "enabled": s.enabled}
                for s in specs
            ],
        )

    def set_enabled(self, proxy: str, enabled: bool) -> None:
        """Disabling a proxy closes its connections and refuses new ones (link down)."""
        self._call("POST", f"/proxies/{proxy}", {"enabled": enabled})

    def add_toxic(self, proxy: str, toxic: Toxic) -> None:
        self._call(
            "POST",
            f"/proxies/{proxy}/toxics",
            {
                "name": toxic.name,
                "type": toxic.type,
                "stream": toxic.stream,
                "toxicity": toxic.toxicity,
                "attributes": toxic.attributes,
            },
        )

    def remove_toxic(self, proxy: str, name: str) -> None:
        self._call("DELETE", f"/proxies/{proxy}/toxics/{name}")

    def reset(self) -> None:
        """Enable every proxy and remove every toxic."""
        self._call("POST", "/reset")


def _proxy(raw: dict[str, Any]) -> Proxy:
    return Proxy(
        name=raw["name"],
        listen=raw["listen"],
        upstream=raw["upstream"],
        enabled=bool(raw["enabled"]),
        toxics=tuple(
            Toxic(
                type=t["type"],
                name=t["name"],
                stream=t["stream"],
                toxicity=float(t["toxicity"]),
                attributes=dict(t.get("attributes") or {}),
            )
            for t in raw.get("toxics") or []
        ),
    )
