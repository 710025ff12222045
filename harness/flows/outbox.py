"""The transactional outbox: events a handler emits are stored in the same transaction as its
state change and published after commit; a row is deleted once the broker acknowledged it."""

import threading
import time
import zlib
from collections.abc import Callable
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Engine,
    Integer,
    LargeBinary,
    MetaData,
    Row,
    String,
    Table,
    delete,
    func,
    insert,
    select,
)

from harness.drivers.base import Producer, SendResult
from harness.flows.api import Emit
from harness.history.envelope import Envelope, encode
from harness.history.recorder import Recorder
from harness.history.schema import SendOutcome

OUTBOX_METADATA = MetaData()
OUTBOX = Table(
    "bb_outbox",
    OUTBOX_METADATA,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("owner", Integer, nullable=False, index=True),
    Column("topic", String(200), nullable=False),
    Column("key", String(200), nullable=False),
    Column("body", LargeBinary, nullable=False),
    Column("created_ns", BigInteger, nullable=False),
    # The row id is the published event's sequence number: SQLite must never reuse the id of a
    # deleted (published) row, or a later event would look like a duplicate publish.
    sqlite_autoincrement=True,
)
PUBLISH_BATCH = 500
FLUSH_SECONDS = 30.0


def store(db: Connection, owner: int, emits: list[Emit]) -> None:
    """Inside the handler's transaction."""
    if emits:
        now = time.time_ns()
        db.execute(
            insert(OUTBOX),
            [
                {"owner": owner, "topic": e.topic, "key": e.key, "body": e.body, "created_ns": now}
                for e in emits
            ],
        )


def key_id_of(key: str) -> int:
    return zlib.crc32(key.encode())


class OutboxPublisher:
    """Publishes one owner's outbox rows, recording each send in the history like a producer
    (producer id ``emitter_id``, sequence = the row id)."""

    def __init__(
        self,
        engine: Engine,
        *,
        owner: int,
        run_id: int,
        emitter_id: int,
        producers: Callable[[str], Producer],
        recorder: Recorder,
        partition_number: Callable[[str, int | None], int],
    ) -> None:
        self.engine = engine
        self.owner = owner
        self.run_id = run_id
        self.emitter_id = emitter_id
        self.producers = producers
        self.recorder = recorder
        self.partition_number = partition_number
        self.published: dict[str, int] = {}
        self._lock = threading.Lock()
        self._in_flight: set[int] = set()
        self._acked: set[int] = set()
        """Acknowledged rows not deleted yet."""

    def unpublished(self) -> int:
        """Rows of this owner still waiting for the broker's acknowledgement."""
        with self.engine.connect() as db:
            return int(
                db.execute(
                    select(func.count()).select_from(OUTBOX).where(OUTBOX.c.owner == self.owner)
                ).scalar_one()
            )

    def publish_pending(self) -> int:
        """Send this owner's stored rows not already in flight, wait (a while) for the acks,
        delete the acknowledged rows. A row whose send is still pending (the broker is slow or
        unreachable) is not sent again until its outcome arrives; a failed one is."""
        self._delete_acked()
        with self.engine.connect() as db:
            rows = db.execute(
                select(OUTBOX)
                .where(OUTBOX.c.owner == self.owner)
                .order_by(OUTBOX.c.id)
                .limit(PUBLISH_BATCH)
            ).all()
        used: set[str] = set()
        for row in rows:
            with self._lock:
                if row.id in self._in_flight or row.id in self._acked:
                    continue
                self._in_flight.add(row.id)
            used.add(row.topic)
            self._send(row)
        for topic in used:
            self.producers(topic).flush(FLUSH_SECONDS)
        return self._delete_acked()

    def _send(self, row: Row[Any]) -> None:
        key_id = key_id_of(row.key)
        envelope = Envelope(self.run_id, self.emitter_id, key_id, row.id, row.created_ns)
        token = self.recorder.send_invoked(
            self.emitter_id, key_id, row.id, row.created_ns, time.time_ns()
        )

        def completed(result: SendResult) -> None:
            self.recorder.send_completed(
                token,
                SendOutcome[result.outcome.name],
                time.time_ns(),
                partition=self.partition_number(row.topic, result.partition),
                offset=-1 if result.offset is None else result.offset,
            )
            with self._lock:
                self._in_flight.discard(row.id)
                if result.ok:
                    self._acked.add(row.id)
                    self.published[row.topic] = self.published.get(row.topic, 0) + 1

        self.producers(row.topic).send(
            row.key,
            encode(envelope, 0, row.body),
            completed,
            dedup_id=f"{self.emitter_id}-{key_id}-{row.id}",
        )

    def _delete_acked(self) -> int:
        with self._lock:
            done = list(self._acked)
        if done:
            with self.engine.begin() as db:
                db.execute(delete(OUTBOX).where(OUTBOX.c.id.in_(done)))
            with self._lock:
                self._acked.difference_update(done)
        return len(done)
