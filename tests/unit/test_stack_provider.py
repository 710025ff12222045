"""Choosing and recording the stack provider, without starting brokers.

Each test has its own BROKERBENCH_HOME. ``DOCKER_HOST`` points at a socket where nothing
listens (no engine), or at a minimal Docker API answering ``/version`` and ``/_ping`` (an
engine that answers), so the choice is tested the same on every machine.
"""

import json
import socketserver
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

from harness import paths
from harness.errors import UserError
from harness.run.fingerprint import fingerprint
from harness.settings import Settings
from harness.stack import processes
from harness.stack.container_specs import container_specs
from harness.stack.provider import (
    LocalProvider,
    choose,
    current_provider,
    engine_problem,
    existing_provider,
    open_provider,
    record_provider,
    recorded_provider,
)

pytest_plugins = ["pytester"]


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("BROKERBENCH_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture
def no_engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    address = f"unix://{tmp_path / 'nothing-listens.sock'}"
    monkeypatch.setenv("DOCKER_HOST", address)
    return address


class _DockerPing(BaseHTTPRequestHandler):
    """The two calls docker-py makes before a ping: the API version, then /_ping."""

    def do_GET(self) -> None:
        if self.path.endswith("/version"):
            body = json.dumps({"ApiVersion": "1.43", "Version": "24.0.0"}).encode()
        elif self.path.endswith("/_ping"):
            body = b"OK"
        else:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def address_string(self) -> str:  # a unix socket has no client address
        return "unix"

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _UnixHttpServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


@pytest.fixture
def answering_engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    path = tmp_path / "docker.sock"
    server = _UnixHttpServer(str(path), _DockerPing)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("DOCKER_HOST", f"unix://{path}")
    try:
        yield str(path)
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def running_local_service(home: Path) -> Iterator[Path]:
    """A live process recorded as the local stack's toxiproxy (its pid file is what counts)."""
    directory = paths.service_dir("toxiproxy")
    processes.start(directory, [sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        yield directory
    finally:
        processes.stop(directory)


def test_auto_falls_back_to_local_without_an_engine(home: Path, no_engine: str) -> None:
    problem = engine_problem()
    assert problem is not None and problem.startswith("no Docker engine answers")
    assert choose(Settings()) == ("local", problem)
    provider = open_provider(Settings(), choice="auto")
    assert isinstance(provider, LocalProvider)


def test_auto_matches_this_machines_engine(home: Path) -> None:
    """With the machine's own Docker settings: containers exactly when an engine answers
    (here, where `docker info` fails, this is the local fallback)."""
    name, reason = choose(Settings())
    problem = engine_problem()
    assert (name, reason) == (("local", problem) if problem else ("containers", reason))


def test_auto_chooses_containers_when_an_engine_answers(home: Path, answering_engine: str) -> None:
    assert engine_problem() is None
    assert choose(Settings()) == ("containers", "a Docker engine answers")


def test_auto_runs_a_kafka_cluster_locally_even_with_an_engine(
    home: Path, answering_engine: str
) -> None:
    cluster = Settings.model_validate({"stack": {"kafka": {"nodes": 3}}})
    assert choose(cluster) == (
        "local",
        "a Kafka cluster (stack.kafka.nodes > 1) runs as local processes",
    )
    with pytest.raises(UserError, match="runs only as local processes: use --provider local"):
        open_provider(cluster, choice="containers")


def test_auto_reuses_a_running_local_stack_even_with_an_engine(
    running_local_service: Path, answering_engine: str
) -> None:
    assert choose(Settings()) == ("local", "a local stack is already running in this home")


def test_containers_refused_while_a_recorded_local_stack_runs(
    running_local_service: Path, answering_engine: str
) -> None:
    record_provider("local")
    with pytest.raises(UserError, match=r"a local stack is running in .*brokerbench down"):
        open_provider(Settings(), choice="containers")


def test_explicit_containers_without_an_engine_names_the_fix(home: Path, no_engine: str) -> None:
    with pytest.raises(UserError, match=r"needs a Docker engine.*--provider local"):
        open_provider(Settings(), choice="containers")


def test_unknown_choice_is_a_user_error(home: Path) -> None:
    with pytest.raises(UserError, match="unknown provider 'podman'"):
        open_provider(Settings(), choice="podman")  # type: ignore[arg-type]


def test_record_round_trip_and_default(home: Path) -> None:
    assert recorded_provider() is None
    assert current_provider() == "local"
    record_provider("containers")
    assert recorded_provider() == "containers"
    assert json.loads((paths.state_dir() / "provider.json").read_text()) == {
        "provider": "containers"
    }
    (paths.state_dir() / "provider.json").write_text("not json")
    assert recorded_provider() is None


def test_down_and_status_use_the_recorded_provider(home: Path, no_engine: str) -> None:
    record_provider("local")
    assert isinstance(existing_provider(Settings()), LocalProvider)
    record_provider("containers")
    # The recorded containers stack cannot be reached without an engine: say so, do not guess.
    with pytest.raises(UserError, match="needs a Docker engine"):
        existing_provider(Settings())
    assert isinstance(existing_provider(Settings(), choice="local"), LocalProvider)


def test_local_down_of_the_whole_stack_forgets_the_record(home: Path) -> None:
    record_provider("local")
    LocalProvider(Settings(), ["moto"]).down()
    assert recorded_provider() == "local"
    LocalProvider(Settings()).down()
    assert recorded_provider() is None


def test_fingerprint_names_the_stack_provider(home: Path) -> None:
    assert fingerprint(None)["stack_provider"] == "local"
    record_provider("containers")
    assert fingerprint(None)["stack_provider"] == "containers"


def _cli(home: Path, docker_host: str, *args: str) -> subprocess.CompletedProcess[str]:
    import os

    env = dict(os.environ, BROKERBENCH_HOME=str(home), DOCKER_HOST=docker_host)
    return subprocess.run(
        [sys.executable, "-m", "harness", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_cli_up_with_containers_and_no_engine_is_one_line_exit_2(
    home: Path, no_engine: str
) -> None:
    completed = _cli(home, no_engine, "up", "--provider", "containers")
    assert completed.returncode == 2, completed.stderr
    lines = completed.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: the containers provider needs")


def test_cli_status_reports_the_provider(home: Path, no_engine: str) -> None:
    completed = _cli(home, no_engine, "status", "--json")
    assert completed.returncode == 1  # nothing runs in this fresh home
    document = json.loads(completed.stdout)
    assert document["provider"] == "local"
    assert {s["state"] for s in document["services"]} == {"stopped"}
    text = _cli(home, no_engine, "status")
    assert "provider: local" in text.stdout


def test_offline_service_container_is_configured_from_its_spec(home: Path, no_engine: str) -> None:
    """The testcontainers object as built for each spec (a pinned API version keeps the Docker
    client from calling the engine; nothing is started)."""
    containers = pytest.importorskip("harness.stack.containers")
    from testcontainers.core.network import Network

    offline = {"version": "1.43"}
    network = Network(docker_client_kw=offline)
    network.name = containers.network_name()
    for spec in container_specs(Settings()):
        labels = {containers.LABEL_HOME: str(paths.home()), containers.LABEL_SERVICE: spec.service}
        container = containers.ServiceContainer(spec, network, labels, docker_client_kw=offline)
        container._configure()
        assert container.image.endswith(spec.image)
        assert container.env == spec.environment
        assert container._name == containers.container_name(spec.service)
        assert container._network is network
        assert container._network_aliases == [spec.service]
        assert container._kwargs == {"hostname": spec.service, "labels": labels}
        assert container._command == (list(spec.command) if spec.command else None)
        assert container.ports == {f"{p}/tcp": ("127.0.0.1", p) for p in spec.ports.values()}
        copied = {path: data for data, path, *_ in container._transferable_specs}
        assert copied == {path: text.encode() for path, text in spec.files.items()}


CONTAINERS_SKIP = """
import pytest

pytest_plugins = ["pytester"]

@pytest.mark.containers
def test_needs_docker():
    pytest.skip("no Docker engine answers")
"""


def test_a_skipped_containers_test_does_not_fail_ci(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`containers` is not a CI-required marker: where no engine answers, CI reports the skip."""
    root = Path(__file__).resolve().parents[2]
    monkeypatch.setenv("PYTHONPATH", str(root))
    monkeypatch.setenv("CI", "true")
    pytester.makeconftest("from tests.conftest import *  # noqa: F403\n")
    pytester.makeini("[pytest]\nmarkers =\n    containers: needs a Docker engine\n")
    pytester.makepyfile(test_guard=CONTAINERS_SKIP)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    assert result.ret == 0
    result.assert_outcomes(skipped=1)
    from tests.conftest import REQUIRED_MARKERS

    assert "containers" not in REQUIRED_MARKERS


def test_cli_logs_of_a_containers_stack_points_at_docker_logs(home: Path, no_engine: str) -> None:
    record_provider("containers")
    completed = _cli(home, no_engine, "logs", "kafka")
    assert completed.returncode == 2
    assert completed.stderr.startswith(
        "error: kafka runs in a container: see `docker logs brokerbench-"
    )
