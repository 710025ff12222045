"""The tables of the saga's services. Each service creates its own copies in its own database;
the checks read them through these definitions (same names and columns everywhere)."""

from sqlalchemy import BigInteger, Column, Integer, MetaData, String, Table

_TEMPLATE = MetaData()

HANDLED = Table(
    "saga_handled",
    _TEMPLATE,
    Column("order_id", String(100), primary_key=True),
    Column("message", String(50), primary_key=True),
)
"""The idempotence guard: (saga, message type) pairs already handled by this service."""

LEDGER = Table(
    "saga_ledger",
    _TEMPLATE,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("order_id", String(100), nullable=False, index=True),
    Column("action", String(50), nullable=False),
    Column("event_id", String(100), nullable=False),
    Column("amount_cents", BigInteger, nullable=False),
    Column("started_ns", BigInteger, nullable=False),
    Column("at_ns", BigInteger, nullable=False),
)
"""Every action a service applied (one row per application, never updated): what the checks
count. ``event_id`` is the message that caused it."""

STOCK = Table(
    "stock",
    _TEMPLATE,
    Column("sku", Integer, primary_key=True),
    Column("available", BigInteger, nullable=False),
    Column("reserved", BigInteger, nullable=False),
    Column("shipped", BigInteger, nullable=False),
)
"""The Inventory service's stock; a SKU's row is created with the initial stock on first use."""

STOCK_SNAPSHOTS = Table(
    "stock_snapshots",
    _TEMPLATE,
    Column("snapshot", Integer, primary_key=True),
    Column("sku", Integer, primary_key=True),
    Column("available", BigInteger, nullable=False),
    Column("reserved", BigInteger, nullable=False),
    Column("shipped", BigInteger, nullable=False),
)
"""The stock as seen inside some Inventory transactions (``snapshot`` = the ledger row id)."""

SAGAS = Table(
    "sagas",
    _TEMPLATE,
    Column("order_id", String(100), primary_key=True),
    Column("state", String(50), nullable=False),
    Column("updated_ns", BigInteger, nullable=False),
)
"""The orchestrator's view of each saga: the last message it acted on."""


def metadata_with(*tables: Table) -> MetaData:
    """A service's own metadata holding copies of ``tables``."""
    metadata = MetaData()
    for table in tables:
        table.to_metadata(metadata)
    return metadata
