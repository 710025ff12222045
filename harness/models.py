"""Building blocks of every config model (settings, drivers' endpoints, suites), in a module
that imports nothing of brokerbench's, so any of them can use these without an import cycle."""

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

Port = Annotated[int, Field(ge=1, le=65535)]
LOOPBACK = "127.0.0.1"
"""Every local service binds here, and only here."""


class FrozenModel(BaseModel):
    """Config: immutable, unknown fields refused, and every float finite (``rate: .inf`` or
    ``.nan`` is a typo to report at validation, not a crash mid-run)."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)
