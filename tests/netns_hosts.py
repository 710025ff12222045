"""Separate test hosts on one machine: network namespaces on a bridge, each with its own
address, that still reach the shared local stack on 127.0.0.1 (test support, needs root).

::

    root namespace: the stack on 127.0.0.1, the master; bridge bbt-<tag>-br (host 1)
        |- veth bbt-<tag>-v1 <-> bbt-<tag>-p1 in namespace bbt-<tag>-h1 (host 11)
        '- veth bbt-<tag>-v2 <-> bbt-<tag>-p2 in namespace bbt-<tag>-h2 (host 12)

The stack listens on 127.0.0.1 of the root namespace only, and Kafka advertises
127.0.0.1:9092, so a client in a host must find the broker at 127.0.0.1:9092 of its own
namespace too. Only the forwarded ports get there, by nftables NAT (docs/test-hosts.md):

- in each host (``route_localnet`` on, so a 127.0.0.1 address may leave ``lo``): an output
  DNAT of ``127.0.0.1:<port>`` to the bridge's address, and a postrouting masquerade, so the
  packet leaves with the host's own address as its source;
- in the root namespace (``route_localnet`` on the bridge only): a prerouting DNAT of the
  bridge address's ``<port>`` to ``127.0.0.1:<port>``.

Anything else a host tries is refused or unreachable (no default route, so nothing leaves the
machine). A master for the hosts binds the bridge's address, which they reach directly.

Every object is named ``bbt-<tag>-...`` (nft table ``bbt_<tag>``), ``<tag>`` random. While
they exist, their maker holds an ``flock`` on ``/run/brokerbench-test-hosts/<tag>.lock``,
which the kernel drops when it dies: ``sweep_stale`` (run at every start) removes the objects
of a tag whose lock is free, i.e. those a killed test left, and never another's. Teardown runs
on every path out of ``simulated_hosts`` (an exception, Ctrl-C, SIGTERM turned into Ctrl-C).
"""

import contextlib
import fcntl
import ipaddress
import os
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from chaos.node_cut import nft_in
from harness.settings import Ports
from harness.stack import cluster_network

PREFIX = "bbt-"
TABLE_PREFIX = "bbt_"
"""The nftables table of a tag in the root namespace (a host's own table goes with it)."""
HOST_TABLE = "bbt_host"
LOCK_DIR = Path("/run/brokerbench-test-hosts")
SUBNETS = ipaddress.IPv4Network("10.216.0.0/16")
"""The /24s the hosts' bridges are chosen from (one free /24 at random per set of hosts)."""
FIRST_HOST = 11
LOOPBACK = "127.0.0.1"
STOP_SECONDS = 5.0


def unable_reason() -> str | None:
    """Why test hosts cannot be made on this machine (not root, a tool missing), else None."""
    if os.geteuid() != 0:
        return "test hosts need root (network namespaces)"
    for tool, package in (("ip", "iproute2"), ("nft", "nftables")):
        if shutil.which(tool) is None:
            return f"{tool} not found: apt-get install -y {package}"
    return None


def broker_ports(ports: Ports) -> tuple[int, ...]:
    """The ports a host needs to use every local broker, directly or through toxiproxy (not
    toxiproxy's API, not Kafka's controller)."""
    return (
        ports.kafka,
        ports.elasticmq,
        ports.moto,
        ports.pubsub,
        ports.kafka_proxy,
        ports.elasticmq_proxy,
        ports.moto_proxy,
        ports.pubsub_proxy,
    )


@dataclass
class SimulatedHost:
    """One test host: a network namespace with its own address on the bridge."""

    name: str
    namespace: str
    address: str
    started: list["subprocess.Popen[Any]"] = field(default_factory=list)

    def command(self, argv: Sequence[str]) -> list[str]:
        """``argv`` run inside this host."""
        return [*cluster_network.exec_prefix_of(self.namespace), *argv]

    def run(self, argv: Sequence[str], **popen: Any) -> "subprocess.Popen[Any]":
        """Start ``argv`` inside this host (in a session of its own); it is stopped, with
        whatever it started, when the hosts are removed."""
        process: subprocess.Popen[Any] = subprocess.Popen(
            self.command(argv), start_new_session=True, **popen
        )
        self.started.append(process)
        return process


