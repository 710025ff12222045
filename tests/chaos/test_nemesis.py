"""The nemesis against the real toxiproxy: faults appear on schedule, are recorded, and are
always healed (also when the block raises); the state file lists what is active."""

import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from chaos.context import NemesisContext
from chaos.nemesis import Nemesis
from chaos.scenario import load_scenario
from harness.history.recorder import Recorder
from harness.history.store import read_shards
from harness.settings import Settings
from harness.stack.manager import Stack
from harness.stack.toxiproxy import Client

pytestmark = [pytest.mark.broker, pytest.mark.alone]  # faults the shared kafka proxy

OVERLAPPING = """
name: overlapping
faults:
  - {action: latency, at: 0.2, duration: 1.5, target: kafka, params: {latency_ms: 50, stream: both}}
  - {action: link-down, at: 0.4, duration: 0.6, target: kafka}
"""


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def test_faults_are_applied_on_schedule_recorded_and_healed(
    stack: Stack, settings: Settings, tmp_path: Path
) -> None:
    toxiproxy = Client(port=settings.ports.toxiproxy)
    scenario_file = tmp_path / "overlapping.yaml"
    scenario_file.write_text(OVERLAPPING)
    state_file = tmp_path / "active.json"
    recorder = Recorder(tmp_path, "nemesis")
    context = NemesisContext("elasticmq", settings, recorder=recorder, state_file=state_file)
    with Nemesis(load_scenario(str(scenario_file)), context) as nemesis:
        nemesis.start(time.time_ns())
        both = wait_until(
            lambda: (
                not toxiproxy.proxies()["kafka"].enabled
                and len(toxiproxy.proxies()["kafka"].toxics) == 2
            )
        )
        assert both, toxiproxy.proxies()["kafka"]
        kinds = sorted(entry["kind"] for entry in json.loads(state_file.read_text())["entries"])
        assert kinds == ["proxy-disabled", "toxic", "toxic"]
        assert wait_until(lambda: not nemesis.active)
        nemesis.stop()
    recorder.close()
    kafka = toxiproxy.proxies()["kafka"]
    assert kafka.enabled
    assert kafka.toxics == ()
    assert not state_file.exists()
    events = read_shards(tmp_path, "events").to_pylist()
    assert sorted((e["kind"], e["name"]) for e in events) == [
        ("fault-end", "latency"), ("fault-end", "link-down"),
        ("fault-start", "latency"), ("fault-start", "link-down"),
    ]  # fmt: skip
    start = next(e for e in events if e["kind"] == "fault-start" and e["name"] == "latency")
    assert json.loads(start["detail"])["params"]["latency_ms"] == 50


def test_leaving_the_block_heals_whatever_happened(
    stack: Stack, settings: Settings, tmp_path: Path
) -> None:
    toxiproxy = Client(port=settings.ports.toxiproxy)
    scenario_file = tmp_path / "long.yaml"
    scenario_file.write_text(
        "name: long\nfaults:\n  - {action: link-down, at: 0, duration: 600, target: pubsub}\n"
    )
    context = NemesisContext("kafka", settings, state_file=tmp_path / "active.json")
    with (
        pytest.raises(KeyboardInterrupt),
        Nemesis(load_scenario(str(scenario_file)), context) as nemesis,
    ):
        nemesis.start(time.time_ns())
        assert wait_until(lambda: not toxiproxy.proxies()["pubsub"].enabled)
        raise KeyboardInterrupt
    assert toxiproxy.proxies()["pubsub"].enabled
    assert not (tmp_path / "active.json").exists()


TOXICS = {
    "latency": ("latency", {"latency_ms": 10, "jitter_ms": 5}, {"latency": 10, "jitter": 5}),
    "bandwidth": ("bandwidth", {"rate_kb_per_s": 64}, {"rate": 64}),
    "blackhole": ("timeout", {}, {"timeout": 0}),
    "timeout": ("timeout", {"timeout_ms": 250}, {"timeout": 250}),
    "reset-peer": ("reset_peer", {"timeout_ms": 5}, {"timeout": 5}),
    "slow-close": ("slow_close", {"delay_ms": 50}, {"delay": 50}),
    "slicer": ("slicer", {"average_size": 32, "size_variation": 8, "delay_us": 20},
               {"average_size": 32, "size_variation": 8, "delay": 20}),
    "limit-data": ("limit_data", {"bytes": 4096}, {"bytes": 4096}),
}  # fmt: skip


@pytest.mark.parametrize("action", sorted(TOXICS))
def test_each_toxic_reaches_toxiproxy_as_documented(
    stack: Stack, settings: Settings, tmp_path: Path, action: str
) -> None:
    toxic_type, params, attributes = TOXICS[action]
    scenario_file = tmp_path / "one.yaml"
    scenario_file.write_text(
        "name: one\nfaults:\n"
        f"  - {{action: {action}, at: 0, duration: 600, target: moto, "
        f"params: {json.dumps({**params, 'stream': 'upstream', 'toxicity': 0.5})}}}\n"
    )
    toxiproxy = Client(port=settings.ports.toxiproxy)
    context = NemesisContext("kafka", settings, state_file=tmp_path / "active.json")
    with Nemesis(load_scenario(str(scenario_file)), context) as nemesis:
        nemesis.start(time.time_ns())
        assert wait_until(lambda: len(toxiproxy.proxies()["moto"].toxics) == 1)
        (toxic,) = toxiproxy.proxies()["moto"].toxics
        assert (toxic.type, toxic.stream, toxic.toxicity) == (toxic_type, "upstream", 0.5)
        assert {k: toxic.attributes[k] for k in attributes} == attributes
    assert toxiproxy.proxies()["moto"].toxics == ()
