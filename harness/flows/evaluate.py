"""A flow's invariant checks over a stored run: its history plus its services' databases.

Used when a run ends and by ``brokerbench analyze`` (the databases stay in the run folder)."""

from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path
from typing import Any

from sqlalchemy.exc import OperationalError

from harness import redaction
from harness.checkers.verdict import NOTHING_ACKNOWLEDGED, Verdict
from harness.errors import UserError
from harness.flows.api import FlowState
from harness.flows.database import create_tables, database_url, open_engine
from harness.flows.dead_letters import DeadLetterReader
from harness.flows.plan import DEAD_LETTER_SERVICE, EMITTER_ID_BASE
from harness.flows.registry import flow_class
from harness.history.schema import SendOutcome
from harness.history.store import History


def entry_sends(history: History) -> list[tuple[int, int, int, str]]:
    """The generator's sends that may have reached the broker: (producer, key, seq, outcome)."""
    sends = history.sends
    producer = sends["producer_id"].to_numpy()
    outcome = sends["outcome"].to_numpy()
    keep = (producer < EMITTER_ID_BASE) & (outcome != SendOutcome.FAIL)
    names = {SendOutcome.OK: "ok", SendOutcome.UNKNOWN: "unknown"}
    rows = zip(
        producer[keep].tolist(),
        sends["key_id"].to_numpy()[keep].tolist(),
        sends["seq"].to_numpy()[keep].tolist(),
        outcome[keep].tolist(),
        strict=True,
    )
    return [(p, k, s, names[SendOutcome(o)]) for p, k, s, o in rows]


def flow_verdicts(
    kind: str, params: dict[str, Any], run_dir: Path, run_id: int, history: History
) -> list[Verdict]:
    flow = flow_class(kind)
    config = flow.config_model.model_validate(params)
    services = {service.name: service for service in flow.services}
    if any(topic.dead_letter for topic in flow.topics):
        services[DEAD_LETTER_SERVICE] = DeadLetterReader
    with ExitStack() as stack:
        databases = {}
        for name, service in services.items():
            engine = open_engine(database_url(config.database, run_dir, name, run_id))
            stack.callback(engine.dispose)
            try:
                create_tables(engine, service.metadata)  # a service that never started: empty
            except OperationalError as exc:
                raise _unreachable(name, exc) from exc
            databases[name] = stack.enter_context(engine.connect())
        state = FlowState(run_id=run_id, databases=databases, sends=entry_sends(history))
        verdicts = flow.check(config, state)
    if not any(outcome == "ok" for *_, outcome in state.sends):
        return [_nothing_to_judge(verdict) for verdict in verdicts]
    return verdicts


def _nothing_to_judge(verdict: Verdict) -> Verdict:
    """No event of the flow was acknowledged, so its invariants held of nothing: a pass is
    unknown, never a vacuous pass (a failure stays one: e.g. services acted on events nobody
    acknowledged sending)."""
    if verdict.valid is not True:
        return verdict
    return replace(verdict, valid=None, notes=NOTHING_ACKNOWLEDGED)


def _unreachable(service: str, exc: OperationalError) -> UserError:
    """A service's database refused the checks' connection (a run read back from result.json
    has its database password masked: libpq looks for it in PGPASSWORD or ~/.pgpass)."""
    reason = " ".join(str(exc.orig).split()) if exc.orig is not None else type(exc).__name__
    return UserError(
        f"the {service} service's database: {redaction.scrub(reason)[:300]} (a PostgreSQL "
        "password is never stored with the run: give it in PGPASSWORD or ~/.pgpass)"
    )