@dataclass(frozen=True)
class Hosts:
    """A set of test hosts on one bridge."""

    tag: str
    bridge: str
    bridge_address: str
    """The root namespace's address on the bridge: where a master for the hosts binds."""
    hosts: tuple[SimulatedHost, ...]
    forward_ports: tuple[int, ...]

    @property
    def prefix(self) -> str:
        return f"{PREFIX}{self.tag}-"

    @property
    def table(self) -> str:
        return f"{TABLE_PREFIX}{self.tag}"


@contextlib.contextmanager
def simulated_hosts(count: int = 2, forward_ports: Sequence[int] = (9092,)) -> Iterator[Hosts]:
    """``count`` test hosts reaching ``forward_ports`` of the root namespace's 127.0.0.1 at
    their own 127.0.0.1; everything made is removed on leaving, whatever the way out."""
    if not 1 <= count <= 9:
        raise ValueError("between 1 and 9 hosts")
    sweep_stale()
    LOCK_DIR.mkdir(parents=True, exist_ok=True)
    tag = secrets.token_hex(2)
    while _lock_path(tag).exists():
        tag = secrets.token_hex(2)
    lock = _lock_path(tag).open("w")
    fcntl.flock(lock, fcntl.LOCK_EX)
    lock.write(f"{os.getpid()}\n")
    lock.flush()
    made: Hosts | None = None
    with _sigterm_as_interrupt():
        try:
            made = _make(tag, count, tuple(forward_ports))
            yield made
        finally:
            with _sigterm_ignored():
                _remove(tag, made.hosts if made else ())
                lock.close()  # the flock goes with it
                _lock_path(tag).unlink(missing_ok=True)


def objects_of(tag: str) -> list[str]:
    """What exists of ``tag``: namespaces, root interfaces, the root nftables table."""
    start = f"{PREFIX}{tag}-"
    found = cluster_network.namespaces_named(start) + cluster_network.links_named(start)
    return found + [t for t in _root_tables() if t == f"{TABLE_PREFIX}{tag}"]


def sweep_stale() -> list[str]:
    """Remove the objects of every tag made here whose maker is gone (its lock is free);
    returns what was removed."""
    names = cluster_network.namespaces_named(PREFIX) + cluster_network.links_named(PREFIX)
    tags = {name.split("-")[1] for name in names if name.count("-") >= 2}
    tags |= {table.removeprefix(TABLE_PREFIX) for table in _root_tables()}
    removed: list[str] = []
    for tag in sorted(tags):
        if not _lock_path(tag).exists() or _held(tag):
            continue  # not made by this module, or its maker still runs
        removed += objects_of(tag)
        _remove(tag, ())
        _lock_path(tag).unlink(missing_ok=True)
    return removed


def _make(tag: str, count: int, forward_ports: tuple[int, ...]) -> Hosts:
    prefix = f"{PREFIX}{tag}-"
    subnet = _free_subnet(prefix)
    bridge_address = ipaddress.IPv4Interface(f"{subnet.network_address + 1}/{subnet.prefixlen}")
    bridge = f"{prefix}br"
    cluster_network.add_bridge(bridge, bridge_address)
    # A packet DNATed to 127.0.0.1 arrives on the bridge: without this it is a martian.
    Path(f"/proc/sys/net/ipv4/conf/{bridge}/route_localnet").write_text("1\n")
    ports = _port_set(forward_ports)
    nft_in(
        None, "-f", "-", rules=_root_rules(f"{TABLE_PREFIX}{tag}", bridge, bridge_address, ports)
    )
    hosts = []
    for index in range(1, count + 1):
        host = SimulatedHost(
            name=f"h{index}",
            namespace=f"{prefix}h{index}",
            address=str(subnet.network_address + FIRST_HOST + index - 1),
        )
        inside = f"{prefix}p{index}"
        address = ipaddress.IPv4Interface(f"{host.address}/{subnet.prefixlen}")
        cluster_network.add_namespace_host(
            host.namespace, bridge, f"{prefix}v{index}", inside, address
        )
        _in_namespace(host.namespace, "sh", "-c", _ROUTE_LOCALNET_ALL)
        rules = _host_rules(inside, bridge_address, ports)
        nft_in(host.namespace, "-f", "-", rules=rules)
        hosts.append(host)
    return Hosts(tag, bridge, str(bridge_address.ip), tuple(hosts), forward_ports)


_ROUTE_LOCALNET_ALL = "echo 1 > /proc/sys/net/ipv4/conf/all/route_localnet"
"""Lets a packet with a 127.0.0.1 address leave ``lo`` (before the masquerade rewrites it)."""


