"""The memory broker's state (a TEST DOUBLE, see ``harness.drivers.memory``): destinations of
partitioned logs, consumer groups with per-message acks, nacks, redelivery and dead letters,
and the knobs' misbehaviour. Pure Python behind one lock; ``server.py`` puts it on a socket.

Semantics, Kafka's shape with SQS's acks:

- A message goes to partition ``crc32(key) % partitions`` and gets the next offset there.
- A group's members share its partitions: partition ``p`` belongs to the ``p % n``-th of its
  ``n`` live members (sorted by id), so a partition is read by one member at a time, in order.
  A member that has not polled for ``SESSION_SECONDS`` is evicted; what it had in flight goes
  back to the group at once, as when it leaves (``close``).
- Each delivery leases the message to the member for its visibility timeout; an ack ends the
  lease for good, a nack or an expired lease redelivers it (before anything newer of its
  partition). After ``max_deliveries`` deliveries a nacked or expired message is moved to the
  destination's dead-letter destination (``<name>-dlq``).
"""

import heapq
import threading
import time
import zlib
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from harness.drivers.memory.knobs import Fates, Knobs

SESSION_SECONDS = 10.0
REORDER_HOLD_SECONDS = 0.5
"""How long a message held back for a reorder waits for the next message of its key."""
WAIT_SLICE_SECONDS = 0.05
"""A waiting poll looks again at least this often (expired leases, delayed or held messages)."""


class BrokerError(Exception):
    """A request the broker refuses (unknown destination, bad arguments)."""


@dataclass(slots=True)
class Message:
    key: str
    payload: bytes
    visible_at: float
    copies: int
    lost_for: str | None = None
    """The one group it is never delivered to (``Knobs.lose_only_for``)."""


@dataclass(slots=True)
class Lease:
    member: str
    deadline: float


@dataclass
class GroupPartition:
    """One group's progress through one partition."""

    ready: deque[int] = field(default_factory=deque)
    """Offsets never delivered to the group, in delivery order (a duplicated one twice)."""
    redeliver: list[int] = field(default_factory=list)
    """A heap of offsets to deliver again (nacked, lease expired, member gone)."""
    inflight: dict[int, Lease] = field(default_factory=dict)
    attempts: Counter[int] = field(default_factory=Counter)
    acked: set[int] = field(default_factory=set)


@dataclass(frozen=True, slots=True)
class Delivery:
    partition: int
    offset: int
    key: str
    payload: bytes
    attempt: int


@dataclass
class Group:
    partitions: list[GroupPartition]
    members: dict[str, float] = field(default_factory=dict)
    """Member id -> when it last polled (monotonic)."""
    visibility: dict[str, float] = field(default_factory=dict)
    """Member id -> its visibility timeout (seconds)."""

    def owned(self, member: str) -> list[int]:
        ordered = sorted(self.members)
        return [p for p in range(len(self.partitions)) if ordered[p % len(ordered)] == member]

    def release(self, member: str) -> int:
        """Everything ``member`` holds goes back to the group, to be delivered again."""
        released = 0
        for partition in self.partitions:
            gone = [
                offset for offset, lease in partition.inflight.items() if lease.member == member
            ]
            for offset in gone:
                del partition.inflight[offset]
                heapq.heappush(partition.redeliver, offset)
            released += len(gone)
        return released


