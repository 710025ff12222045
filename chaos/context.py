"""What a fault may act on during one run: ``NemesisContext``."""

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from harness.history.recorder import Recorder
from harness.settings import Settings


class LoadProcesses(Protocol):
    """The runner's load processes as the nemesis sees them (``harness/run/load_slots.py`` has one
    for consumers and one for producers). ``label`` is the process's slot, e.g. ``consumer-0``."""

    def labels(self) -> list[str]:
        """The slots that can be killed."""
        ...

    def kill(self, label: str) -> None:
        """SIGKILL the process in that slot (the runner must not treat its exit as a failure)."""
        ...

    def restart(self, label: str) -> None:
        """Start a replacement in that slot (a new process with its own history label)."""
        ...


@dataclass
class NemesisContext:
    """Where faults act. ``target`` is the run's broker target (``kafka``, ``elasticmq``,
    ``moto``, ``pubsub`` or an external one: then only load-process faults apply);
    ``recorder`` receives the ``fault-start`` / ``fault-end`` events (give the nemesis its own,
    e.g. ``Recorder(run_dir, "nemesis")``); ``consumers`` / ``producers`` are needed only by
    ``consumer-kill`` / ``producer-crash``; ``recreate_destination`` is called after an in-memory
    broker restarted (its queues and topics are gone) so the run can go on."""

    target: str
    settings: Settings
    recorder: Recorder | None = None
    consumers: LoadProcesses | None = None
    producers: LoadProcesses | None = None
    recreate_destination: Callable[[], None] | None = None
    run_dir: Path | None = None
    """The run's folder: the schema faults rewrite its schema control file."""
    state_file: Path | None = None
    """Default: ``<home>/state/chaos/active-faults-<pid>.json`` (``chaos.state``)."""
