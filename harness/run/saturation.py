"""Saturation of one run: what the sampler watches (``sampler_for_run``) and result.json's
``saturation`` section built from the stored samples (``saturation_section``, also used by
``brokerbench analyze``). The verdict's rules are in ``harness/run/harness_bound.py``."""

import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import paths
from harness.collectors.saturation import (
    CPU_PERCENT,
    HARNESS_ROLES,
    LATE_MS_MAX,
    LATE_MS_P99,
    NOT_SENT,
    POLL_GAP_MS_MAX,
    SaturationSampler,
    StoredSamples,
    Watched,
    WatchedService,
)
from harness.drivers.targets import TEST_DOUBLE, is_local_broker
from harness.load.progress_line import ProgressLine
from harness.run.children import Child, Children
from harness.run.figures import Window
from harness.run.harness_bound import HARNESS_PROCESS_ROLES, THRESHOLDS, Measured, verdict
from harness.settings import Settings

ROLES = ("orchestrator", "producer", "consumer", "proxy", "broker", "sampler")
"""Roles in the section, in this order; ``sampler`` is part of ``orchestrator`` too."""


def watched_services(
    target: str, proxy: str, settings: Settings
) -> tuple[list[WatchedService], list[str]]:
    """The local stack's processes a run of ``target`` uses, and notes on what is not sampled."""
    from harness.stack.provider_record import current_provider

    external = settings.targets.get(target)
    if (external.driver if external else target) == TEST_DOUBLE:
        # The memory test double is always a local process of its own, whoever runs the stack.
        memory = WatchedService(f"broker:{target}", "broker", paths.state_dir() / TEST_DOUBLE)
        return [memory], []
    if not is_local_broker(target, settings):
        return [], [f"broker {target!r} is an external target: no local process, not sampled"]
    if current_provider() == "containers":
        return [], ["the stack runs in containers: the broker's and toxiproxy's CPU not sampled"]
    services = [WatchedService(f"broker:{target}", "broker", paths.state_dir() / target)]
    if proxy != "none":
        services.append(WatchedService("proxy:toxiproxy", "proxy", paths.state_dir() / "toxiproxy"))
    return services, []


def sampler_for_run(
    run_dir: Path, children: Children, target: str, proxy: str, settings: Settings
) -> SaturationSampler:
    """A sampler of the orchestrator, the run's load processes, the local broker (and
    toxiproxy when the run goes through it), fed by the load processes' progress lines."""
    services, notes = watched_services(target, proxy, settings)

    def load_processes() -> list[Watched]:
        return [
            Watched(label, child.role.saturation_role, child.process.pid)
            for label, child in list(children.children.items())
            if child.process.returncode is None and child.machine is None
        ]

    sampler = SaturationSampler(run_dir, processes=load_processes, services=services, notes=notes)

    def on_line(child: Child, line: ProgressLine) -> None:
        sampler.on_line(child.label, progress_fields(line), role=child.role.saturation_role)

    children.listeners.append(on_line)
    return sampler


def progress_fields(line: ProgressLine) -> dict[str, float]:
    """The fields of a progress line the sampler folds (those the process reported)."""
    fields = {
        LATE_MS_P99: line.late_ms_p99,
        LATE_MS_MAX: line.late_ms_max,
        NOT_SENT: line.not_sent,
        POLL_GAP_MS_MAX: line.poll_gap_ms_max,
    }
    return {name: value for name, value in fields.items() if value is not None}


def _mean(values: list[float]) -> float | None:
    return round(statistics.fmean(values), 2) if values else None


def _max(values: list[float]) -> float | None:
    return round(max(values), 2) if values else None


@dataclass
class _Samples:
    """The stored rows by second: ``ticks`` are the sample times with an interval."""

    ticks: list[int] = field(default_factory=list)
    interval_ns: dict[int, int] = field(default_factory=dict)
    machine: dict[int, float] = field(default_factory=dict)
    roles: dict[str, dict[int, float]] = field(default_factory=lambda: defaultdict(dict))
    """Role -> second -> the sum of its processes' % of one core."""
    processes: dict[str, dict[int, float]] = field(default_factory=lambda: defaultdict(dict))
    role_of: dict[str, str] = field(default_factory=dict)
    progress: dict[str, dict[int, float]] = field(default_factory=lambda: defaultdict(dict))
    """Metric -> second -> the worst load process's value."""
    not_sent: dict[str, float] = field(default_factory=dict)
    """Producer -> the highest count it reported."""

    @classmethod
    def of(cls, stored: StoredSamples) -> "_Samples":
        found = cls()
        for row in stored.table.to_pylist():
            time_ns, subject, role = row["time_ns"], row["subject"], row["role"]
            metric, value = row["metric"], row["value"]
            found.interval_ns[time_ns] = row["interval_ns"]
            if metric == CPU_PERCENT and role == "machine":
                found.machine[time_ns] = value
            elif metric == CPU_PERCENT:
                by_second = found.roles[role]
                by_second[time_ns] = by_second.get(time_ns, 0.0) + value
                found.processes[subject][time_ns] = value
                found.role_of[subject] = role
            elif metric == NOT_SENT:
                found.not_sent[subject] = max(found.not_sent.get(subject, 0.0), value)
            else:
                current = found.progress[metric].get(time_ns)
                found.progress[metric][time_ns] = value if current is None else max(current, value)
        found.ticks = sorted(t for t, interval in found.interval_ns.items() if interval > 0)
        return found

    def measured(self, window: Window) -> list[int]:
        """The seconds whose middle lies in the measured window."""
        return [
            t
            for t in self.ticks
            if window.start_ns <= t - self.interval_ns[t] // 2 <= window.end_ns
        ]


