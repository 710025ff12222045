"""The redaction rules (harness/redaction.py), the plan files that keep secrets out of the run
folder (harness/load/plan_file.py) and the flow database URL that keeps its password."""

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from harness import redaction
from harness.flows.database import database_url
from harness.load.plan import DestinationPlan, RunShared
from harness.load.plan_file import SECRETS_VARIABLE, RedactingStream, read_plan, write_plan
from harness.redaction import MASK
from harness.settings import ExternalTarget, Settings

SECRET_KEYS = [
    "password", "sasl.password", "sasl.username", "sasl.mechanism", "secret_access_key",
    "aws_secret_access_key", "session_token", "api_key", "apiKey", "x-api-key", "credentials",
    "ssl.key.password", "ssl.keystore.password", "ssl.key.pem", "private_key", "Authorization",
    "client_secret", "passwd",
]  # fmt: skip
PLAIN_KEYS = [
    "keys", "key_distribution", "bootstrap_servers", "endpoint_url", "message_size",
    "access_key_id", "region", "project", "database", "partitions", "security.protocol",
]  # fmt: skip


@pytest.mark.parametrize("key", SECRET_KEYS)
def test_secret_keys(key: str) -> None:
    assert redaction.is_secret_key(key)


@pytest.mark.parametrize("key", PLAIN_KEYS)
def test_plain_keys(key: str) -> None:
    assert not redaction.is_secret_key(key)


@pytest.mark.parametrize(
    ("url", "redacted"),
    [
        ("postgresql+psycopg://app:pw%40x@db:5432/x", f"postgresql+psycopg://app:{MASK}@db:5432/x"),
        ("https://user:s3cret@host/path", f"https://user:{MASK}@host/path"),
        ("redis://:only-password@cache:6379/0", f"redis://:{MASK}@cache:6379/0"),
        ("postgresql://app@db/x", "postgresql://app@db/x"),
        ("http://127.0.0.1:9324", "http://127.0.0.1:9324"),
        ("see http://a:b@c and ftp://d:e@f", f"see http://a:{MASK}@c and ftp://d:{MASK}@f"),
    ],
)
def test_url_passwords_are_masked(url: str, redacted: str) -> None:
    assert redaction.redact_url(url) == redacted


def test_redact_masks_secret_keys_and_url_passwords_at_any_depth() -> None:
    document = {
        "targets": {
            "prod": {
                "driver": "kafka",
                "settings": {
                    "bootstrap_servers": "b:9092",
                    "client_config": {"sasl.password": "hunter22", "acks": "all"},
                },
            }
        },
        "params": {"database": "postgresql://u:pw-123@h/db", "keys": 10},
        "list": [{"token": "t-1"}, "plain"],
        "empty": {"password": None},
    }
    redacted = redaction.redact(document)
    assert redacted["targets"]["prod"]["settings"]["client_config"] == {
        "sasl.password": MASK,
        "acks": "all",
    }
    assert redacted["params"] == {"database": f"postgresql://u:{MASK}@h/db", "keys": 10}
    assert redacted["list"] == [{"token": MASK}, "plain"]
    assert redacted["empty"] == {"password": None}  # nothing to hide: kept as it was
    assert document["list"] == [{"token": "t-1"}, "plain"]  # a copy: the input is untouched


def test_split_then_merge_gives_the_document_back() -> None:
    document = {
        "a": {"secret": {"nested": [1, 2]}, "url": "mysql://u:p4ss@h/d"},
        "b": [{"api_key": "k-1"}],
    }
    public, secrets = redaction.split(document)
    assert "p4ss" not in json.dumps(public) and "k-1" not in json.dumps(public)
    assert redaction.merge(json.loads(json.dumps(public)), secrets) == document


