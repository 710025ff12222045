"""A private PostgreSQL server for the tests: ``initdb`` in a temporary folder, on a free
loopback port, stopped afterwards (as the ``postgres`` user when the tests run as root, since
PostgreSQL refuses to run as root). TCP connections log in with a password (SCRAM), as a real
server's would; the password is set over the Unix socket, so it is never written to a file."""

import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import URL

PASSWORD = "pg-S3cret/@:%word"
"""The ``postgres`` role's password; URL-unsafe characters on purpose (they must be quoted)."""


def _binary(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(Path("/").glob(f"usr/lib/postgresql/*/bin/{name}"))
    return str(candidates[-1]) if candidates else None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextmanager
def postgres_server() -> Iterator[str]:
    """Yields a SQLAlchemy URL of a fresh server; skips when PostgreSQL is not installed."""
    initdb, pg_ctl = _binary("initdb"), _binary("pg_ctl")
    if initdb is None or pg_ctl is None:
        pytest.skip("PostgreSQL server binaries not found (Debian: apt-get install postgresql)")
    # Not under pytest's tmp_path: its parents are private to the user running the tests.
    root = Path(tempfile.mkdtemp(prefix="bb-postgres-"))
    as_user: list[str] = []
    if os.geteuid() == 0:
        as_user = ["runuser", "-u", "postgres", "--"]
        shutil.chown(root, "postgres")
    data, port = root / "data", _free_port()
    subprocess.run(
        [*as_user, initdb, "-D", str(data), "-U", "postgres", "--auth-local=trust",
         "--auth-host=scram-sha-256", "-E", "UTF8"],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    options = f"-h 127.0.0.1 -p {port} -k {root}"
    subprocess.run(
        [*as_user, pg_ctl, "-D", str(data), "-o", options, "-l", str(root / "log"), "-w",
         "start"],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    try:
        with psycopg.connect(host=str(root), port=port, user="postgres", autocommit=True) as db:
            db.execute(psycopg.sql.SQL("ALTER ROLE postgres PASSWORD {}").format(PASSWORD))
        url = URL.create("postgresql+psycopg", "postgres", PASSWORD, "127.0.0.1", port, "postgres")
        yield url.render_as_string(hide_password=False)
    finally:
        subprocess.run(
            [*as_user, pg_ctl, "-D", str(data), "-m", "fast", "-w", "stop"],
            check=False, capture_output=True, timeout=120,
        )  # fmt: skip
        shutil.rmtree(root, ignore_errors=True)
