"""Where a run's load processes go: the suite's ``distribution:`` block and the round-robin
placement of producers and consumers over the master and its workers."""

from typing import Annotated, Literal

from pydantic import Field

from harness.errors import UserError
from harness.models import FrozenModel

MASTER = "master"
Side = Literal["master", "workers"]
DEFAULT_MASTER_PORT = 5571
"""``brokerbench run --master-bind`` default port (Locust's own default, 5557, is left free for
a plain Locust master on the same machine)."""
DEFAULT_MASTER_HOST = "127.0.0.1"


class Distribution(FrozenModel):
    """A suite's ``distribution:``: how many workers the master waits for, and which side runs
    the producer processes and which the consumers (spread round-robin over the workers)."""

    workers: Annotated[int, Field(ge=1, le=64)]
    producers: Side = "workers"
    consumers: Side = "master"


class Placement:
    """Hands out a machine per load process: ``master`` or a worker's name, round-robin per
    role over the workers in the order they joined."""

    def __init__(self, distribution: Distribution, workers: list[str]) -> None:
        self.distribution = distribution
        self.workers = workers
        self._next = {"producers": 0, "consumers": 0}

    def place(self, *, producer: bool) -> str:
        kind = "producers" if producer else "consumers"
        side: Side = getattr(self.distribution, kind)
        if side == MASTER or not self.workers:
            return MASTER
        worker = self.workers[self._next[kind] % len(self.workers)]
        self._next[kind] += 1
        return worker


def parse_bind(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (or ``HOST``, or ``:PORT``) as given to ``--master-bind`` / ``--master``."""
    host, _, port = text.rpartition(":") if ":" in text else (text, "", "")
    host = host.strip("[]") or DEFAULT_MASTER_HOST
    if not port:
        return host, DEFAULT_MASTER_PORT
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise UserError(f"{text!r}: give HOST:PORT with a port from 1 to 65535")
    return host, int(port)
