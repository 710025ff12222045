"""Each sampled process's resident memory over a run: result.json's ``saturation.memory``
(docs/result.md), built from the sampler's ``rss_bytes`` rows.

A soak's question: does each harness process's memory stay flat? A process grows during its
first minute (imports, the client library's buffers, its first history batches); growth after
that means something is kept per message or per second. So a process's growth is measured from
the end of its first minute to its last sample, and judged only when it was sampled for at
least ``JUDGED_FROM_S``: a few seconds after the first minute say nothing about a leak.
"""

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

FIRST_MINUTE_S = 60.0
"""A process's warm-up: its memory at the end of it is the reference for growth."""
JUDGED_FROM_S = 120.0
"""Growth is judged only for a process sampled at least this long (one minute past warm-up)."""
GROWTH_LIMIT_PERCENT = 10.0
"""Issue 13's target: a load process's RSS grows by less than this after its first minute."""
HARNESS_MEMORY_ROLES = ("orchestrator", "producer", "consumer")
"""The harness's own processes, held to the limit (the broker's and toxiproxy's memory is
reported, not judged: the harness does not control it)."""
ROLE_ORDER = ("orchestrator", "producer", "consumer", "proxy", "broker")


class RssSample(NamedTuple):
    time_ns: int
    pid: int | None
    rss_bytes: float


def process_memory(samples: Sequence[RssSample]) -> dict[str, Any]:
    """One process's entry: RSS at the end of its first minute, at its last sample, its peak,
    and its growth in % between the first and second (null with ``growth_not_judged`` saying
    why when it was sampled for less than ``JUDGED_FROM_S``). A subject followed to a new
    process (a broker restarted by a fault) is summarized by its last process."""
    ordered = sorted(samples)
    last_pid = ordered[-1].pid
    ordered = [sample for sample in ordered if sample.pid == last_pid]
    first_ns, end = ordered[0].time_ns, ordered[-1]
    sampled_s = (end.time_ns - first_ns) / 1e9
    after_minute = [s for s in ordered if s.time_ns - first_ns >= FIRST_MINUTE_S * 1e9]
    at_minute = int(after_minute[0].rss_bytes) if after_minute else None
    growth: float | None = None
    reason: str | None = None
    if sampled_s < JUDGED_FROM_S:
        reason = (
            f"sampled for {sampled_s:.0f} s: growth after the first minute is judged only for "
            f"a process sampled at least {JUDGED_FROM_S:.0f} s"
        )
    elif not at_minute:
        reason = "no resident memory at the end of its first minute"
    else:
        growth = round(100 * (end.rss_bytes - at_minute) / at_minute, 2)
    return {
        "pid": last_pid,
        "samples": len(ordered),
        "sampled_s": round(sampled_s, 1),
        "rss_first_minute_bytes": at_minute,
        "rss_end_bytes": int(end.rss_bytes),
        "rss_peak_bytes": int(max(s.rss_bytes for s in ordered)),
        "growth_percent": growth,
        "growth_not_judged": reason,
    }


def _max(values: list[Any]) -> Any:
    present = [value for value in values if value is not None]
    return max(present) if present else None


def memory_section(
    samples: Mapping[str, Sequence[RssSample]], role_of: Mapping[str, str]
) -> dict[str, Any] | None:
    """The ``memory`` section from each subject's RSS samples (None: no RSS was sampled, e.g.
    samples stored before it was)."""
    subjects = [subject for subject, found in samples.items() if found]
    if not subjects:
        return None

    def order(subject: str) -> tuple[int, str, int, str]:
        role = role_of[subject]
        rank = ROLE_ORDER.index(role) if role in ROLE_ORDER else len(ROLE_ORDER)
        name, _, number = subject.rpartition("-")
        return (rank, name, int(number), "") if number.isdigit() else (rank, subject, -1, "")

    processes = {
        subject: {"role": role_of[subject], **process_memory(samples[subject])}
        for subject in sorted(subjects, key=order)
    }
    roles: dict[str, dict[str, Any]] = {}
    for entry in processes.values():
        roles.setdefault(entry["role"], {"processes": 0, "entries": []})
        roles[entry["role"]]["processes"] += 1
        roles[entry["role"]]["entries"].append(entry)
    role_summary = {
        role: {
            "processes": found["processes"],
            **{
                key: _max([entry[key] for entry in found["entries"]])
                for key in (
                    "rss_first_minute_bytes",
                    "rss_end_bytes",
                    "rss_peak_bytes",
                    "growth_percent",
                )
            },
        }
        for role, found in roles.items()
    }
    harness = {s: e for s, e in processes.items() if e["role"] in HARNESS_MEMORY_ROLES}
    judged = {s: e["growth_percent"] for s, e in harness.items() if e["growth_percent"] is not None}
    return {
        "metric": "rss_bytes",
        "first_minute_s": FIRST_MINUTE_S,
        "judged_from_s": JUDGED_FROM_S,
        "growth_limit_percent": GROWTH_LIMIT_PERCENT,
        "processes": processes,
        "roles": role_summary,
        "harness_growth_percent_max": max(judged.values()) if judged else None,
        "harness_grew": (
            [s for s, growth in judged.items() if growth >= GROWTH_LIMIT_PERCENT]
            if judged
            else None
        ),
    }
