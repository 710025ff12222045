"""Write files so that a reader sees the old content or the new one, never a torn mix.

Files are created ``0644`` less the process's umask, as ``open`` would create them (a
temporary file from ``tempfile.mkstemp`` would be ``0600``): nothing brokerbench writes holds
a secret (``harness/redaction.py``), and results and reports are meant to be shared.
"""

import os
import secrets
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pyarrow as pa  # type: ignore[import-untyped, unused-ignore]

FILE_MODE = 0o644
"""Before the umask."""


def create_temporary(path: Path) -> tuple[int, Path]:
    """A new, empty file beside ``path`` (to be renamed onto it): its descriptor and path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        temporary = path.parent / f".{path.name}.{secrets.token_hex(6)}"
        try:
            return os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE), temporary
        except FileExistsError:
            continue


def write_text_atomically(path: Path, text: str) -> None:
    fd, temporary = create_temporary(path)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        temporary.replace(path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def write_parquet_atomically(path: Path, table: "pa.Table") -> None:
    """``pyarrow.parquet.write_table`` to a temporary file renamed into place."""
    import pyarrow.parquet as pq  # type: ignore[import-untyped, unused-ignore]

    fd, temporary = create_temporary(path)
    os.close(fd)
    try:
        pq.write_table(table, str(temporary))
        temporary.replace(path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
