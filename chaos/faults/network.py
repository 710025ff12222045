"""Network faults on a broker's toxiproxy proxy: toxics and link down.

They act only on traffic that goes through the proxy: set the suite's ``proxy:`` to ``all``,
``producers`` or ``consumers``. ``stream`` is the direction (``upstream``: client to broker,
``downstream``: broker to client, ``both``); ``toxicity`` the share of connections affected.
"""

from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field

from chaos.faults.base import Fault, require_local_broker
from chaos.heal import toxiproxy_client
from chaos.state import Entry
from harness.models import FrozenModel
from harness.stack.toxiproxy import Toxic

Stream = Literal["upstream", "downstream"]
Milliseconds = Annotated[int, Field(ge=0, le=3_600_000)]


class ToxicParams(FrozenModel):
    stream: Literal["upstream", "downstream", "both"] = "downstream"
    toxicity: Annotated[float, Field(ge=0, le=1)] = 1.0


class ToxicFault(Fault):
    """A toxiproxy toxic of ``toxic_type`` on the target broker's proxy (one per direction)."""

    toxic_type: ClassVar[str]
    params_model: ClassVar[type[FrozenModel]] = ToxicParams

    def attributes(self) -> dict[str, Any]:
        raise NotImplementedError

    def _streams(self) -> list[Stream]:
        chosen = getattr(self.params, "stream", "downstream")
        if chosen == "both":
            return ["upstream", "downstream"]
        return ["upstream"] if chosen == "upstream" else ["downstream"]

    def _toxic_name(self, stream: Stream) -> str:
        return f"bb-{self.fault_id}-{stream}"

    def check(self) -> None:
        require_local_broker(self)

    def entries(self) -> list[Entry]:
        return [
            {
                "id": self.fault_id,
                "kind": "toxic",
                "proxy": self.target,
                "toxic": self._toxic_name(s),
            }
            for s in self._streams()
        ]

    def apply(self) -> None:
        client = toxiproxy_client(self.context.settings)
        for stream in self._streams():
            client.add_toxic(
                self.target,
                Toxic(
                    type=self.toxic_type,
                    name=self._toxic_name(stream),
                    stream=stream,
                    toxicity=float(getattr(self.params, "toxicity", 1.0)),
                    attributes=self.attributes(),
                ),
            )


class LatencyParams(ToxicParams):
    latency_ms: Milliseconds = 100
    jitter_ms: Milliseconds = 0


class Latency(ToxicFault):
    """Delay every chunk of data by ``latency_ms`` +/- ``jitter_ms``."""

    action = "latency"
    toxic_type = "latency"
    params_model = LatencyParams

    def attributes(self) -> dict[str, Any]:
        assert isinstance(self.params, LatencyParams)
        return {"latency": self.params.latency_ms, "jitter": self.params.jitter_ms}


class BandwidthParams(ToxicParams):
    rate_kb_per_s: Annotated[int, Field(ge=0)] = 100


class Bandwidth(ToxicFault):
    """Limit the proxy to ``rate_kb_per_s`` KB/s."""

    action = "bandwidth"
    toxic_type = "bandwidth"
    params_model = BandwidthParams

    def attributes(self) -> dict[str, Any]:
        assert isinstance(self.params, BandwidthParams)
        return {"rate": self.params.rate_kb_per_s}


class Blackhole(ToxicFault):
    """Stop all data and never close the connection (toxiproxy ``timeout`` with 0)."""

    action = "blackhole"
    toxic_type = "timeout"

    def attributes(self) -> dict[str, Any]:
        return {"timeout": 0}


class TimeoutParams(ToxicParams):
    timeout_ms: Milliseconds = 1000


class Timeout(ToxicFault):
    """Stop all data and close the connection after ``timeout_ms``."""

    action = "timeout"
    toxic_type = "timeout"
    params_model = TimeoutParams

    def attributes(self) -> dict[str, Any]:
        assert isinstance(self.params, TimeoutParams)
        return {"timeout": self.params.timeout_ms}


class ResetPeerParams(ToxicParams):
    timeout_ms: Milliseconds = 0


class ResetPeer(ToxicFault):
    """Reset connections (TCP RST) after ``timeout_ms`` (0: at once)."""

    action = "reset-peer"
    toxic_type = "reset_peer"
    params_model = ResetPeerParams

    def attributes(self) -> dict[str, Any]:
        assert isinstance(self.params, ResetPeerParams)
        return {"timeout": self.params.timeout_ms}


class SlowCloseParams(ToxicParams):
    delay_ms: Milliseconds = 1000


class SlowClose(ToxicFault):
    """Delay the closing of connections by ``delay_ms``."""

    action = "slow-close"
    toxic_type = "slow_close"
    params_model = SlowCloseParams

    def attributes(self) -> dict[str, Any]:
        assert isinstance(self.params, SlowCloseParams)
        return {"delay": self.params.delay_ms}


class SlicerParams(ToxicParams):
    average_size: Annotated[int, Field(ge=1)] = 64
    size_variation: Annotated[int, Field(ge=0)] = 32
    delay_us: Annotated[int, Field(ge=0)] = 10


class Slicer(ToxicFault):
    """Slice data into small packets (``average_size`` bytes) with ``delay_us`` between."""

    action = "slicer"
    toxic_type = "slicer"
    params_model = SlicerParams

    def attributes(self) -> dict[str, Any]:
        assert isinstance(self.params, SlicerParams)
        return {
            "average_size": self.params.average_size,
            "size_variation": self.params.size_variation,
            "delay": self.params.delay_us,
        }


class LimitDataParams(ToxicParams):
    bytes: Annotated[int, Field(ge=0)] = 10_000


class LimitData(ToxicFault):
    """Close each connection after ``bytes`` bytes went through it."""

    action = "limit-data"
    toxic_type = "limit_data"
    params_model = LimitDataParams

    def attributes(self) -> dict[str, Any]:
        assert isinstance(self.params, LimitDataParams)
        return {"bytes": self.params.bytes}


class LinkDown(Fault):
    """Disable the proxy: open connections close, new ones are refused."""

    action = "link-down"

    def check(self) -> None:
        require_local_broker(self)

    def entries(self) -> list[Entry]:
        return [{"id": self.fault_id, "kind": "proxy-disabled", "proxy": self.target}]

    def apply(self) -> None:
        toxiproxy_client(self.context.settings).set_enabled(self.target, False)
