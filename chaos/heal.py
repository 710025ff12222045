"""Undoing faults from their state entries: used by the nemesis and by ``chaos heal``.

Entry kinds: ``toxic`` (``proxy``, ``toxic``), ``proxy-disabled`` (``proxy``), ``paused``
(``service``), ``stopped`` (``service``: crashed or stopped, started again), ``load-process``
(a harness child: nothing outlives the harness, so nothing to undo).
"""

import contextlib
from pathlib import Path

from chaos import state
from chaos.service_control import continue_service, start_again
from chaos.state import Entry
from harness.errors import UserError
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


def heal_all(settings: Settings, path: Path | None = None) -> list[str]:
    """Undo every recorded fault (of every state file, or of ``path``), reset toxiproxy (every
    proxy enabled, no toxic) if it runs, SIGCONT every local service; remove the state files.
    Returns what was done, for the user."""
    done = []
    files = [path] if path is not None else state.all_state_files()
    for file in files:
        for entry in state.read_entries(file):
            heal_entry(entry, settings)
            done.append(f"{entry.get('kind')}: {entry.get('proxy') or entry.get('service') or ''}")
    toxiproxy = Toxiproxy(settings)
    record = processes.recorded(toxiproxy.directory)
    if record is not None and processes.is_alive(record):
        toxiproxy_client(settings).reset()
        done.append("toxiproxy: reset (every proxy enabled, no toxic)")
    for service in Stack(settings).services:
        if service.name != "toxiproxy":
            with contextlib.suppress(UserError):
                continue_service(settings, service.name)
    for file in files:
        state.clear(file)
    return done
