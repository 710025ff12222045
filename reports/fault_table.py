"""Per fault window of every run, the figures that say what the fault did: how long the
service was unavailable, how long throughput and the backlog took to recover, and the anomalies
among the messages intended inside the window. One table across brokers and configurations,
so the same scenario can be read side by side (``safe`` and ``unsafe`` replication settings
under ``leader-isolated``, say): the HTML and Markdown reports' "Faults" section."""

from dataclasses import dataclass

from harness.run.result_model import FaultWindow
from reports.findings import run_origin_ns
from reports.load import StoredRun
from reports.matrix import fmt


@dataclass(frozen=True)
class FaultRow:
    run: str
    """``broker / workload / scenario rN``."""
    fault: str
    """The fault's name, and its params where it has any (``isolate-node node=leader``)."""
    window: str
    """``3.0-18.0 s`` since the run's start ('-' where unknown)."""
    unavailable_s: str
    throughput_recovery_s: str
    lag_recovery_s: str
    anomalies: str
    """``lost=677`` ...: the non-zero anomaly counts in the window ('none')."""


def _window(fault: FaultWindow, origin_ns: int | None) -> str:
    if origin_ns is None or fault.start_ns is None:
        return "-"
    start = (fault.start_ns - origin_ns) / 1e9
    end = "not healed" if fault.end_ns is None else f"{(fault.end_ns - origin_ns) / 1e9:.1f} s"
    return f"{start:.1f}-{end}"


def _recovery(seconds: float | None, fault: FaultWindow) -> str:
    """Seconds after the heal ('not recovered' when the figures say it never did)."""
    if seconds is None:
        return "not recovered" if fault.healed else "-"
    return fmt(seconds, 1)


def fault_rows(runs: list[StoredRun]) -> list[FaultRow]:
    rows = []
    for run in runs:
        origin = run_origin_ns(run)
        for fault in run.scenario.faults:
            params = " ".join(f"{key}={value}" for key, value in sorted(fault.params.items()))
            found = {k: v for k, v in fault.anomalies.items() if v not in (0, None, False, [], {})}
            rows.append(
                FaultRow(
                    run=f"{run.key.label()} r{run.repeat}",
                    fault=f"{fault.name} {params}".strip(),
                    window=_window(fault, origin),
                    unavailable_s=fmt(fault.unavailable_seconds, 1),
                    throughput_recovery_s=_recovery(fault.recovery.throughput_seconds, fault),
                    lag_recovery_s=_recovery(fault.recovery.lag_seconds, fault),
                    anomalies=", ".join(f"{k}={v}" for k, v in found.items()) or "none",
                )
            )
    return rows


HEADER = (
    "run", "fault", "window", "unavailable s", "throughput recovered s", "lag recovered s",
    "anomalies in the window",
)  # fmt: skip
