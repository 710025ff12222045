"""The saga's invariants at quiescence (/work/shared/notes/checks.md, "Saga").

The checks regenerate every order the generator sent from the history (the order id is the
OrderCreated event's id), then read the services' ledgers, the stock and its snapshots:

- ``saga-terminal``: every saga reached exactly one terminal state (COMPLETED or COMPENSATED),
  the one its plan implies (declined payment, failed shipment or out of stock: COMPENSATED),
  within ``saga_timeout``; none stuck, no saga the generator never sent. Its counts carry the
  saga end-to-end latency (terminal time minus the OrderCreated's intended send time).
- ``saga-steps``: COMPLETED => reserve, charge, ship and commit applied once, no compensation;
  COMPENSATED => every applied step compensated exactly once, nothing shipped, no compensation
  without its action. A step is counted once per distinct message that applied it: the same
  message applied twice is ``saga-idempotence``'s finding.
- ``saga-conservation``: per SKU available + reserved + shipped == initial stock, all >= 0, at
  quiescence and in every snapshot; per saga charged - refunded is the order total if it
  COMPLETED and 0 if it was COMPENSATED (0 or the total while it has no terminal state).
- ``saga-idempotence``: no message changed a service's state twice (a redelivery changes
  nothing), whatever the delivery semantics.
"""

from collections import Counter, defaultdict
from dataclasses import dataclass, field

import numpy as np
from sqlalchemy import select

from harness.checkers.verdict import MAX_EXAMPLES, Verdict
from harness.flows.api import FlowState, event_id, event_rng
from workloads.saga.messages import Order, SagaConfig, generate_order
from workloads.saga.services import TERMINAL_ACTIONS
from workloads.saga.tables import LEDGER, STOCK, STOCK_SNAPSHOTS

STEPS = ("reserve", "charge", "ship", "commit")
COMPENSATIONS = {"reserve": "release", "charge": "refund"}
Levels = tuple[int, int, int]


@dataclass(frozen=True)
class Entry:
    service: str
    order_id: str
    action: str
    event_id: str
    amount_cents: int
    started_ns: int
    at_ns: int


@dataclass
class SagaRecords:
    """What the checks read, gathered once."""

    orders: dict[str, tuple[str, Order]]
    """Order id -> (send outcome: ok, unknown or failed, the order), regenerated from the
    history (a failed send only if its saga started)."""
    ledger: list[Entry]
    stock: dict[int, Levels]
    snapshots: dict[int, dict[int, Levels]] = field(default_factory=dict)

    def applied(self) -> dict[str, dict[str, set[str]]]:
        """Order id -> action -> the distinct messages that applied it."""
        applied: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
        for entry in self.ledger:
            applied[entry.order_id][entry.action].add(entry.event_id)
        return applied

    def terminals(self) -> dict[str, list[Entry]]:
        """Order id -> its terminal records, one per distinct message, oldest first."""
        found: dict[str, dict[str, Entry]] = defaultdict(dict)
        for entry in sorted(self.ledger, key=lambda e: e.at_ns):
            if entry.service == "order" and entry.action in TERMINAL_ACTIONS:
                found[entry.order_id].setdefault(entry.event_id, entry)
        return {order_id: list(by_event.values()) for order_id, by_event in found.items()}


def read_records(config: SagaConfig, state: FlowState, services: list[str]) -> SagaRecords:
    orders: dict[str, tuple[str, Order]] = {}
    for producer_id, key_id, seq, outcome in state.sends:
        rng = event_rng(state.run_id, producer_id, key_id, seq)
        orders[event_id(producer_id, key_id, seq)] = (outcome, generate_order(config, rng))
    ledger = [
        Entry(service, *row[1:])
        for service in services
        for row in state.databases[service].execute(select(LEDGER).order_by(LEDGER.c.id))
    ]
    for order_id in {entry.order_id for entry in ledger} - set(orders):
        # a saga whose OrderCreated send failed yet reached the broker (the log-level
        # failed-but-delivered check reports the send): judged like any other
        identity = _entry_identity(order_id)
        if identity is not None:
            rng = event_rng(state.run_id, *identity)
            orders[order_id] = ("failed", generate_order(config, rng))
    inventory = state.databases["inventory"]
    stock = {
        row.sku: (row.available, row.reserved, row.shipped)
        for row in inventory.execute(select(STOCK))
    }
    snapshots: dict[int, dict[int, Levels]] = defaultdict(dict)
    for row in inventory.execute(select(STOCK_SNAPSHOTS)):
        snapshots[row.snapshot][row.sku] = (row.available, row.reserved, row.shipped)
    return SagaRecords(orders, ledger, stock, dict(snapshots))


