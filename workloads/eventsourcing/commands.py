"""Account commands: what the generator publishes and the command handler parses."""

import json
import random
from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import Field

from harness.flows.api import FlowConfig

CommandType = Literal["open", "deposit", "withdraw", "transfer"]
COMMAND_MIX: tuple[tuple[CommandType, int], ...] = (
    ("deposit", 45),
    ("withdraw", 35),
    ("transfer", 20),
)
"""Weights of the commands after an account's first (its opening)."""


class EventSourcingConfig(FlowConfig):
    keys: Annotated[int, Field(ge=2, le=1_000_000)] = 50
    """Accounts (Zipf-skewed by default: hot accounts make concurrent appends likely)."""
    decide_ms: Annotated[float, Field(ge=0, le=1000)] = 0.0
    """Time the command handler spends deciding, between loading an aggregate and appending
    its events (business logic): a wider window makes optimistic-concurrency conflicts likely."""
    version_check: bool = True
    """Append with the expected version under a unique (account, version) constraint. ``false``
    builds the handler without it (to show what the checks catch); never for a measurement."""
    command_dedup: bool = True
    """Skip commands already decided (a redelivery or retried publish). ``false``: for tests."""
    projector_version_check: bool = True
    """The projector applies only the next version of each account (buffering the ones that
    arrive early, skipping the ones applied). ``false``: for tests."""


@dataclass(frozen=True)
class Command:
    type: CommandType
    account: str
    amount: int = 0
    """Cents, > 0 except for ``open``."""
    to: str | None = None
    """The credited account of a transfer."""

    def to_json(self) -> bytes:
        fields: dict[str, object] = {"type": self.type, "account": self.account}
        if self.type != "open":
            fields["amount"] = self.amount
        if self.to is not None:
            fields["to"] = self.to
        return json.dumps(fields, separators=(",", ":")).encode()


class MalformedCommandError(ValueError):
    pass


def account_name(key_id: int) -> str:
    return f"acct-{key_id}"


def generate(config: EventSourcingConfig, key_id: int, seq: int, rng: random.Random) -> bytes:
    """Command ``seq`` of account ``key_id``: the first opens it, the rest move money."""
    account = account_name(key_id)
    if seq == 0:
        return Command("open", account).to_json()
    kinds, weights = zip(*COMMAND_MIX, strict=True)
    kind = rng.choices(kinds, weights)[0]
    if kind == "deposit":
        return Command("deposit", account, rng.randint(100, 10_000)).to_json()
    if kind == "withdraw":
        return Command("withdraw", account, rng.randint(100, 8_000)).to_json()
    other = rng.randrange(config.keys - 1)
    target = other if other < key_id else other + 1  # any account but this one
    return Command("transfer", account, rng.randint(100, 5_000), account_name(target)).to_json()


def parse(body: bytes) -> Command:
    try:
        raw = json.loads(body)
        kind = str(raw["type"])
        command = Command(
            type=kind,  # type: ignore[arg-type]  # checked just below
            account=str(raw["account"]),
            amount=int(raw.get("amount", 0)),
            to=None if raw.get("to") is None else str(raw["to"]),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise MalformedCommandError(str(exc)) from exc
    if command.type not in ("open", "deposit", "withdraw", "transfer"):
        raise MalformedCommandError(f"unknown command {command.type!r}")
    if command.type != "open" and command.amount <= 0:
        raise MalformedCommandError(f"{command.type} of {command.amount} cents")
    if (command.type == "transfer") != (command.to is not None) or command.to == command.account:
        raise MalformedCommandError("a transfer names one other account, nothing else does")
    return command
