"""A flow's invariants over a run that acknowledged no event are unknown, never a vacuous
pass (the same rule as the history checkers' ``NOTHING_ACKNOWLEDGED``): the flows' own checks
over empty SQLite databases and an empty history, no broker."""

from pathlib import Path

import pytest

from harness.checkers.verdict import NOTHING_ACKNOWLEDGED
from harness.flows.evaluate import flow_verdicts
from harness.flows.registry import workload_kinds
from harness.history.schema import EVENTS, RECEIVES, SENDS
from harness.history.store import History

FLOWS = [kind for kind in workload_kinds() if kind != "throughput"]


def empty_history() -> History:
    return History(*(schema.empty_table() for schema in (SENDS, RECEIVES, EVENTS)))


@pytest.mark.parametrize("kind", FLOWS)
def test_a_flow_that_sent_nothing_passes_nothing(kind: str, tmp_path: Path) -> None:
    verdicts = flow_verdicts(kind, {"rate": 10}, tmp_path, 1, empty_history())
    assert verdicts, kind
    for verdict in verdicts:
        assert verdict.valid is None, verdict
        assert verdict.notes == NOTHING_ACKNOWLEDGED