def _role_summary(samples: _Samples, inside: list[int]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for role in ROLES:
        if role not in samples.roles:
            continue
        values = [samples.roles[role].get(t, 0.0) for t in inside]
        seconds = sum(
            v / 100 * samples.interval_ns[t] / 1e9 for t, v in zip(inside, values, strict=True)
        )
        summary[role] = {
            "processes": sum(
                1
                for subject, r in samples.role_of.items()
                if r == role and not samples.processes[subject].keys().isdisjoint(inside)
            ),
            "mean_cpu_percent": _mean(values),
            "max_cpu_percent": _max(values),
            "cpu_seconds": round(seconds, 3),
        }
    return summary


def saturation_section(
    stored: StoredSamples,
    window: Window,
    origin_ns: int | None,
    e2e_p99_ms: float | None,
    not_sent: int = 0,
) -> dict[str, Any]:
    """Per-second series over the whole run, a summary over the measured window and the
    ``harness_bound`` verdict (docs/result.md)."""
    samples = _Samples.of(stored)
    ticks, inside = samples.ticks, samples.measured(window)
    within = set(inside)
    roles = _role_summary(samples, inside)
    window_s = sum(samples.interval_ns[t] for t in inside) / 1e9
    harness_s = sum(roles[r]["cpu_seconds"] for r in HARNESS_ROLES if r in roles)
    broker_s = roles["broker"]["cpu_seconds"] if "broker" in roles else None

    def in_window(metric: str) -> dict[int, float]:
        return {t: v for t, v in samples.progress[metric].items() if t in within}

    facts = Measured(
        seconds=inside,
        machine_cpu_percent={t: v for t, v in samples.machine.items() if t in within},
        process_cpu_percent={
            subject: {t: v for t, v in series.items() if t in within}
            for subject, series in samples.processes.items()
            if samples.role_of[subject] in HARNESS_PROCESS_ROLES
        },
        late_ms_p99=in_window(LATE_MS_P99),
        # The history's not-sent events are complete; a producer's last progress line may
        # come after the last sample.
        not_sent=max(not_sent, round(sum(samples.not_sent.values()))),
        cpu_count=stored.cpu_count,
        harness_cores=harness_s / window_s if window_s else None,
        broker_cores=broker_s / window_s if window_s and broker_s is not None else None,
    )
    origin = origin_ns if origin_ns is not None else (ticks[0] if ticks else 0)
    machine = list(facts.machine_cpu_percent.values())
    notes = list(stored.notes)
    if not facts.late_ms_p99 and inside:
        notes.append("producers reported no lateness (late_ms_p99): that rule was not applied")
    return {
        "cpu_count": stored.cpu_count,
        "interval_s": stored.interval_s,
        "notes": notes,
        "series": {
            "origin_ns": origin,
            "t": [round((t - origin) / 1e9, 3) for t in ticks],
            "machine_cpu_percent": [samples.machine.get(t) for t in ticks],
            "cpu_percent": {
                role: [round(samples.roles[role].get(t, 0.0), 2) for t in ticks]
                for role in ROLES
                if role in samples.roles
            },
            **{
                metric: [samples.progress[metric].get(t) for t in ticks]
                for metric in (LATE_MS_P99, LATE_MS_MAX, POLL_GAP_MS_MAX)
            },
        },
        "summary": {
            "seconds": len(inside),
            "machine_cpu_percent": {"mean": _mean(machine), "max": _max(machine)},
            "roles": roles,
            "harness_cpu_seconds": round(harness_s, 3),
            "late_ms_p99": _max(list(facts.late_ms_p99.values())),
            "late_ms_max": _max(list(in_window(LATE_MS_MAX).values())),
            "poll_gap_ms_max": _max(list(in_window(POLL_GAP_MS_MAX).values())),
            "not_sent": facts.not_sent,
        },
        "harness_bound": verdict(facts, e2e_p99_ms),
        "thresholds": THRESHOLDS.to_dict(),
    }
