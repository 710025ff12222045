"""The services' databases: SQLite files in the run directory by default, or one PostgreSQL
database (a schema per service and run) when the flow's ``database`` URL is given."""

from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, MetaData, create_engine, event
from sqlalchemy.engine import make_url

SQLITE_BUSY_SECONDS = 30


def database_url(configured: str | None, run_dir: Path, service: str, run_id: int) -> str:
    if configured is None:
        return f"sqlite:///{run_dir / 'db' / f'{service}.sqlite'}"
    url = make_url(configured)
    schema = f"bb_{run_id:016x}_{service.replace('-', '_')}"
    return str(url.update_query_dict({"options": f"-csearch_path={schema}"}))


def open_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite files get WAL and a busy timeout, because several consumer
    processes of one service write to the same file."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        assert parsed.database is not None
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_SECONDS})

        @event.listens_for(engine, "connect")
        def _connect(connection: Any, _: object) -> None:
            connection.isolation_level = None  # SQLAlchemy's recipe: we emit BEGIN ourselves
            cursor = connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        # A deferred transaction that reads, then writes after another process wrote, fails at
        # once (SQLITE_BUSY_SNAPSHOT) instead of waiting: take the write lock at BEGIN.
        @event.listens_for(engine, "begin")
        def _begin(connection: Connection) -> None:
            connection.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    engine = create_engine(url)
    options = parsed.query.get("options", "")
    schema = str(options).removeprefix("-csearch_path=")
    if schema:
        with engine.begin() as connection:
            connection.exec_driver_sql(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
    return engine


def create_tables(engine: Engine, *metadatas: MetaData) -> None:
    """Creates what is missing. Several consumer processes of one service do this at once: on
    PostgreSQL a transaction-scoped advisory lock (per schema) makes them take turns."""
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.exec_driver_sql("SELECT pg_advisory_xact_lock(hashtext(current_schema()))")
        for metadata in metadatas:
            metadata.create_all(connection, checkfirst=True)