class Destination:
    def __init__(
        self, name: str, partitions: int, max_deliveries: int | None, knobs: Knobs
    ) -> None:
        self.name = name
        self.logs: list[list[Message]] = [[] for _ in range(partitions)]
        self.live = [0] * partitions
        """Messages per partition that are to be delivered (all but the lost ones)."""
        self.groups: dict[str, Group] = {}
        self.max_deliveries = max_deliveries
        self.knobs = knobs
        self.fates = Fates(knobs)
        self.held: dict[tuple[int, str], tuple[int, float]] = {}
        """(partition, key) -> the offset held back for a reorder and until when."""
        self.stats: Counter[str] = Counter()

    def group(self, name: str) -> Group:
        """The group, created on first use reading from the start (like ``earliest``)."""
        group = self.groups.get(name)
        if group is None:
            group = Group([GroupPartition() for _ in self.logs])
            for log, partition in zip(self.logs, group.partitions, strict=True):
                for offset, message in enumerate(log):
                    if message.copies and message.lost_for != name:
                        partition.ready.append(offset)
            self.groups[name] = group
        return group

    def append(self, key: str, payload: bytes, now: float) -> tuple[int, int]:
        partition = zlib.crc32(key.encode()) % len(self.logs)
        log = self.logs[partition]
        offset = len(log)
        fate = self.fates.next()
        self.stats["appended"] += 1
        lost_for = None
        if fate.lost and self.knobs.lose_only_for is not None:
            lost_for = self.knobs.lose_only_for
            self.stats["lost"] += 1
        elif fate.lost:
            log.append(Message(key, payload, 0.0, 0))
            self.stats["lost"] += 1
            return partition, offset
        delay = self.knobs.delay_ms / 1000 if fate.delayed else 0.0
        log.append(Message(key, payload, now + delay, 2 if fate.duplicated else 1, lost_for))
        self.live[partition] += 1
        self.stats["delayed"] += fate.delayed
        self.stats["duplicated"] += fate.duplicated
        held = self.held.pop((partition, key), None)
        if held is not None:
            self._enqueue(partition, offset)
            self._enqueue(partition, held[0])
            self.stats["reordered"] += 1
        elif fate.reordered:
            self.held[(partition, key)] = (offset, now + REORDER_HOLD_SECONDS)
        else:
            self._enqueue(partition, offset)
        return partition, offset

    def release_held(self, now: float) -> None:
        """Messages held for a reorder whose next message of the key never came, alone."""
        for where, (offset, until) in list(self.held.items()):
            if until <= now:
                del self.held[where]
                self._enqueue(where[0], offset)

    def _enqueue(self, partition: int, offset: int) -> None:
        message = self.logs[partition][offset]
        for name, group in self.groups.items():
            if name != message.lost_for:
                group.partitions[partition].ready.extend([offset] * message.copies)


