"""The Kafka cluster's network: a bridge in the root namespace and one network namespace per
node, joined to it by a veth pair, all made and removed with iproute2's ``ip``.

::

    root namespace: clients, bridge bb-<tag>-br (host 1 of the subnet)
        |- veth bb-<tag>-v1 <-> bb-<tag>-p1 in namespace bb-<tag>-kafka1 (host 11)
        |- veth bb-<tag>-v2 <-> bb-<tag>-p2 in namespace bb-<tag>-kafka2 (host 12)
        '- ...

Nodes reach each other across the bridge (replication, the controller quorum) and clients in
the root namespace reach every node, so a firewall rule inside one node's namespace cuts that
node off. Every name starts with ``bb-<tag>-``, where the tag is derived from the home
(``$BROKERBENCH_HOME``): two homes never share a namespace, and ``down`` finds everything of
its home by that prefix, even after the process that made it was killed. Deleting a namespace
deletes its rules and its end of the veth pair (the other end goes with it).
"""

import hashlib
import ipaddress
import os
import shutil
import subprocess
from pathlib import Path

from harness import paths
from harness.errors import UserError
from harness.settings import KafkaStack

IP_TIMEOUT = 10.0
NFT_HOW_TO_GET = "apt-get install -y nftables"
"""How to get ``nft``, which node faults use to cut a node off (Debian/Ubuntu)."""


def prefix_of(home: Path) -> str:
    """``bb-`` and five hex digits naming the network objects of ``home`` (interface names
    are limited to 15 characters, so the home's path cannot be in them)."""
    return f"bb-{hashlib.sha256(str(home).encode()).hexdigest()[:5]}-"


def prefix() -> str:
    """This home's prefix."""
    return prefix_of(paths.home())


def namespace(node: int) -> str:
    return f"{prefix()}kafka{node}"


def bridge() -> str:
    return f"{prefix()}br"


def host_veth(node: int) -> str:
    return f"{prefix()}v{node}"


def node_veth(node: int) -> str:
    return f"{prefix()}p{node}"


def nft_missing_hint() -> str | None:
    """One line saying how to install nftables when ``nft`` is missing, else None."""
    if shutil.which("nft") is None:
        return f"nft not found: node faults need nftables ({NFT_HOW_TO_GET})"
    return None


def _ip() -> str:
    found = shutil.which("ip")
    if found is None:
        raise UserError(
            "a Kafka cluster (stack.kafka.nodes > 1) needs iproute2's `ip`: "
            "apt-get install -y iproute2, or set stack.kafka.nodes: 1"
        )
    return found


def _run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    completed = subprocess.run(
        [_ip(), *args], capture_output=True, text=True, timeout=IP_TIMEOUT, check=False
    )
    if check and completed.returncode != 0:
        problem = (completed.stderr or completed.stdout).strip().splitlines()[-1:]
        raise UserError(
            f"ip {' '.join(args)} failed ({' '.join(problem)}): a Kafka cluster needs root "
            "and network namespaces; run as root or set stack.kafka.nodes: 1"
        )
    return completed


def require_namespaces() -> None:
    """UserError (one line) unless this process may create network namespaces."""
    if os.geteuid() != 0:
        raise UserError(
            "a Kafka cluster (stack.kafka.nodes > 1) puts each node in its own network "
            "namespace, which needs root: run brokerbench as root, or set stack.kafka.nodes: 1"
        )
    _ip()


def namespaces() -> list[str]:
    """This home's network namespaces (none where iproute2 is missing)."""
    return namespaces_named(prefix())


def links() -> list[str]:
    """This home's interfaces in the root namespace (none where iproute2 is missing)."""
    return links_named(prefix())


def namespaces_named(start: str) -> list[str]:
    """The network namespaces whose names begin with ``start`` (none where iproute2 is
    missing)."""
    if shutil.which("ip") is None:
        return []
    listed = _run("netns", "list", check=False).stdout.splitlines()
    names = [line.split()[0] for line in listed if line.strip()]
    return [name for name in names if name.startswith(start)]


def links_named(start: str) -> list[str]:
    """The root namespace's interfaces whose names begin with ``start`` (none where iproute2
    is missing)."""
    if shutil.which("ip") is None:
        return []
    listed = _run("-o", "link", "show", check=False).stdout.splitlines()
    names = [line.split(":")[1].strip().split("@")[0] for line in listed if ":" in line]
    return [name for name in names if name.startswith(start)]