def test_remembered_secrets_are_scrubbed_from_free_text() -> None:
    redaction.remember(["remembered-Value-99", "ab"])  # "ab": too short to mask in prose
    text = "auth failed for remembered-Value-99 at http://x:y@z (ab)"
    assert redaction.scrub(text) == f"auth failed for {MASK} at http://x:{MASK}@z (ab)"
    stream = io.StringIO()
    RedactingStream(stream).write("Traceback: remembered-Value-99\n")
    assert stream.getvalue() == f"Traceback: {MASK}\n"


def _shared(tmp_path: Path) -> RunShared:
    settings = Settings(
        targets={
            "cloud": ExternalTarget(
                driver="sqs",
                settings={"region": "eu-west-1", "secret_access_key": "plan-Secret-1"},
            )
        }
    )
    return RunShared(
        run_dir=str(tmp_path),
        run_id=1,
        target="cloud",
        settings=settings,
        destination=DestinationPlan(name="q"),
    )


def test_a_plan_file_holds_no_secret_and_reads_back_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plan = _shared(tmp_path)
    path = tmp_path / "plans" / "consumer-0.json"
    environment = write_plan(path, plan)
    written = path.read_text()
    assert "plan-Secret-1" not in written
    assert json.loads(written)["settings"]["targets"]["cloud"]["settings"]["region"] == "eu-west-1"
    assert "plan-Secret-1" in environment[SECRETS_VARIABLE]
    monkeypatch.setenv(SECRETS_VARIABLE, environment[SECRETS_VARIABLE])
    assert read_plan(path, RunShared) == plan
    assert SECRETS_VARIABLE not in os.environ  # not passed on to what it starts


def test_a_plan_without_secrets_needs_no_environment(tmp_path: Path) -> None:
    plan = _shared(tmp_path).model_copy(update={"settings": Settings()})
    path = tmp_path / "plan.json"
    assert write_plan(path, plan) == {}
    assert read_plan(path, RunShared) == plan


def test_only_the_runs_own_target_goes_into_its_plans() -> None:
    settings = Settings(
        targets={
            "a": ExternalTarget(driver="kafka", settings={"bootstrap_servers": "a:1"}),
            "b": ExternalTarget(driver="kafka", settings={"bootstrap_servers": "b:1"}),
        }
    )
    assert list(settings.for_target("a").targets) == ["a"]
    assert settings.for_target("kafka").targets == {}


def test_the_services_database_url_keeps_its_password(tmp_path: Path) -> None:
    """str(url) masks the password in SQLAlchemy 2: the services could not log in."""
    configured = "postgresql+psycopg://app:p%40ss%2Fw0rd@db:5432/bench"
    url = make_url(database_url(configured, tmp_path, "order-service", 7))
    assert url.password == "p@ss/w0rd"
    assert url.query["options"] == "-csearch_path=bb_0000000000000007_order_service"


def test_a_masked_password_is_left_to_libpq(tmp_path: Path) -> None:
    """A URL read back from result.json: PGPASSWORD or ~/.pgpass supply the password."""
    url = make_url(database_url(f"postgresql://app:{MASK}@db/bench", tmp_path, "s", 1))
    assert url.password is None
    assert url.username == "app"


CHILD = """
import sys
from harness.load.plan import RunShared
from harness.load.plan_file import read_plan
plan = read_plan(sys.argv[1], RunShared)
secret = plan.settings.targets["cloud"].settings["secret_access_key"]
print("connected with", secret == "plan-Secret-1", flush=True)
raise RuntimeError(f"login refused for {secret}")
"""


def test_a_load_process_logs_no_secret_it_was_given(tmp_path: Path) -> None:
    """A load process's stderr is its log file in the run folder: a traceback quoting a secret
    reaches it scrubbed."""
    path = tmp_path / "plans" / "producer-0.json"
    environment = write_plan(path, _shared(tmp_path))
    completed = subprocess.run(
        [sys.executable, "-c", CHILD, str(path)],
        capture_output=True, text=True, timeout=60, check=False, env=os.environ | environment,
    )  # fmt: skip
    assert completed.stdout == "connected with True\n"
    assert f"RuntimeError: login refused for {MASK}" in completed.stderr
    assert "plan-Secret-1" not in completed.stderr
