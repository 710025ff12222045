"""``chaos heal`` leaves the faults of a harness that still runs alone (same pid and start
time; a reused pid is not mistaken for it) unless ``--force``, and refuses malformed pid and
state files in one line. Every test has its own BROKERBENCH_HOME (never the shared one); the
faults are ``load-process`` entries, which undo nothing, so no service is touched."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from chaos.heal import heal_all
from chaos.state import state_dir
from harness.errors import UserError
from harness.settings import Ports, Settings
from harness.stack import processes
from tests.stack.cli import brokerbench, one_line_error

PORTS_SHIFTED_BY_6000 = {
    f"BROKERBENCH_PORT_{name.upper()}": str(port + 6000)
    for name, port in Ports().model_dump().items()
}
ENTRY = {"id": "f1", "kind": "load-process", "slot": "consumer-0"}


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("BROKERBENCH_HOME", str(home))
    for name, port in PORTS_SHIFTED_BY_6000.items():
        monkeypatch.setenv(name, port)
    return home


def settings() -> Settings:
    return Settings(
        ports=Ports(**{name: port + 6000 for name, port in Ports().model_dump().items()})
    )


def write_state(pid: int, started_at: float | None, name: str | None = None) -> Path:
    path = state_dir() / f"active-faults-{name or pid}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    document: dict[str, object] = {"pid": pid, "entries": [ENTRY]}
    if started_at is not None:
        document["started_at"] = started_at
    path.write_text(json.dumps(document))
    return path


def this_process() -> tuple[int, float]:
    """The test process stands for a harness that still runs."""
    return os.getpid(), processes.start_time(os.getpid())


def test_the_faults_of_a_running_harness_are_left_alone() -> None:
    pid, started_at = this_process()
    live = write_state(pid, started_at)
    outcome = heal_all(settings())
    assert [h.path for h in outcome.left_alone] == [live]
    assert outcome.done == []
    assert live.exists()


def test_force_heals_the_faults_of_a_running_harness_too() -> None:
    live = write_state(*this_process())
    outcome = heal_all(settings(), force=True)
    assert outcome.left_alone == []
    assert outcome.done == ["load-process: "]
    assert not live.exists()


def test_a_reused_pid_is_not_taken_for_the_harness_that_wrote_the_file() -> None:
    pid, started_at = this_process()
    reused = write_state(pid, started_at - 3600)  # another process had this pid an hour ago
    outcome = heal_all(settings())
    assert outcome.left_alone == []
    assert outcome.done == ["load-process: "]
    assert not reused.exists()


def test_dead_harnesses_are_healed_while_a_live_ones_faults_stay() -> None:
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True, check=True)  # fmt: skip
    dead = write_state(int(finished.stdout), 1.0)
    live = write_state(*this_process())
    outcome = heal_all(settings())
    assert [h.path for h in outcome.left_alone] == [live]
    assert outcome.done == ["load-process: "]
    assert not dead.exists()
    assert live.exists()


def test_a_file_without_a_start_time_of_a_live_pid_is_left_alone() -> None:
    live = write_state(os.getpid(), None)
    assert [h.path for h in heal_all(settings()).left_alone] == [live]


@pytest.mark.parametrize(
    "content",
    ["not json", "[]", '{"pid": "12", "started_at": 1, "entries": []}',
     '{"pid": 12, "started_at": 1, "entries": "all"}', '{"pid": 12, "entries": [1]}'],
)  # fmt: skip
def test_a_malformed_state_file_is_one_line_and_nothing_is_healed(content: str) -> None:
    dead = write_state(999_999_999, 1.0)
    bad = state_dir() / "active-faults-7.json"
    bad.write_text(content)
    with pytest.raises(UserError) as raised:
        heal_all(settings())
    assert str(raised.value).startswith(f"{bad}: not a fault state file brokerbench wrote")
    assert "\n" not in str(raised.value)
    assert dead.exists()


@pytest.mark.parametrize(
    "content",
    ["{}", "[1, 2]", "garbage", '{"pid": 0, "started_at": 1, "argv": [], "log": "x"}',
     '{"pid": "x", "started_at": 1, "argv": [], "log": "x"}'],
)  # fmt: skip
def test_chaos_heal_with_a_malformed_pid_file_is_one_line_exit_2(home: Path, content: str) -> None:
    pid_file = home / "state" / "toxiproxy" / "pid.json"
    pid_file.parent.mkdir(parents=True)
    pid_file.write_text(content)
    line = one_line_error(brokerbench("chaos", "heal", env=dict(os.environ)))
    assert line.startswith(f"error: {pid_file}: not a pid file brokerbench wrote (")
    assert "delete this file" in line


def test_chaos_heal_says_what_it_left_alone_and_force_heals_it(home: Path) -> None:
    live = write_state(*this_process())
    kept = brokerbench("chaos", "heal", env=dict(os.environ))
    assert kept.returncode == 0, kept.stderr
    assert f"left alone: 1 fault(s) of a harness that still runs (pid {os.getpid()}" in kept.stdout
    assert live.exists()
    forced = brokerbench("chaos", "heal", "--force", env=dict(os.environ))
    assert forced.returncode == 0, forced.stderr
    assert "every proxy enabled" in forced.stdout
    assert not live.exists()
