"""Checkers: pure functions from a run's history to verdicts (no I/O, no brokers).

The history is the ``sends`` and ``receives`` tables of ``docs/history.md`` (plus ``events``
and, for lag, the sampled backlog). Wrap the two tables in a ``HistoryIndex`` once, then call
any ``check_*`` on it, or call ``check_all`` on the tables. Each checker returns a ``Verdict``
with ``valid`` True / False / None (unknown), counts and a few examples; the module docstrings
define each anomaly precisely.

Everything is vectorised (numpy, pyarrow): a 10-million-message history checks in seconds.
"""

from harness.checkers.backlog import derive_backlog
from harness.checkers.compose import all_valid, check_all
from harness.checkers.duplicates import check_duplicates
from harness.checkers.fates import (
    check_failed_but_delivered,
    check_phantoms,
    check_unknown_outcomes,
)
from harness.checkers.index import HistoryIndex
from harness.checkers.lag import check_lag_recovery
from harness.checkers.lost import check_lost
from harness.checkers.ordering import check_ordering
from harness.checkers.verdict import MAX_EXAMPLES, Verdict

__all__ = [
    "MAX_EXAMPLES",
    "HistoryIndex",
    "Verdict",
    "all_valid",
    "check_all",
    "check_duplicates",
    "check_failed_but_delivered",
    "check_lag_recovery",
    "check_lost",
    "check_ordering",
    "check_phantoms",
    "check_unknown_outcomes",
    "derive_backlog",
]
