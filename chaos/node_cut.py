"""nftables tables that cut Kafka cluster nodes off from each other, inside their network
namespaces: made by the ``isolate-node`` and ``partition-nodes`` faults
(chaos/faults/node.py), removed by their heal and by ``chaos heal``.

Its own module so that ``chaos.heal`` and the node faults both use it without importing each
other."""

import contextlib
import shutil
import subprocess

from harness.stack import cluster_network

FAULT_TABLE_PREFIX = "bb_fault_"
"""The nftables tables faults add in a node's namespace (``chaos heal`` removes any left)."""


def fault_table(fault_id: str) -> str:
    return FAULT_TABLE_PREFIX + "".join(c if c.isalnum() else "_" for c in fault_id)


def cut_rules(table: str, drop_from: list[str], drop_to: list[str] | None = None) -> str:
    """An nftables table dropping every packet from ``drop_from`` and to ``drop_to`` (the
    same addresses when not given: a cut both ways)."""
    drop_to = drop_from if drop_to is None else drop_to
    chains = []
    for chain, direction, addresses in (
        ("input", "saddr", drop_from),
        ("output", "daddr", drop_to),
    ):
        rule = f"\n    ip {direction} {{ {', '.join(addresses)} }} drop;" if addresses else ""
        chains.append(
            f"  chain {chain} {{ type filter hook {chain} priority 0; policy accept;{rule} }}\n"
        )
    return f"table inet {table} {{\n{''.join(chains)}}}\n"


def nft_in(namespace: str | None, *args: str, rules: str | None = None) -> str:
    """Run ``nft ARGS`` (``rules`` on its stdin) in ``namespace``, or in the root namespace
    when None; returns its output, raises RuntimeError when it fails."""
    where = [] if namespace is None else cluster_network.exec_prefix_of(namespace)
    completed = subprocess.run(
        [*where, "nft", *args], input=rules, capture_output=True, text=True, timeout=10, check=False
    )
    if completed.returncode != 0:
        place = namespace or "the root namespace"
        raise RuntimeError(f"nft {' '.join(args)} in {place}: {completed.stderr.strip()}")
    return completed.stdout


def remove_fault_table(table: str) -> None:
    """Delete ``table`` from every node namespace of this home that has it."""
    for namespace in cluster_network.namespaces():
        with contextlib.suppress(RuntimeError, OSError, subprocess.SubprocessError):
            nft_in(namespace, "delete", "table", "inet", table)


def remove_every_fault_table() -> list[str]:
    """Delete every fault table from this home's node namespaces; returns what was removed."""
    removed: list[str] = []
    if shutil.which("nft") is None:  # no table can have been made
        return removed
    for namespace in cluster_network.namespaces():
        listed = subprocess.run(
            [*cluster_network.exec_prefix_of(namespace), "nft", "list", "tables"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        for line in listed.stdout.splitlines():
            table = line.split()[-1] if line.strip() else ""
            if table.startswith(FAULT_TABLE_PREFIX):
                with contextlib.suppress(RuntimeError):
                    nft_in(namespace, "delete", "table", "inet", table)
                    removed.append(f"{namespace}: {table}")
    return removed
