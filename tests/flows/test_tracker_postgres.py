"""The tracker with its state in PostgreSQL (the flow's ``database`` URL) instead of SQLite:
same invariants, and the aggregates really are in the server, one schema per run and service."""

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from harness.stack.manager import Stack
from tests.flows.postgres import postgres_server
from tests.flows.runs import check, invalid_checks, result_of, run_suite

pytestmark = [pytest.mark.broker, pytest.mark.postgres]


@pytest.fixture(scope="module")
def postgres() -> Iterator[str]:
    with postgres_server() as url:
        yield url


def test_the_tracker_keeps_its_state_in_postgres(
    stack: Stack, postgres: str, tmp_path: Path
) -> None:
    params = {"rate": 100, "duration": 4, "warmup": 1, "database": postgres, "consumers": 2}
    suite = {
        "name": "tracker-pg",
        "brokers": ["elasticmq"],
        "workloads": [{"name": "tracker", "kind": "tracker", "params": params}],
    }
    [run_dir] = run_suite(suite, tmp_path)
    result = result_of(run_dir)
    assert result["valid"] is True, invalid_checks(result)
    assert not (run_dir / "db").exists()
    schema = f"bb_{result['run_id']}_aggregator"
    engine = create_engine(postgres)
    with engine.connect() as db:
        users = db.execute(text(f'SELECT count(*) FROM "{schema}".user_aggregates')).scalar_one()
        events = db.execute(text(f'SELECT count(*) FROM "{schema}".processed_events')).scalar_one()
    engine.dispose()
    aggregates = check(result, "tracker-aggregates")["counts"]
    assert users == aggregates["users"] > 0
    assert events == aggregates["acked_clicks"]
