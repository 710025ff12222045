"""The ``harness_bound`` verdict: was the harness, not the broker, the limit of a run?

Judged over the measured window (warm-up end to the end of the load), from the saturation
samples (``harness/collectors/saturation.py``). Every threshold lives in ``THRESHOLDS``;
docs/result.md says why each is where it is. A run is harness-bound when any rule holds; each
rule that holds gives one line with the figure and the threshold.
"""

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Thresholds:
    machine_cpu_percent: float = 90.0
    """Machine CPU (all cores) at or above this is saturated: runnable threads wait for a core,
    and that wait lands in the broker's figures as much as in the harness's."""
    process_cpu_percent: float = 95.0
    """A harness process (orchestrator, producer, consumer) at or above this % of one core is
    at its limit: its Python code runs on one core at a time (the GIL)."""
    share_of_seconds: float = 0.25
    """A saturation rule holds when it holds in at least this share of the measured seconds: a
    quarter of the run is enough to move the p75 and above of every latency figure, while a
    single busy second (a garbage collection, a JIT burst) in a long run is not."""
    min_seconds: int = 2
    """... and in at least this many of them: one busy second is noise in a short run too (in
    a 2-second window it would be half the run; seen in CI as a single 22 ms scheduling stall)."""
    late_ms_floor: float = 20.0
    """Producer lateness p99 (actual minus intended send time) at or below this is never
    judged: timer and scheduling jitter. Measured at 50 msg/s on 2 cores: p99 1.6 ms on a quiet
    machine, 7.7 ms (max 23 ms) with both cores busy-looped; a fast broker's e2e p99 is 5-10 ms
    here, so a floor of 50 ms would let figures that are mostly lateness pass as the broker's."""
    late_share_of_e2e_p99: float = 0.10
    """... and above the floor it is judged against the run's end-to-end p99, which counts from
    the intended send time and so includes the lateness: a tenth of the figure is no longer
    rounding."""

    def late_limit_ms(self, e2e_p99_ms: float | None) -> float:
        share = self.late_share_of_e2e_p99 * (e2e_p99_ms or 0.0)
        return max(self.late_ms_floor, share)

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


THRESHOLDS = Thresholds()

HARNESS_PROCESS_ROLES = ("orchestrator", "producer", "consumer")
"""Roles held to the one-core rule. toxiproxy (``proxy``) is multi-threaded Go: it counts in
the machine's CPU and the harness's cost, not against one core."""


@dataclass
class Measured:
    """The measured window's samples, per second (``seconds`` in order, as sample times)."""

    seconds: list[int]
    machine_cpu_percent: dict[int, float] = field(default_factory=dict)
    process_cpu_percent: dict[str, dict[int, float]] = field(default_factory=dict)
    """Subject -> second -> % of one core, harness processes only."""
    late_ms_p99: dict[int, float] = field(default_factory=dict)
    """Second -> the worst producer's lateness p99 that second."""
    not_sent: int = 0
    """Schedule messages the producers never sent (the whole run)."""
    cpu_count: int = 1
    harness_cores: float | None = None
    broker_cores: float | None = None
    """Mean cores used over the window, for the machine rule's explanation."""


def _who_used(measured: Measured) -> str:
    """'; of 2 cores the harness used 1.20, the broker 0.50' (as far as known)."""
    used = []
    if measured.harness_cores is not None:
        used.append(f"the harness used {measured.harness_cores:.2f}")
    if measured.broker_cores is not None:
        used.append(f"the broker {measured.broker_cores:.2f}")
    if not used:
        return ""
    return f"; of {measured.cpu_count} cores " + ", ".join(used) + ", other processes the rest"


def _share(count: int, total: int) -> str:
    return f"{count} of {total} measured seconds ({count / total:.0%})"


def _holds(count: int, total: int, thresholds: Thresholds) -> bool:
    """A per-second rule holds in ``count`` of ``total`` seconds: often enough to count."""
    return count >= thresholds.min_seconds and count / total >= thresholds.share_of_seconds


def verdict(
    measured: Measured, e2e_p99_ms: float | None, thresholds: Thresholds = THRESHOLDS
) -> dict[str, Any]:
    """``{"value": true | false | null, "reasons": [...]}``; null: no measured second and
    nothing else to go by."""
    reasons: list[str] = []
    total = len(measured.seconds)
    needed = thresholds.share_of_seconds
    if total:
        machine = measured.machine_cpu_percent
        hot = [s for s in measured.seconds if machine.get(s, 0.0) >= thresholds.machine_cpu_percent]
        if machine and _holds(len(hot), total, thresholds):
            reasons.append(
                f"machine CPU >= {thresholds.machine_cpu_percent:g}% in {_share(len(hot), total)}"
                f" >= {needed:.0%}{_who_used(measured)}: the broker waited for a CPU"
            )
        for subject, series in sorted(measured.process_cpu_percent.items()):
            busy = [
                s for s in measured.seconds if series.get(s, 0.0) >= thresholds.process_cpu_percent
            ]
            if _holds(len(busy), total, thresholds):
                peak = max(series.values())
                reasons.append(
                    f"{subject} at >= {thresholds.process_cpu_percent:g}% of a core in "
                    f"{_share(len(busy), total)} >= {needed:.0%} (max {peak:.0f}%): "
                    "it could not go faster"
                )
        limit = thresholds.late_limit_ms(e2e_p99_ms)
        late = [s for s in measured.seconds if measured.late_ms_p99.get(s, 0.0) > limit]
        if measured.late_ms_p99 and _holds(len(late), total, thresholds):
            worst = max(measured.late_ms_p99.values())
            basis = f"max({thresholds.late_ms_floor:g} ms, {thresholds.late_share_of_e2e_p99:.0%}"
            basis += " of e2e p99" + (f" {e2e_p99_ms:.1f} ms)" if e2e_p99_ms else ")")
            reasons.append(
                f"producer lateness p99 > {limit:.1f} ms ({basis}) in {_share(len(late), total)}"
                f" >= {needed:.0%} (worst {worst:.1f} ms): the schedule ran late"
            )
    if measured.not_sent > 0:
        reasons.append(
            f"the harness fell behind its schedule: {measured.not_sent} message(s) not sent "
            "before the run's end (not_sent > 0)"
        )
    value = bool(reasons) if total or measured.not_sent else None
    return {"value": value, "reasons": reasons}
