"""``brokerbench chaos``: list the bundled scenarios and fault actions, heal left-over faults."""

import sys
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from chaos.faults.registry import fault_classes
from chaos.heal import heal_all
from chaos.scenario import bundled_names, load_scenario
from harness.settings import load_settings

app = typer.Typer(no_args_is_help=True, help="Fault scenarios: list them, heal what is left.")
console = Console(width=None if sys.stdout.isatty() else 140)


@app.command("list")
def list_scenarios(
    actions: Annotated[bool, typer.Option("--actions", help="List fault actions instead.")] = False,
) -> None:
    """The bundled scenarios (or, with --actions, the registered fault actions)."""
    if actions:
        table = Table("action", "class", "what it does", box=None)
        for name, cls in sorted(fault_classes().items()):
            doc = (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""
            table.add_row(name, f"{cls.__module__}.{cls.__name__}", doc)
        console.print(table)
        return
    table = Table("scenario", "faults", "description", box=None)
    for name in bundled_names():
        scenario = load_scenario(name)
        faults = ", ".join(
            f"{w.spec.action}@{w.start_s:g}-{w.end_s:g}s" for w in scenario.windows()
        )
        table.add_row(name, faults or "-", scenario.description)
    console.print(table)


@app.command()
def heal(
    force: Annotated[
        bool,
        typer.Option(
            "--force", help="Also heal the faults of harnesses that still run (their runs break)."
        ),
    ] = False,
) -> None:
    """Undo every fault a harness left behind (killed mid-fault): remove toxics, enable every
    proxy (toxiproxy reset), SIGCONT paused services, restart crashed ones. The faults of a
    harness that still runs are left to it, unless --force."""
    outcome = heal_all(load_settings(), force=force)
    for line in outcome.done:
        console.print(line, markup=False)
    for harness in outcome.left_alone:
        console.print(
            f"left alone: {len(harness.entries)} fault(s) of a harness that still runs (pid "
            f"{harness.pid}, {harness.path}): it heals them when it ends; --force heals them now",
            markup=False,
        )
    if outcome.left_alone:
        console.print("healed: the faults of harnesses that no longer run")
    else:
        console.print("healed: no fault recorded as active, every proxy enabled, no toxic")
