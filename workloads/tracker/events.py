"""Clickstream events: what the generator publishes and the aggregator parses."""

import json
import random
from dataclasses import dataclass
from typing import Annotated

from pydantic import Field

from harness.flows.api import FlowConfig

EVENT_TYPES = ("page_view", "item_click", "add_to_cart", "purchase")
EVENT_WEIGHTS = (60, 25, 10, 5)
EVENTS_PER_SESSION = 20


class TrackerConfig(FlowConfig):
    keys: Annotated[int, Field(ge=1, le=1_000_000)] = 1000
    """Users (Zipf-skewed by default: a few hot users produce most events)."""
    poison_rate: Annotated[float, Field(ge=0, le=0.5)] = 0.01
    """Fraction of events published malformed: they must end in the dead-letter destination."""
    dedup: bool = True
    """Dedup by event id in the update's transaction. ``false`` builds the aggregator without
    it (for showing what the check catches); never turn it off for a real measurement."""
    dead_letter_poison: bool = True
    """``false`` builds an aggregator that drops malformed events (acks them) instead of
    rejecting them to the dead-letter destination: for demonstrating the poison check only."""


@dataclass(frozen=True)
class Click:
    user: str
    type: str
    session: str
    amount_cents: int

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "user": self.user,
                "type": self.type,
                "session": self.session,
                "amount_cents": self.amount_cents,
            },
            separators=(",", ":"),
        ).encode()


class MalformedEventError(ValueError):
    pass


def user_name(key_id: int) -> str:
    return f"user-{key_id}"


def generate(config: TrackerConfig, key_id: int, seq: int, rng: random.Random) -> bytes:
    """One event of user ``key_id``; a poison pill (truncated JSON) at ``poison_rate``."""
    kind = rng.choices(EVENT_TYPES, EVENT_WEIGHTS)[0]
    click = Click(
        user=user_name(key_id),
        type=kind,
        session=f"s{key_id}-{seq // EVENTS_PER_SESSION}",
        amount_cents=rng.randint(100, 20_000) if kind == "purchase" else 0,
    )
    body = click.to_json()
    if rng.random() < config.poison_rate:
        return body[: len(body) // 2]
    return body


def parse(body: bytes) -> Click:
    try:
        raw = json.loads(body)
        click = Click(
            user=str(raw["user"]),
            type=str(raw["type"]),
            session=str(raw["session"]),
            amount_cents=int(raw["amount_cents"]),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise MalformedEventError(str(exc)) from exc
    if click.type not in EVENT_TYPES:
        raise MalformedEventError(f"unknown event type {click.type!r}")
    return click