def overlapping_interface(subnet: ipaddress.IPv4Network, ignore: str) -> str | None:
    """``"<network> on <interface>"`` for the first interface of the root namespace (its name
    not beginning with ``ignore``) with an address in ``subnet``, else None."""
    for line in _run("-o", "-4", "addr", "show", check=False).stdout.splitlines():
        fields = line.split()
        if len(fields) < 4 or fields[1].startswith(ignore):
            continue
        if ipaddress.IPv4Interface(fields[3]).network.overlaps(subnet):
            return f"{fields[3]} on {fields[1]}"
    return None


def _require_subnet_free(cluster: KafkaStack) -> None:
    """UserError when an interface that is not ours already has an address in the subnet."""
    overlap = overlapping_interface(cluster.subnet, ignore=prefix())
    if overlap is not None:
        raise UserError(
            f"stack.kafka.subnet {cluster.subnet} overlaps {overlap}: "
            "choose another private subnet in brokerbench.yaml"
        )


def add_bridge(name: str, address: ipaddress.IPv4Interface) -> None:
    """Create the bridge ``name`` holding ``address`` (the root namespace's side), up."""
    _run("link", "add", name, "type", "bridge")
    _run("addr", "add", address.with_prefixlen, "dev", name)
    _run("link", "set", name, "up")


def add_namespace_host(
    ns: str, bridge_name: str, outside: str, inside: str, address: ipaddress.IPv4Interface
) -> None:
    """Create the namespace ``ns`` wired to ``bridge_name`` by the veth pair ``outside``
    (root namespace, on the bridge) / ``inside`` (in ``ns``, holding ``address``), with its
    loopback up."""
    _run("netns", "add", ns)
    _run("link", "add", outside, "type", "veth", "peer", "name", inside)
    _run("link", "set", inside, "netns", ns)
    _run("link", "set", outside, "master", bridge_name)
    _run("link", "set", outside, "up")
    _run("-n", ns, "addr", "add", address.with_prefixlen, "dev", inside)
    _run("-n", ns, "link", "set", inside, "up")
    _run("-n", ns, "link", "set", "lo", "up")


def ensure_bridge(cluster: KafkaStack) -> None:
    """Create the bridge with the root namespace's address, if it is not there."""
    require_namespaces()
    name = bridge()
    if name in links():
        return
    _require_subnet_free(cluster)
    add_bridge(
        name, ipaddress.IPv4Interface(f"{cluster.bridge_address()}/{cluster.subnet.prefixlen}")
    )


def ensure_node(cluster: KafkaStack, node: int) -> None:
    """Create node ``node``'s namespace, wired to the bridge at its address, if it is not
    there (a half-made one is removed and made again)."""
    ensure_bridge(cluster)
    ns, outside, inside = namespace(node), host_veth(node), node_veth(node)
    if ns in namespaces() and outside in links():
        return
    remove_node(node)
    address = ipaddress.IPv4Interface(f"{cluster.node_address(node)}/{cluster.subnet.prefixlen}")
    add_namespace_host(ns, bridge(), outside, inside, address)


def exec_prefix(node: int) -> list[str]:
    """The argv prefix that runs a command inside node ``node``'s namespace."""
    return exec_prefix_of(namespace(node))


def exec_prefix_of(name: str) -> list[str]:
    """The argv prefix that runs a command inside the namespace ``name``."""
    return [_ip(), "netns", "exec", name]


def namespace_pids(ns: str) -> list[int]:
    """The processes running in the namespace ``ns`` (none when it is not there)."""
    listed = _run("netns", "pids", ns, check=False).stdout.split()
    return [int(word) for word in listed if word.isdigit()]


def remove_node(node: int) -> None:
    """Remove node ``node``'s namespace (and its rules) and veth pair, if there."""
    if node_veth(node) in links():  # a veth not yet moved into the namespace
        _run("link", "del", node_veth(node), check=False)
    if host_veth(node) in links():
        _run("link", "del", host_veth(node), check=False)
    if namespace(node) in namespaces():
        _run("netns", "del", namespace(node), check=False)


def remove_all() -> list[str]:
    """Remove every namespace and interface of this home; returns what was removed."""
    return remove_named(prefix())


def remove_named(start: str) -> list[str]:
    """Remove every namespace, then every root-namespace interface, whose name begins with
    ``start``; returns what was removed."""
    removed = []
    for ns in namespaces_named(start):
        _run("netns", "del", ns, check=False)
        removed.append(ns)
    for link in links_named(start):
        _run("link", "del", link, check=False)
        removed.append(link)
    return removed
