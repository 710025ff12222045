"""nftables tables that cut a Kafka cluster node off, inside its network namespace: made by
the ``isolate-node`` fault (chaos/faults/node.py), removed by its heal and by ``chaos heal``.

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


def cut_rules(table: str, peers: list[str]) -> str:
    """An nftables table dropping every packet to or from ``peers``, both ways."""
    addresses = ", ".join(peers)
    return (
        f"table inet {table} {{\n"
        "  chain input { type filter hook input priority 0; policy accept;\n"
        f"    ip saddr {{ {addresses} }} drop; }}\n"
        "  chain output { type filter hook output priority 0; policy accept;\n"
        f"    ip daddr {{ {addresses} }} drop; }}\n"
        "}\n"
    )


def nft_in(namespace: str, *args: str, rules: str | None = None) -> None:
    command = [*cluster_network.exec_prefix_of(namespace), "nft", *args]
    completed = subprocess.run(
        command, input=rules, capture_output=True, text=True, timeout=10, check=False
    )
    if completed.returncode != 0:
        raise RuntimeError(f"nft {' '.join(args)} in {namespace}: {completed.stderr.strip()}")


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
