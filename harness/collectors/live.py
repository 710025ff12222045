"""Live Prometheus metrics of one run, served on 127.0.0.1 only.

Every metric carries the labels ``run_id``, ``broker`` and ``workload`` and lives in this
object's own registry, so several runs (or tests) in one process never collide:

- ``brokerbench_messages_sent_total{outcome}``: send completions by outcome (ok, fail, unknown)
- ``brokerbench_bytes_sent_total``: payload bytes of sends completed ok
- ``brokerbench_messages_received_total``: deliveries, redeliveries included
- ``brokerbench_backlog_messages``: the latest lag sample (NaN when unknown)
- ``brokerbench_e2e_latency_seconds``: end-to-end latency from the intended send time
- ``brokerbench_e2e_latency_clamped_total``: e2e latencies <= 0 (clock skew) recorded as 1 us
- ``brokerbench_process_resident_bytes{process, role}``: each sampled process's resident memory
  at the saturation sampler's latest sample (a process no longer sampled is dropped): a soak's
  memory, watched live
"""

import errno
import threading
from collections.abc import Iterable
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from harness.errors import UserError

E2E_BUCKETS_S = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
"""0.1 ms .. 10 s, 1-2.5-5 steps; slower deliveries land in +Inf."""

OUTCOMES = ("ok", "fail", "unknown")
_CLAMPED_S = 1e-6
_LABELS = ("run_id", "broker", "workload")


class LiveMetrics:
    """Counters and gauges the workload updates as it runs; thread-safe."""

    def __init__(self, run_id: str, broker: str, workload: str) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        labels = (run_id, broker, workload)
        sent = Counter(
            "brokerbench_messages_sent",
            "Send completions by outcome.",
            (*_LABELS, "outcome"),
            registry=self.registry,
        )
        self._sent = {outcome: sent.labels(*labels, outcome) for outcome in OUTCOMES}
        self._sent_family = sent
        self._labels = labels
        self._bytes_sent = Counter(
            "brokerbench_bytes_sent",
            "Payload bytes of sends completed ok.",
            _LABELS,
            registry=self.registry,
        ).labels(*labels)
        self._received = Counter(
            "brokerbench_messages_received",
            "Deliveries, redeliveries included.",
            _LABELS,
            registry=self.registry,
        ).labels(*labels)
        self._backlog = Gauge(
            "brokerbench_backlog_messages",
            "Latest consumer lag sample; NaN when unknown.",
            _LABELS,
            registry=self.registry,
        ).labels(*labels)
        self._e2e = Histogram(
            "brokerbench_e2e_latency_seconds",
            "End-to-end latency from the intended send time (corrected for coordinated omission).",
            _LABELS,
            buckets=E2E_BUCKETS_S,
            registry=self.registry,
        ).labels(*labels)
        self._e2e_clamped = Counter(
            "brokerbench_e2e_latency_clamped",
            "End-to-end latencies <= 0 (clock skew) recorded as 1 us.",
            _LABELS,
            registry=self.registry,
        ).labels(*labels)
        self._resident = Gauge(
            "brokerbench_process_resident_bytes",
            "Resident memory of each sampled process (RSS), at the latest saturation sample.",
            (*_LABELS, "process", "role"),
            registry=self.registry,
        )
        self._resident_shown: set[tuple[str, str]] = set()
        self._resident_lock = threading.Lock()
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    def record_send(self, outcome: str, size: int, count: int = 1) -> None:
        """``count`` sends of ``size`` bytes completed with ``outcome`` (an ``Outcome`` or its
        value)."""
        child = self._sent.get(outcome)
        if child is None:
            child = self._sent_family.labels(*self._labels, outcome)
        child.inc(count)
        if outcome == "ok":
            self._bytes_sent.inc(size * count)

    def record_receive(self, e2e_seconds: float | None = None, count: int = 1) -> None:
        """``count`` deliveries, with one end-to-end latency (``receive - intended``) if known."""
        self._received.inc(count)
        if e2e_seconds is not None:
            if e2e_seconds <= 0:
                self._e2e_clamped.inc()
                e2e_seconds = _CLAMPED_S
            self._e2e.observe(e2e_seconds)

    def set_backlog(self, messages: int | None) -> None:
        self._backlog.set(float("nan") if messages is None else messages)

    def set_resident_memory(self, processes: Iterable[tuple[str, str, float]]) -> None:
        """One sample's (process, role, RSS bytes) of every sampled process: the gauge shows
        these and no other process."""
        with self._resident_lock:
            shown = set()
            for process, role, rss_bytes in processes:
                self._resident.labels(*self._labels, process, role).set(rss_bytes)
                shown.add((process, role))
            for process, role in self._resident_shown - shown:
                self._resident.remove(*self._labels, process, role)
            self._resident_shown = shown

    def serve(self, port: int = 0) -> int:
        """Serve /metrics on 127.0.0.1:``port`` (0: any free port) in a daemon thread; returns
        the bound port. A taken port is a ``UserError``."""
        if self._server is not None:
            raise RuntimeError("LiveMetrics is already serving")
        try:
            server, thread = start_http_server(port, addr="127.0.0.1", registry=self.registry)
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                raise UserError(
                    f"metrics port {port} on 127.0.0.1 is taken: choose another port, or 0 for "
                    "any free one"
                ) from error
            raise
        self._server, self._thread = server, thread
        return int(server.server_address[1])

    def close(self) -> None:
        """Stop serving and release the port; safe to call more than once."""
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join()
