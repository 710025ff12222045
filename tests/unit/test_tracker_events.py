"""The tracker's generator is deterministic (checks regenerate every event from the history),
skewed, and makes poison pills the parser rejects."""

from collections import Counter

import pytest

from harness.flows.api import event_rng
from workloads.tracker.events import (
    EVENT_TYPES,
    MalformedEventError,
    TrackerConfig,
    generate,
    parse,
)


def test_the_same_identity_gives_the_same_event() -> None:
    config = TrackerConfig(rate=1)
    first = generate(config, 7, 3, event_rng(1, 2, 7, 3))
    assert first == generate(config, 7, 3, event_rng(1, 2, 7, 3))
    others = {generate(config, 7, seq, event_rng(1, 2, 7, seq)) for seq in range(50)}
    assert len(others) > 5


def test_poison_pills_come_at_about_the_configured_rate_and_never_parse() -> None:
    config = TrackerConfig(rate=1, poison_rate=0.1)
    outcomes: Counter[str] = Counter()
    for seq in range(5000):
        body = generate(config, 1, seq, event_rng(9, 0, 1, seq))
        try:
            click = parse(body)
        except MalformedEventError:
            outcomes["poison"] += 1
        else:
            assert click.type in EVENT_TYPES
            assert click.user == "user-1"
            assert (click.amount_cents > 0) == (click.type == "purchase")
            outcomes[click.type] += 1
    assert 400 < outcomes["poison"] < 600
    assert outcomes["page_view"] > outcomes["purchase"] > 0


@pytest.mark.parametrize(
    "body", [b"", b"{", b"[]", b'{"user": "u", "type": "fly", "session": "s", "amount_cents": 0}']
)
def test_malformed_bodies_are_rejected(body: bytes) -> None:
    with pytest.raises(MalformedEventError):
        parse(body)
