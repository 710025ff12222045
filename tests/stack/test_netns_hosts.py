"""The test hosts of tests/netns_hosts.py on the shared stack's real Kafka: a client inside
each host finds the broker at its own 127.0.0.1:9092 and talks to it from the host's own
address; nothing but the forwarded ports is reachable; nothing is left behind on any way out.
"""

import json
import os
import secrets
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.settings import Settings
from harness.stack.manager import Stack
from tests import netns_hosts
from tests.netns_hosts import Hosts, objects_of, simulated_hosts, sweep_stale

pytestmark = pytest.mark.broker

REPO = Path(__file__).parents[2]
MESSAGES = 50
BOUND_SECONDS = 60


def skip_unless_able() -> None:
    reason = netns_hosts.unable_reason()
    if reason is not None:
        pytest.skip(reason)  # a broker test: CI fails on this skip (tests/conftest.py)


@pytest.fixture(scope="module")
def hosts(stack: Stack, settings: Settings) -> Iterator[Hosts]:
    skip_unless_able()
    with simulated_hosts(count=2, forward_ports=[settings.ports.kafka]) as made:
        yield made


# Runs inside a host: create TOPIC (the broker does not create topics on first use), produce
# to it, read it back in GROUP, ask the broker which address the group's member connected
# from, delete the topic.
CLIENT = """
import json, sys, time
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic
bootstrap, topic, group, name, count = sys.argv[1:6]
admin = AdminClient({"bootstrap.servers": bootstrap})
admin.create_topics([NewTopic(topic, 2)])[topic].result(timeout=20)
producer = Producer({"bootstrap.servers": bootstrap})
for index in range(int(count)):
    producer.produce(topic, f"{name}-{index}".encode())
assert producer.flush(30) == 0, "unsent"
consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                     "auto.offset.reset": "earliest"})
consumer.subscribe([topic])
received = []
deadline = time.monotonic() + 40
while len(received) < int(count) and time.monotonic() < deadline:
    message = consumer.poll(0.5)
    if message is not None and message.error() is None:
        received.append(message.value().decode())
described = admin.describe_consumer_groups([group])[group].result(timeout=20)
consumer.close()
admin.delete_topics([topic])[topic].result(timeout=20)
print(json.dumps({"received": received, "hosts": [m.host for m in described.members]}))
"""


def test_each_host_produces_and_consumes_through_its_own_loopback(
    hosts: Hosts, settings: Settings
) -> None:
    bootstrap = f"127.0.0.1:{settings.ports.kafka}"  # what the broker advertises
    run = secrets.token_hex(4)
    pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True}
    clients = {}
    for host in hosts.hosts:
        topic = group = f"bbt-{run}-{host.name}"
        argv = [sys.executable, "-c", CLIENT, bootstrap, topic, group, host.name, str(MESSAGES)]
        clients[host.name] = host.run(argv, **pipes)
    for host in hosts.hosts:
        out, err = clients[host.name].communicate(timeout=BOUND_SECONDS)
        assert clients[host.name].returncode == 0, err[-2000:]
        seen = json.loads(out)
        assert sorted(seen["received"]) == sorted(f"{host.name}-{i}" for i in range(MESSAGES))
        # The broker saw the host's own address, not 127.0.0.1: a separate host to it.
        assert [member.strip("/") for member in seen["hosts"]] == [host.address]


PROBE = """
import json, socket, sys
outcomes = {}
for address in sys.argv[1:]:
    host, port = address.rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
        outcomes[address] = "connected"
    except OSError as error:
        outcomes[address] = type(error).__name__ + ":" + str(error.errno)
print(json.dumps(outcomes))
"""


def test_only_the_forwarded_ports_are_reachable(
    hosts: Hosts, settings: Settings, stack: Stack
) -> None:
    kafka, api = settings.ports.kafka, settings.ports.toxiproxy  # api listens, not forwarded
    targets = [
        f"127.0.0.1:{kafka}",
        f"{hosts.bridge_address}:{kafka}",
        f"127.0.0.1:{api}",
        f"{hosts.bridge_address}:{api}",
        "192.0.2.1:80",  # TEST-NET-1: no route out of a host, so nothing leaves the machine
    ]
    probe = hosts.hosts[1].run(
        [sys.executable, "-c", PROBE, *targets], stdout=subprocess.PIPE, text=True
    )
    out, _ = probe.communicate(timeout=BOUND_SECONDS)
    outcomes = json.loads(out)
    assert outcomes == {
        f"127.0.0.1:{kafka}": "connected",
        f"{hosts.bridge_address}:{kafka}": "connected",
        f"127.0.0.1:{api}": "ConnectionRefusedError:111",
        f"{hosts.bridge_address}:{api}": "ConnectionRefusedError:111",
        "192.0.2.1:80": "OSError:101",  # ENETUNREACH
    }


def test_nothing_is_left_after_an_exception_inside() -> None:
    skip_unless_able()
    with pytest.raises(RuntimeError, match="inside"), simulated_hosts(count=2) as made:
        tag = made.tag
        sleeper = made.hosts[0].run(["sleep", "600"])
        assert len(objects_of(tag)) == 6  # 2 namespaces, bridge, 2 veths, root table
        raise RuntimeError("inside")
    assert objects_of(tag) == []
    assert sleeper.poll() is not None
    assert not (netns_hosts.LOCK_DIR / f"{tag}.lock").exists()


# A maker in its own process: prints its tag, then waits to be signalled.
MAKER = """
import sys, time
from tests.netns_hosts import simulated_hosts
with simulated_hosts(count=1) as made:
    made.hosts[0].run(["sleep", "600"])
    print(made.tag, flush=True)
    time.sleep(600)
"""


def start_maker() -> tuple["subprocess.Popen[str]", str]:
    maker = subprocess.Popen(
        [sys.executable, "-c", MAKER], cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    assert maker.stdout is not None
    tag = maker.stdout.readline().strip()
    assert tag, "the maker did not start"
    return maker, tag


def test_sigterm_to_the_maker_removes_everything() -> None:
    skip_unless_able()
    maker, tag = start_maker()
    assert objects_of(tag)
    os.kill(maker.pid, signal.SIGTERM)
    maker.wait(timeout=BOUND_SECONDS)
    assert objects_of(tag) == []


def test_a_killed_makers_objects_are_swept_and_a_live_ones_kept(hosts: Hosts) -> None:
    maker, tag = start_maker()
    os.kill(maker.pid, signal.SIGKILL)
    maker.wait(timeout=BOUND_SECONDS)
    left = objects_of(tag)
    assert len(left) == 4  # 1 namespace, bridge, 1 veth, root table: a kill runs no finally
    assert set(left) <= set(sweep_stale())  # (and any other killed maker's)
    assert objects_of(tag) == []
    assert len(objects_of(hosts.tag)) == 6  # the module's live hosts were kept
