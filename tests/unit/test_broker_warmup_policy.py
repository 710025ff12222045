"""The broker warm-up's decisions without a broker: when to warm, when the latency settled,
what shape the load takes, and the suite setting."""

from pathlib import Path

import pytest

from chaos.scenario import FaultSpec, Scenario, load_scenario
from harness.errors import UserError
from harness.load.throughput import ThroughputConfig
from harness.run.broker_warmup import MAX_RATE, MIN_RATE, settled, shape_for
from harness.run.warmup_policy import Identity, WarmupTracker, restarted_by
from harness.settings import Settings
from harness.suite import load_suite


class FakeStack:
    """Broker identities (pid, start time) that a test changes by hand."""

    def __init__(self) -> None:
        self.identities: dict[str, Identity] = {"elasticmq": (100, 1.0), "kafka": (200, 1.0)}

    def identify(self, target: str) -> Identity:
        return self.identities.get(target)


def test_a_broker_is_warmed_before_its_first_run_only() -> None:
    stack = FakeStack()
    tracker = WarmupTracker(stack.identify)
    assert tracker.reason("elasticmq") == "first run"
    tracker.warmed("elasticmq")
    tracker.ran("elasticmq", None)
    assert tracker.reason("elasticmq") is None
    assert tracker.reason("kafka") == "first run"


def test_a_new_pid_or_start_time_means_the_broker_restarted() -> None:
    stack = FakeStack()
    tracker = WarmupTracker(stack.identify)
    tracker.warmed("elasticmq")
    stack.identities["elasticmq"] = (100, 2.0)  # same pid, reused by a new process
    assert tracker.reason("elasticmq") == "broker restarted"
    tracker.warmed("elasticmq")
    assert tracker.reason("elasticmq") is None
    stack.identities["elasticmq"] = (101, 2.0)
    assert tracker.reason("elasticmq") == "broker restarted"


def test_a_scenario_that_restarts_the_broker_asks_for_a_warm_up_even_without_a_pid() -> None:
    stack = FakeStack()
    stack.identities.clear()  # containers, external targets: nothing to compare
    tracker = WarmupTracker(stack.identify)
    tracker.warmed("elasticmq")
    tracker.ran("elasticmq", load_scenario("link-down"))
    assert tracker.reason("elasticmq") is None
    tracker.ran("elasticmq", load_scenario("broker-crash"))
    assert tracker.reason("elasticmq") == "broker restarted"
    tracker.warmed("elasticmq")
    tracker.ran("elasticmq", load_scenario("broker-restart"))
    assert tracker.reason("elasticmq") == "broker restarted"


@pytest.mark.parametrize(
    ("scenario", "restarted"),
    [
        ("baseline", set()),
        ("link-down", set()),
        ("consumer-kill", set()),
        ("broker-pause", set()),  # SIGSTOP keeps the process and its compiled code
        ("broker-crash", {"kafka"}),
        ("broker-restart", {"kafka"}),
    ],
)
def test_which_bundled_scenarios_restart_the_broker(scenario: str, restarted: set[str]) -> None:
    assert restarted_by(load_scenario(scenario), "kafka") == restarted


def test_a_fault_on_another_broker_marks_that_broker() -> None:
    scenario = Scenario(
        name="other", faults=[FaultSpec(action="crash", at=1, duration=1, target="pubsub")]
    )
    assert restarted_by(scenario, "kafka") == {"pubsub"}
    tracker = WarmupTracker(FakeStack().identify)
    for target in ("kafka", "pubsub"):
        tracker.warmed(target)
    tracker.ran("kafka", scenario)
    assert tracker.reason("kafka") is None
    assert tracker.reason("pubsub") == "broker restarted"


@pytest.mark.parametrize(
    ("windows", "received", "expected"),
    [
        ([30.0, 20.0, 18.0, 17.0, 16.0], 750, True),  # the last three within 1.25x
        ([300.0, 100.0, 47.0, 25.0, 18.0], 750, False),  # still falling
        ([9.0, 9.5, 9.2], 450, False),  # settled, but fewer messages than the minimum
        ([1.0, 2.5, 1.2, 1.1, 2.9], 750, True),  # ms-level noise: within the slack
        ([20.0, None, 18.0, 17.0, 16.0], 750, True),
        ([20.0, 18.0, None, 17.0, 16.0], 750, False),  # a window without a figure
        ([20.0, 18.0], 750, False),
    ],
)
def test_the_latency_settles_when_three_windows_agree(
    windows: list[float | None], received: int, expected: bool
) -> None:
    assert settled(windows, received, min_messages=500) is expected


def test_the_warm_up_follows_the_workload_within_bounds() -> None:
    config = ThroughputConfig(rate=150, duration=8, message_size=300, partitions=3, keys=7)
    shape = shape_for(config, 1500, 30)
    assert (shape.rate, shape.message_size, shape.partitions, shape.keys) == (150, 300, 3, 7)
    assert (shape.min_messages, shape.max_seconds) == (1500, 30)
    assert shape_for(ThroughputConfig(rate=5, duration=8), 1500, 30).rate == MIN_RATE
    assert shape_for(ThroughputConfig(rate=1e6, duration=8), 1500, 30).rate == MAX_RATE
    steps = ThroughputConfig(steps=[{"rate": 200, "seconds": 1}, {"rate": 50, "seconds": 1}])
    assert shape_for(steps, 1500, 30).rate == 200


def write_suite(tmp_path: Path, warmup: str) -> Path:
    path = tmp_path / "suite.yaml"
    path.write_text(
        "name: s\nbrokers: [elasticmq]\n"
        f"{warmup}\n"
        "workloads:\n  - name: w\n    params: {rate: 10, duration: 1}\n"
    )
    return path


def test_the_suite_setting_is_on_by_default_and_accepts_false(tmp_path: Path) -> None:
    assert load_suite(write_suite(tmp_path, ""), Settings()).broker_warmup.enabled
    off = load_suite(write_suite(tmp_path, "broker_warmup: false"), Settings())
    assert not off.broker_warmup.enabled
    shaped = load_suite(
        write_suite(tmp_path, "broker_warmup: {min_messages: 200, max_seconds: 9}"), Settings()
    )
    assert (shaped.broker_warmup.min_messages, shaped.broker_warmup.max_seconds) == (200, 9)


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("broker_warmup: {seconds: 5}", r"suite\.yaml:3: broker_warmup\.seconds: Extra inputs"),
        ("broker_warmup: {max_seconds: 0}", r"suite\.yaml:3: broker_warmup\.max_seconds"),
        ("broker_warmup: {min_messages: -1}", r"suite\.yaml:3: broker_warmup\.min_messages"),
        ("broker_warmup: soon", r"suite\.yaml:3: broker_warmup: .*give true, false or"),
    ],
)
def test_a_bad_warm_up_setting_names_file_and_line(
    tmp_path: Path, setting: str, message: str
) -> None:
    with pytest.raises(UserError, match=message):
        load_suite(write_suite(tmp_path, setting), Settings())
