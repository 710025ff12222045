"""The result of one checker."""

from dataclasses import dataclass, field

MAX_EXAMPLES = 5
"""At most this many examples are kept per anomaly kind."""

NOTHING_RECEIVED = "unknown: nothing was received, so there is no delivery to judge"
NOTHING_SENT = "unknown: no send was recorded"
NOTHING_ACKNOWLEDGED = "unknown: no send was acknowledged, so none can be lost"
NOTHING_TO_JUDGE = frozenset({NOTHING_RECEIVED, NOTHING_SENT, NOTHING_ACKNOWLEDGED})
"""The notes of a verdict that has nothing to judge: it is unknown (``valid`` None), never a
vacuous pass, so an empty history cannot pass."""


@dataclass(frozen=True)
class Verdict:
    """What one checker concluded about a history, Jepsen style.

    ``valid`` is True (no anomaly the broker is held to), False (at least one), or None
    (unknown: the history cannot tell, e.g. acknowledged messages not read yet). ``counts`` holds
    every number the checker measured, anomalies or not; ``examples`` holds a few offending
    records (at most ``MAX_EXAMPLES`` per kind, each with a ``kind`` key), JSON-serialisable.
    """

    name: str
    valid: bool | None
    counts: dict[str, int] = field(default_factory=dict)
    examples: list[dict[str, object]] = field(default_factory=list)
    notes: str = ""

    def to_dict(self) -> dict[str, object]:
        """The verdict as plain JSON-serialisable data."""
        return {
            "name": self.name,
            "valid": self.valid,
            "counts": dict(self.counts),
            "examples": list(self.examples),
            "notes": self.notes,
        }
