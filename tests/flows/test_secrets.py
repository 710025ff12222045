"""No secret leaves memory: secrets planted in the targets (an SQS ``secret_access_key``, Kafka
``sasl.*`` settings, a target the suite does not use) and in the flow's PostgreSQL URL, which
the services really log in with, appear nowhere in the run folders (plans, logs, result.json,
history, databases) nor in any report format, nor in what the commands print.

Real brokers (the local ElasticMQ and Kafka, reached as user targets) and a private PostgreSQL
server with password authentication."""

import json
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
import yaml
from sqlalchemy import create_engine, text

from harness.redaction import MASK
from harness.settings import Settings
from harness.stack.manager import Stack
from tests.flows.postgres import PASSWORD, postgres_server
from tests.flows.runs import check, invalid_checks, result_of

pytestmark = [pytest.mark.broker, pytest.mark.postgres]

SQS_SECRET = "sqs-Secret-Access-Key-4711"
KAFKA_USER = "kafka-sasl-user-0815"
KAFKA_SECRET = "kafka-Sasl-Password-0815"
UNUSED_SECRET = "unused-target-token-1234"
PLANTED = (SQS_SECRET, KAFKA_USER, KAFKA_SECRET, UNUSED_SECRET, PASSWORD, quote(PASSWORD, ""))


@pytest.fixture(scope="module")
def postgres() -> Iterator[str]:
    with postgres_server() as url:
        yield url


def _targets(settings: Settings) -> dict[str, object]:
    ports = settings.ports
    return {
        "targets": {
            "sqs-remote": {
                "driver": "sqs",
                "settings": {
                    "endpoint_url": f"http://127.0.0.1:{ports.elasticmq}",
                    "access_key_id": "bb-key-id",
                    "secret_access_key": SQS_SECRET,
                },
            },
            "kafka-remote": {
                "driver": "kafka",
                "settings": {
                    "bootstrap_servers": f"127.0.0.1:{ports.kafka}",
                    # Ignored on a plaintext listener, but secrets all the same.
                    "client_config": {"sasl.username": KAFKA_USER, "sasl.password": KAFKA_SECRET},
                },
            },
            "unused": {
                "driver": "kafka",
                "settings": {"bootstrap_servers": "127.0.0.1:1", "api_token": UNUSED_SECRET},
            },
        }
    }


def _brokerbench(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "harness", *args],
        capture_output=True, text=True, timeout=600, check=False, env=env,
    )  # fmt: skip


def _leaks(root: Path) -> list[str]:
    """Every (file, secret) pair where a planted secret occurs in a file under ``root``."""
    found = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        content = path.read_bytes()
        found += [f"{path}: {s}" for s in PLANTED if s.encode() in content]
    return found


def test_no_secret_reaches_the_run_folder_or_a_report(
    stack: Stack, settings: Settings, postgres: str, tmp_path: Path
) -> None:
    assert f":{quote(PASSWORD, '')}@" in postgres  # the URL carries the password
    config = tmp_path / "config" / "brokerbench.yaml"
    config.parent.mkdir()
    config.write_text(json.dumps(_targets(settings)), encoding="utf-8")
    params = {"rate": 50, "duration": 3, "warmup": 1, "database": postgres, "consumers": 1}
    suite = tmp_path / "config" / "secrets.yaml"
    suite.write_text(
        yaml.safe_dump({
            "name": "secrets",
            "brokers": ["sqs-remote", "kafka-remote"],
            "workloads": [{"name": "tracker", "kind": "tracker", "params": params}],
        }),
        encoding="utf-8",
    )  # fmt: skip
    out = tmp_path / "out"
    env = os.environ | {"BROKERBENCH_CONFIG": str(config)}
    ran = _brokerbench(
        "run", str(suite), "-o", str(out / "runs"), "--metrics-port", "0", "--no-broker-warmup",
        env=env,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-3000:]
    run_dirs = sorted(p.parent for p in (out / "runs").rglob("result.json"))
    assert len(run_dirs) == 2

    for run_dir in run_dirs:
        result = result_of(run_dir)
        assert result["valid"] is True, invalid_checks(result)
        # The services logged in with the password: their state is in the server.
        schema = f"bb_{result['run_id']}_aggregator"
        engine = create_engine(postgres)
        with engine.connect() as db:
            users = db.execute(text(f'SELECT count(*) FROM "{schema}".user_aggregates'))
            assert users.scalar_one() == check(result, "tracker-aggregates")["counts"]["users"]
        engine.dispose()
        # Masked, not dropped: a reader still sees that a password was given.
        assert f"postgres:{MASK}@127.0.0.1" in result["workload"]["params"]["database"]
        plans = "".join(p.read_text() for p in (run_dir / "plans").glob("*.json"))
        assert MASK in plans

    # analyze of a PostgreSQL run: the masked password is left to libpq (PGPASSWORD here);
    # without it, one line saying where to give it.
    analyzed = _brokerbench("analyze", str(run_dirs[0]), env=env | {"PGPASSWORD": PASSWORD})
    assert analyzed.returncode == 0, analyzed.stderr[-3000:]
    refused = _brokerbench("analyze", str(run_dirs[1]), env=env | {"PGPASSWORD": "wrong"})
    assert refused.returncode == 2, refused.stderr[-3000:]
    assert "password authentication failed" in refused.stderr
    assert "PGPASSWORD" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr

    reports = out / "reports"
    reported = _brokerbench(
        "report", str(out / "runs"), "--html", str(reports / "report.html"),
        "--md", str(reports / "report.md"), "--junit", str(reports / "report.xml"),
        "--csv", str(reports / "report.csv"),
        env=env,
    )  # fmt: skip
    assert reported.returncode == 0, reported.stderr[-3000:]
    assert len(list(reports.iterdir())) == 4

    assert _leaks(out) == []
    # Nothing secret left: results, plans, history and reports readable by others (0644).
    umask = os.umask(0)
    os.umask(umask)
    shared = [run_dirs[0] / "result.json", *run_dirs[0].glob("plans/*.json"),
              *run_dirs[0].glob("history/*.parquet"), *reports.iterdir()]  # fmt: skip
    assert {p.name: stat.S_IMODE(p.stat().st_mode) for p in shared} == {
        p.name: 0o644 & ~umask for p in shared
    }
    printed = "".join(p.stdout + p.stderr for p in (ran, analyzed, refused, reported))
    assert [s for s in PLANTED if s in printed] == []
