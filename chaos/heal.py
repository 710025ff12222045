"""Undoing faults from their state entries: used by the nemesis and by ``chaos heal``.

Entry kinds: ``toxic`` (``proxy``, ``toxic``), ``proxy-disabled`` (``proxy``), ``paused``
(``service``), ``stopped`` (``service``: crashed or stopped, started again), ``node-cut``
(``table``: an nftables table in a Kafka cluster node's namespace, deleted), ``load-process``
(a harness child: nothing outlives the harness, so nothing to undo).
"""

import contextlib
from dataclasses import dataclass
from pathlib import Path

from chaos import state
from chaos.node_cut import remove_every_fault_table, remove_fault_table
from chaos.service_control import continue_service, start_again
from chaos.state import Entry, HarnessFaults
from harness.settings import Settings
from harness.stack import processes
from harness.stack.manager import Stack
from harness.stack.services import Toxiproxy
from harness.stack.toxiproxy import Client, ToxiproxyError


def toxiproxy_client(settings: Settings) -> Client:
    return Client(port=settings.ports.toxiproxy)


def heal_entry(entry: Entry, settings: Settings) -> None:
    kind = entry.get("kind")
    if kind == "toxic":
        with contextlib.suppress(ToxiproxyError):  # already gone (e.g. after a reset)
            toxiproxy_client(settings).remove_toxic(entry["proxy"], entry["toxic"])
    elif kind == "proxy-disabled":
        toxiproxy_client(settings).set_enabled(entry["proxy"], True)
    elif kind == "paused":
        continue_service(settings, entry["service"])
    elif kind == "stopped":
        start_again(settings, entry["service"])
    elif kind == "node-cut":
        remove_fault_table(entry["table"])


@dataclass(frozen=True)
class HealOutcome:
    done: list[str]
    """What was undone, for the user."""
    left_alone: list[HarnessFaults]
    """State files of harnesses that still run: their faults are theirs to heal."""


def heal_all(settings: Settings, path: Path | None = None, *, force: bool = False) -> HealOutcome:
    """Undo the recorded faults (of every state file, or of ``path``) of harnesses that no longer
    run, and remove their state files. A harness that still runs (pid and start time) keeps its
    faults and its file, unless ``force``. Only when no running harness was left alone: reset
    toxiproxy (every proxy enabled, no toxic) if it runs and SIGCONT every local service.

    Every state file is read before anything is undone: a malformed one is a UserError."""
    files = [path] if path is not None else state.all_state_files()
    harnesses = [state.read_harness_faults(file) for file in files]
    left_alone = [] if force else [h for h in harnesses if h.owner_runs()]
    to_heal = [h for h in harnesses if h not in left_alone]
    done = []
    for harness in to_heal:
        for entry in harness.entries:
            heal_entry(entry, settings)
            what = entry.get("proxy") or entry.get("service") or entry.get("table") or ""
            done.append(f"{entry.get('kind')}: {what}")
    if not left_alone:
        done.extend(_reset_everything(settings))
    for harness in to_heal:
        state.clear(harness.path)
    return HealOutcome(done, left_alone)


def _reset_everything(settings: Settings) -> list[str]:
    """Toxiproxy reset, SIGCONT of every local service and every node-cut table deleted (what
    no state file may have said)."""
    done = []
    toxiproxy = Toxiproxy(settings)
    record = processes.recorded(toxiproxy.directory)
    if record is not None and processes.is_alive(record):
        toxiproxy_client(settings).reset()
        done.append("toxiproxy: reset (every proxy enabled, no toxic)")
    for service in Stack(settings).services:
        if service.name != "toxiproxy":
            continue_service(settings, service.name)
    done.extend(f"{cut}: deleted" for cut in remove_every_fault_table())
    return done