def _entry_identity(order_id: str) -> tuple[int, int, int] | None:
    """(producer, key, seq) of an order id (the OrderCreated event's id), if it is one."""
    parts = order_id.split("-")
    if len(parts) != 3 or not all(part.isdigit() for part in parts):
        return None
    producer_id, key_id, seq = (int(part) for part in parts)
    return producer_id, key_id, seq


def check_all(config: SagaConfig, state: FlowState, services: list[str]) -> list[Verdict]:
    records = read_records(config, state, services)
    return [
        check_terminal(config, records),
        check_steps(records),
        check_conservation(config, records),
        check_idempotence(config, records),
    ]


def planned_state(order: Order, out_of_stock: bool) -> str:
    if out_of_stock or order.fail_payment or order.fail_shipping:
        return "COMPENSATED"
    return "COMPLETED"


def _sagas(records: SagaRecords) -> list[str]:
    """The sagas that must end: acknowledged orders, and unknown-outcome ones that started."""
    started = {entry.order_id for entry in records.ledger}
    return sorted(
        o for o, (outcome, _) in records.orders.items() if outcome == "ok" or o in started
    )


class _Findings:
    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.examples: dict[str, list[dict[str, object]]] = defaultdict(list)

    def add(self, kind: str, **details: object) -> None:
        self.counts[kind] += 1
        if len(self.examples[kind]) < MAX_EXAMPLES:
            self.examples[kind].append({"kind": kind, **details})

    def listed(self) -> list[dict[str, object]]:
        return [example for examples in self.examples.values() for example in examples]

    def __bool__(self) -> bool:
        return bool(self.counts)


def check_terminal(config: SagaConfig, records: SagaRecords) -> Verdict:
    terminals = records.terminals()
    applied = records.applied()
    found = _Findings()
    states: Counter[str] = Counter()
    latencies: list[int] = []
    timeout_ns = int(config.saga_timeout * 1e9)
    for order_id in _sagas(records):
        ends = terminals.get(order_id, [])
        if not ends:
            found.add("stuck", order_id=order_id, applied=sorted(applied.get(order_id, {})))
            continue
        if len(ends) > 1:
            found.add("several-terminal-states", order_id=order_id, states=[e.action for e in ends])
            continue
        end = ends[0]
        states[end.action] += 1
        latency = end.at_ns - end.started_ns
        latencies.append(latency)
        if latency > timeout_ns:
            found.add("late", order_id=order_id, seconds=round(latency / 1e9, 3))
        order = records.orders[order_id][1]
        planned = planned_state(order, "reject" in applied.get(order_id, {}))
        if end.action != planned:
            found.add("wrong-outcome", order_id=order_id, state=end.action, planned=planned)
    for order_id in sorted(set(applied) - set(records.orders)):
        found.add("phantom", order_id=order_id)
    counts = {
        "sagas": len(_sagas(records)),
        "started_after_failed_send": sum(1 for o, _ in records.orders.values() if o == "failed"),
        "completed": states["COMPLETED"],
        "compensated": states["COMPENSATED"],
        "out_of_stock": sum(1 for actions in applied.values() if "reject" in actions),
        "payment_declined": sum(1 for actions in applied.values() if "decline" in actions),
        "shipping_failed": sum(1 for actions in applied.values() if "ship-failed" in actions),
        **{kind.replace("-", "_"): n for kind, n in found.counts.items()},
        **_latency_counts(latencies),
    }
    return Verdict(
        "saga-terminal",
        not found,
        counts,
        found.listed(),
        notes="every saga reached exactly one terminal state, as planned, within "
        f"{config.saga_timeout:g} s"
        if not found
        else "sagas stuck, ended twice, ended otherwise than planned, ended late, or never sent",
    )


def _latency_counts(latencies: list[int]) -> dict[str, int]:
    """Saga end-to-end latency percentiles in microseconds."""
    if not latencies:
        return {}
    values = np.asarray(latencies, dtype=np.float64) / 1e3
    marks = {"p50": 50, "p90": 90, "p99": 99, "max": 100}
    return {f"latency_{name}_us": int(np.percentile(values, q)) for name, q in marks.items()}


