"""The services' databases: SQLite files in the run directory by default, or one PostgreSQL
database (a schema per service and run) when the flow's ``database`` URL is given.

A password in that URL reaches the service processes in their environment, never on disk
(``harness/load/plan_file.py``), and result.json keeps the URL with its password masked. So
``analyze`` of such a run connects without one: libpq then takes it from ``PGPASSWORD`` or
``~/.pgpass``, which also keep it out of the suite file in the first place.
"""

from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, MetaData, create_engine, event, text
from sqlalchemy.engine import URL, make_url

from harness.redaction import MASK

SQLITE_BUSY_SECONDS = 30
READ_PHASE = "brokerbench_read_phase"
"""Execution option of a connection that only reads (a service's ``prepare``)."""


def database_url(configured: str | None, run_dir: Path, service: str, run_id: int) -> str:
    if configured is None:
        return f"sqlite:///{run_dir / 'db' / f'{service}.sqlite'}"
    url = make_url(configured)
    if url.password == MASK:  # read back from result.json: libpq's own sources supply it
        url = URL.create(url.drivername, url.username, None, url.host, url.port, url.database,
                         url.query)  # fmt: skip
    schema = f"bb_{run_id:016x}_{service.replace('-', '_')}"
    with_schema = url.update_query_dict({"options": f"-csearch_path={schema}"})
    # str(url) masks the password (SQLAlchemy 2): the services must connect with it.
    return with_schema.render_as_string(hide_password=False)


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
        # once (SQLITE_BUSY_SNAPSHOT) instead of waiting: take the write lock at BEGIN, except
        # in a read phase (a WAL reader neither waits for nor blocks the writer).
        @event.listens_for(engine, "begin")
        def _begin(connection: Connection) -> None:
            read_only = connection.get_execution_options().get(READ_PHASE, False)
            connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

        return engine
    return create_engine(url)


def create_tables(engine: Engine, *metadatas: MetaData) -> None:
    """The service's schema (PostgreSQL) and tables, if missing. Several consumer processes of
    a service start at once, and ``IF NOT EXISTS`` is not safe against a concurrent creator in
    PostgreSQL: they take turns under an advisory lock."""
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            options = str(engine.url.query.get("options", ""))
            schema = options.removeprefix("-csearch_path=")
            connection.execute(text("SELECT pg_advisory_xact_lock(hashtext(:s))"), {"s": schema})
            if schema:
                connection.exec_driver_sql(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        for metadata in metadatas:
            metadata.create_all(connection, checkfirst=True)