class MemoryBroker:
    """Every destination, and the members of their groups, behind one lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._wakeups: dict[str, threading.Condition] = {}
        """Member id -> what its waiting poll waits on (all on ``_lock``): a publish wakes only
        the members that own the partitions it appended to."""
        self._destinations: dict[str, Destination] = {}
        self._members: dict[str, tuple[str, str]] = {}
        self._next_member = 0

    def create(
        self,
        name: str,
        partitions: int,
        groups: Sequence[str],
        max_deliveries: int | None,
        knobs: Knobs,
    ) -> str | None:
        """Create (or reuse) ``name`` and its groups; its dead-letter destination's name if
        ``max_deliveries`` is set. A reused destination keeps its partitions and knobs."""
        if partitions < 1:
            raise BrokerError(f"{name}: partitions must be at least 1")
        with self._lock:
            destination = self._destinations.get(name)
            if destination is None:
                destination = Destination(name, partitions, max_deliveries, knobs)
                self._destinations[name] = destination
            dead_letter = None
            if destination.max_deliveries is not None:
                dead_letter = f"{name}-dlq"
                if dead_letter not in self._destinations:
                    self._destinations[dead_letter] = Destination(dead_letter, 1, None, Knobs())
            for group in groups:
                destination.group(group)
                if dead_letter is not None:
                    self._destinations[dead_letter].group(group)
            return dead_letter

    def delete(self, name: str) -> None:
        with self._lock:
            for gone in (name, f"{name}-dlq"):
                self._destinations.pop(gone, None)
            self._wake_all()

    def publish(
        self, name: str, keys: Sequence[str], payloads: Sequence[bytes]
    ) -> tuple[list[int], list[int]]:
        """Append every message; their partitions and offsets (lost ones have theirs too)."""
        now = time.monotonic()
        with self._lock:
            destination = self._destination(name)
            placed = [destination.append(k, p, now) for k, p in zip(keys, payloads, strict=True)]
            self._wake_owners(destination, {partition for partition, _ in placed})
        return [p for p, _ in placed], [o for _, o in placed]

    def join(self, name: str, group_name: str, visibility: float) -> str:
        """A new member of the group; it shares the group's partitions from now on."""
        with self._lock:
            destination = self._destination(name)
            if destination.knobs.refuse_consumers:
                raise BrokerError(f"{name}: refuses consumers (knob refuse_consumers)")
            group = destination.group(group_name)
            self._next_member += 1
            member = f"m{self._next_member:06d}"
            self._members[member] = (name, group_name)
            group.members[member] = time.monotonic()
            group.visibility[member] = visibility
            self._wakeups[member] = threading.Condition(self._lock)
            return member

    def leave(self, member: str) -> None:
        with self._lock:
            where = self._members.pop(member, None)
            self._wakeups.pop(member, None)
            destination = self._destinations.get(where[0]) if where else None
            if where is None or destination is None:
                return
            group = destination.group(where[1])
            group.members.pop(member, None)
            group.release(member)
            self._wake_all()

    def poll(self, member: str, max_messages: int, timeout: float) -> list[Delivery]:
        """Up to ``max_messages`` from the member's partitions; waits up to ``timeout`` for the
        first."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                now = time.monotonic()
                destination, group = self._member(member)
                group.members[member] = now  # (back) in the group
                self._maintain(destination, group, now)
                found = self._take(destination, group, member, max_messages, now)
                if found or now >= deadline:
                    return found
                self._wakeups[member].wait(min(deadline - now, WAIT_SLICE_SECONDS))

    def settle(
        self,
        name: str,
        group_name: str,
        acks: Sequence[tuple[int, int]],
        nacks: Sequence[tuple[int, int]],
    ) -> None:
        """Acks end leases for good; nacks redeliver (or dead-letter) at once."""
        with self._lock:
            destination = self._destination(name)
            group = destination.group(group_name)
            for partition, offset in acks:
                state = group.partitions[partition]
                state.inflight.pop(offset, None)
                if offset < len(destination.logs[partition]):
                    state.acked.add(offset)
            for partition, offset in nacks:
                state = group.partitions[partition]
                state.inflight.pop(offset, None)
                self._redeliver(destination, group, partition, offset)
            if nacks:
                self._wake_all()

    def backlog(self, name: str, group_name: str) -> int:
        with self._lock:
            destination = self._destination(name)
            group = destination.group(group_name)
            acked = sum(len(partition.acked) for partition in group.partitions)
            return sum(destination.live) - acked

    def stats(self, name: str) -> dict[str, int]:
        """What the knobs did to ``name`` so far: appended, lost, duplicated, reordered,
        delayed, dead_lettered."""
        with self._lock:
            return dict(self._destination(name).stats)

    def _wake_owners(self, destination: Destination, partitions: set[int]) -> None:
        for group in destination.groups.values():
            members = sorted(group.members)
            for owner in {members[p % len(members)] for p in partitions} if members else ():
                wakeup = self._wakeups.get(owner)
                if wakeup is not None:
                    wakeup.notify()

    def _wake_all(self) -> None:
        for wakeup in self._wakeups.values():
            wakeup.notify()

    def _destination(self, name: str) -> Destination:
        destination = self._destinations.get(name)
        if destination is None:
            raise BrokerError(f"no destination {name!r} (deleted, or never created)")
        return destination

    def _member(self, member: str) -> tuple[Destination, Group]:
        where = self._members.get(member)
        if where is None:
            raise BrokerError(f"unknown member {member!r}")
        destination = self._destination(where[0])
        return destination, destination.group(where[1])

    def _maintain(self, destination: Destination, group: Group, now: float) -> None:
        """Evict silent members, redeliver expired leases, release overdue reorder holds."""
        for member, seen in list(group.members.items()):
            if now - seen > SESSION_SECONDS:
                del group.members[member]
                group.release(member)
        for index, partition in enumerate(group.partitions):
            expired = [o for o, lease in partition.inflight.items() if lease.deadline <= now]
            for offset in expired:
                del partition.inflight[offset]
                self._redeliver(destination, group, index, offset)
        destination.release_held(now)

    def _redeliver(
        self, destination: Destination, group: Group, partition: int, offset: int
    ) -> None:
        state = group.partitions[partition]
        limit = destination.max_deliveries
        if limit is not None and state.attempts[offset] >= limit:
            message = destination.logs[partition][offset]
            dead_letters = self._destinations.get(f"{destination.name}-dlq")
            if dead_letters is not None:
                dead_letters.append(message.key, message.payload, time.monotonic())
            state.acked.add(offset)
            destination.stats["dead_lettered"] += 1
            return
        heapq.heappush(state.redeliver, offset)

    def _take(
        self, destination: Destination, group: Group, member: str, max_messages: int, now: float
    ) -> list[Delivery]:
        found: list[Delivery] = []
        lease = Lease(member, now + group.visibility.get(member, 30.0))
        for index in group.owned(member):
            state = group.partitions[index]
            log = destination.logs[index]
            while state.redeliver and len(found) < max_messages:
                offset = heapq.heappop(state.redeliver)
                if offset in state.acked or offset in state.inflight:
                    continue
                found.append(self._deliver(state, index, offset, log[offset], lease))
            while state.ready and len(found) < max_messages:
                offset = state.ready[0]
                message = log[offset]
                if message.visible_at > now:
                    break  # head of line: the partition waits for its delayed message
                state.ready.popleft()
                found.append(self._deliver(state, index, offset, message, lease))
            if len(found) >= max_messages:
                break
        return found

    @staticmethod
    def _deliver(
        state: GroupPartition, partition: int, offset: int, message: Message, lease: Lease
    ) -> Delivery:
        state.attempts[offset] += 1
        state.inflight[offset] = lease
        return Delivery(partition, offset, message.key, message.payload, state.attempts[offset])