def check_steps(records: SagaRecords) -> Verdict:
    applied = records.applied()
    found = _Findings()
    for order_id, ends in sorted(records.terminals().items()):
        if len(ends) != 1 or order_id not in records.orders:
            continue  # saga-terminal's finding
        done = Counter({action: len(events) for action, events in applied[order_id].items()})
        for action, n in done.items():
            if n > 1:
                found.add("applied-twice", order_id=order_id, action=action, times=n)
        if ends[0].action == "COMPLETED":
            _completed_steps(order_id, done, found)
        else:
            _compensated_steps(order_id, done, found)
    counts = {
        "ledger_entries": len(records.ledger),
        **{kind.replace("-", "_"): n for kind, n in found.counts.items()},
    }
    return Verdict(
        "saga-steps",
        not found,
        counts,
        found.listed(),
        notes="completed sagas applied each step once and compensated nothing; compensated "
        "sagas compensated exactly the steps they applied"
        if not found
        else "steps missing, applied twice, left uncompensated, or compensated without action",
    )


def _completed_steps(order_id: str, done: Counter[str], found: _Findings) -> None:
    for step in STEPS:
        if done[step] == 0:
            found.add("step-missing", order_id=order_id, step=step)
    for compensation in COMPENSATIONS.values():
        if done[compensation]:
            found.add("compensated-but-completed", order_id=order_id, action=compensation)


def _compensated_steps(order_id: str, done: Counter[str], found: _Findings) -> None:
    for step in ("ship", "commit"):
        if done[step]:
            found.add("shipped-but-compensated", order_id=order_id, step=step)
    for step, compensation in COMPENSATIONS.items():
        if done[step] > done[compensation]:
            found.add("not-compensated", order_id=order_id, step=step)
        elif done[compensation] > done[step]:
            found.add("compensation-without-action", order_id=order_id, action=compensation)


def check_conservation(config: SagaConfig, records: SagaRecords) -> Verdict:
    found = _Findings()
    views = {"quiescence": records.stock} | {
        f"snapshot-{n}": levels for n, levels in sorted(records.snapshots.items())
    }
    for when, levels in views.items():
        for sku, (available, reserved, shipped) in sorted(levels.items()):
            if available + reserved + shipped != config.initial_stock:
                found.add(
                    "stock-not-conserved", at=when, sku=sku, levels=[available, reserved, shipped]
                )
            if min(available, reserved, shipped) < 0:
                found.add("negative-stock", at=when, sku=sku, levels=[available, reserved, shipped])
    net: Counter[str] = Counter()
    for entry in records.ledger:
        if entry.action == "charge":
            net[entry.order_id] += entry.amount_cents
        elif entry.action == "refund":
            net[entry.order_id] -= entry.amount_cents
    terminals = records.terminals()
    for order_id in sorted((set(net) | set(terminals)) & set(records.orders)):
        total = records.orders[order_id][1].total_cents
        ends = terminals.get(order_id, [])
        allowed = {0, total}
        if len(ends) == 1:
            allowed = {total} if ends[0].action == "COMPLETED" else {0}
        if net[order_id] not in allowed:
            found.add(
                "money-mismatch",
                order_id=order_id,
                charged_minus_refunded=net[order_id],
                total=total,
                state=[e.action for e in ends],
            )
    shipped = sum(levels[2] for levels in records.stock.values())
    counts = {
        "skus_touched": len(records.stock),
        "untouched_skus": config.skus - len(records.stock),
        "snapshots": len(records.snapshots),
        "units_shipped": shipped,
        "charged_minus_refunded_cents": sum(net.values()),
        **{kind.replace("-", "_"): n for kind, n in found.counts.items()},
    }
    return Verdict(
        "saga-conservation",
        not found,
        counts,
        found.listed(),
        notes="stock conserved and never negative (at quiescence and in every snapshot); every "
        "saga's charged - refunded matches its terminal state"
        if not found
        else "stock created, lost or negative, or money charged - refunded not matching the saga",
    )


def check_idempotence(config: SagaConfig, records: SagaRecords) -> Verdict:
    found = _Findings()
    seen = Counter((e.service, e.order_id, e.action, e.event_id) for e in records.ledger)
    for (service, order_id, action, message), n in sorted(seen.items()):
        if n > 1:
            found.add(
                "redelivery-applied-again",
                service=service,
                order_id=order_id,
                action=action,
                event_id=message,
                times=n,
            )
    counts = {
        "applications": len(records.ledger),
        "distinct_applications": len(seen),
        **{kind.replace("-", "_"): n for kind, n in found.counts.items()},
    }
    return Verdict(
        "saga-idempotence",
        not found,
        counts,
        found.listed(),
        notes=f"no message changed a service's state twice ({config.semantics})"
        if not found
        else "a message changed a service's state more than once: a redelivery was applied again",
    )