def _port_set(ports: tuple[int, ...]) -> str:
    return "{ " + ", ".join(str(port) for port in sorted(set(ports))) + " }"


def _root_rules(
    table: str, bridge: str, bridge_address: ipaddress.IPv4Interface, ports: str
) -> str:
    return (
        f"table ip {table} {{\n"
        "  chain prerouting {\n"
        "    type nat hook prerouting priority dstnat; policy accept;\n"
        f'    iifname "{bridge}" ip daddr {bridge_address.ip} tcp dport {ports} '
        f"dnat to {LOOPBACK};\n"
        "  }\n"
        "}\n"
    )


def _host_rules(inside: str, bridge_address: ipaddress.IPv4Interface, ports: str) -> str:
    # nft 1.0.6 has no "dstnat" priority name for the output hook: -100 is its value.
    return (
        f"table ip {HOST_TABLE} {{\n"
        "  chain output {\n"
        "    type nat hook output priority -100; policy accept;\n"
        f"    ip daddr {LOOPBACK} tcp dport {ports} dnat to {bridge_address.ip};\n"
        "  }\n"
        "  chain postrouting {\n"
        "    type nat hook postrouting priority srcnat; policy accept;\n"
        f'    oifname "{inside}" ip saddr {LOOPBACK} masquerade;\n'
        "  }\n"
        "}\n"
    )


def _free_subnet(ours: str) -> ipaddress.IPv4Network:
    candidates = list(SUBNETS.subnets(new_prefix=24))
    for _ in range(32):
        subnet = secrets.choice(candidates)
        if cluster_network.overlapping_interface(subnet, ignore=ours) is None:
            return subnet
    raise RuntimeError(f"no free /24 in {SUBNETS} for test hosts")


def _remove(tag: str, hosts: Sequence[SimulatedHost]) -> None:
    """Stop every process in the tag's namespaces (a namespace outlives its name while one
    runs in it), then remove its namespaces, interfaces and root table; each step runs even
    when an earlier one failed."""
    prefix = f"{PREFIX}{tag}-"
    for host in hosts:
        for process in host.started:
            with contextlib.suppress(Exception):
                _stop(process)
    for namespace in cluster_network.namespaces_named(prefix):
        with contextlib.suppress(Exception):
            _kill_all_in(namespace)
    with contextlib.suppress(Exception):
        cluster_network.remove_named(prefix)
    if f"{TABLE_PREFIX}{tag}" in _root_tables():
        with contextlib.suppress(RuntimeError):
            nft_in(None, "delete", "table", "ip", f"{TABLE_PREFIX}{tag}")


def _stop(process: "subprocess.Popen[Any]") -> None:
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=STOP_SECONDS)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=STOP_SECONDS)


def _kill_all_in(namespace: str) -> None:
    """SIGKILL whatever still runs in ``namespace`` (ours: we made it)."""
    for pid in cluster_network.namespace_pids(namespace):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + STOP_SECONDS
    while cluster_network.namespace_pids(namespace) and time.monotonic() < deadline:
        time.sleep(0.05)


def _root_tables() -> list[str]:
    if shutil.which("nft") is None:
        return []
    listed = nft_in(None, "list", "tables", "ip")
    names = [line.split()[-1] for line in listed.splitlines() if line.strip()]
    return [name for name in names if name.startswith(TABLE_PREFIX)]


def _in_namespace(namespace: str, *argv: str) -> None:
    subprocess.run(
        [*cluster_network.exec_prefix_of(namespace), *argv],
        check=True,
        capture_output=True,
        timeout=cluster_network.IP_TIMEOUT,
    )


def _lock_path(tag: str) -> Path:
    return LOCK_DIR / f"{tag}.lock"


def _held(tag: str) -> bool:
    """Whether a live process holds ``tag``'s lock (a lock in this process counts too: flock
    conflicts between open files, not processes)."""
    try:
        probe = _lock_path(tag).open()
    except FileNotFoundError:  # its maker has just finished
        return False
    with probe:
        try:
            fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        return False  # closing the probe releases the flock


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM raises KeyboardInterrupt inside (main thread only), so ``finally`` runs."""
    if not _main_thread():
        yield
        return

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def _sigterm_ignored() -> Iterator[None]:
    """No SIGTERM cuts the teardown short (a second one is taken once it is done)."""
    if not _main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()
