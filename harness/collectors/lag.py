"""Consumer lag sampled on a schedule from a probe such as ``driver.backlog(dest, group)``."""

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import pyarrow as pa  # type: ignore[import-untyped, unused-ignore]

LagSource = Literal["broker", "derived"]
"""``broker``: the broker's own count (Kafka offsets, SQS queue attributes); ``derived``: computed
by brokerbench (e.g. sent ok minus received) where the broker has no such metric."""

ERROR_CHARS = 200

LAG_SCHEMA = pa.schema(
    [
        pa.field("time_ns", pa.int64(), nullable=False),
        pa.field("backlog", pa.int64()),
        pa.field("source", pa.string(), nullable=False),
        pa.field("error", pa.string()),
    ]
)


@dataclass(frozen=True)
class LagSample:
    time_ns: int
    """Wall clock when the probe was called."""
    backlog: int | None
    """None when the probe answered None (unknown) or raised."""
    source: LagSource
    error: str | None = None
    """The probe's exception, ``Type: message`` cut to 200 characters."""


class LagSampler:
    """A daemon thread calling ``probe`` every ``interval`` seconds, from ``start()`` to ``stop()``.

    Samples follow a fixed schedule (no drift); a probe slower than the interval skips the
    ticks it overran rather than bursting to catch up. An exception from the probe is recorded
    as an unknown backlog with its text and never stops the sampling.
    """

    def __init__(
        self,
        probe: Callable[[], int | None],
        *,
        interval: float = 1.0,
        source: LagSource = "broker",
        name: str = "lag-sampler",
    ) -> None:
        if interval <= 0:
            raise ValueError(f"interval must be positive, got {interval}")
        self._probe = probe
        self._interval = interval
        self._source: LagSource = source
        self._samples: list[LagSample] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float | None = None) -> None:
        """Stop sampling and wait for the thread (at most ``timeout`` seconds: a probe stuck on
        the network is abandoned, the thread being a daemon)."""
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def __enter__(self) -> "LagSampler":
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def samples(self) -> list[LagSample]:
        with self._lock:
            return list(self._samples)

    def table(self) -> pa.Table:
        """The samples as a ``pyarrow.Table`` (``LAG_SCHEMA``)."""
        samples = self.samples
        return pa.table(
            {
                "time_ns": [s.time_ns for s in samples],
                "backlog": [s.backlog for s in samples],
                "source": [s.source for s in samples],
                "error": [s.error for s in samples],
            },
            schema=LAG_SCHEMA,
        )

    def sample_once(self) -> LagSample:
        """Call the probe now and record the result (the thread does this on each tick)."""
        time_ns = time.time_ns()
        try:
            backlog = self._probe()
            sample = LagSample(time_ns, None if backlog is None else int(backlog), self._source)
        except Exception as error:
            text = f"{type(error).__name__}: {error}"[:ERROR_CHARS]
            sample = LagSample(time_ns, None, self._source, text)
        with self._lock:
            self._samples.append(sample)
        return sample

    def _run(self) -> None:
        next_tick = time.monotonic()
        while not self._stopping.is_set():
            self.sample_once()
            now = time.monotonic()
            next_tick += self._interval
            if next_tick <= now:
                missed = (now - next_tick) // self._interval + 1
                next_tick += missed * self._interval
            self._stopping.wait(next_tick - now)
