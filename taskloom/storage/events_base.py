"""The event log's part of the storage protocol: streams, the hub's log, consumers, views.

Backends implement :class:`EventLogStore` beside their :class:`~taskloom.storage.base.Store`
(``sqlite_events.py``, ``postgres_events.py``), on the same connection and hub, so an append
can commit in the same transaction as anything else the store writes. Like the core
protocol, every method takes ``now`` from its caller.

- **Streams and the log.** An append writes events with stream versions ``last + 1, ...``
  and log positions from the hub's head counter. Positions are assigned in commit order:
  SQLite has one writer; on PostgreSQL the head counter's row stays locked by the appending
  transaction until it commits, so a reader can never see position ``p + 1`` before ``p``.
  Positions are never reused (purges and truncations leave holes, never rewinds).
- **Consumers** (projections, subscriptions, later event triggers) follow the log with a
  checkpoint per *partition*: an event belongs to partition ``bucket % partitions``, where
  ``bucket`` is a stable hash of its stream id (:func:`stream_bucket`), so one stream is
  always in one partition and in order. Partitions are leased with a fencing token, like
  episodes; a consumer's writes and its new checkpoint commit in one fenced transaction.
- **Transactions with effects.** :meth:`EventLogStore.append_events` and
  :meth:`EventLogStore.consumer_apply` take a synchronous *hook* run inside the
  transaction with an :class:`EventTx`: view reads and writes, further appends, parked
  events, savepoints. On SQLite the hook runs on the store's thread; on PostgreSQL in a
  worker thread whose statements the event loop runs on the transaction's connection.
- **Views** are JSON documents ``(view, key) -> doc`` of a projection's read model; the
  physical view name carries the projection's generation (``name#3``), so a rebuild
  fills a fresh copy beside the live one and :meth:`EventLogStore.view_swap` switches.
"""

from __future__ import annotations

import abc
import re
import zlib
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime

from taskloom.errors import WrongExpectedVersionError
from taskloom.events.records import ExpectedVersion, StreamState
from taskloom.storage.base import Message, NewInstance

__all__ = [
    "BUCKETS",
    "REPLAY",
    "STREAM_AFTER",
    "VIEW_OPS",
    "AppendHook",
    "ConsumerState",
    "EventData",
    "EventLogStore",
    "EventTx",
    "ParkedRecord",
    "PartitionLease",
    "StoredEvent",
    "StreamAppend",
    "TxHook",
    "ViewFilter",
    "check_expected",
    "check_field",
    "check_op",
    "decide_append",
    "stream_bucket",
    "view_name",
]

#: ``attempts`` of a parked event whose replay was asked for.
REPLAY = -1

#: Streams hash into this many buckets; a consumer's partition count must divide it.
BUCKETS = 256


def stream_bucket(stream_id: str) -> int:
    """The stable bucket of a stream: the same on every host and Python version."""
    return zlib.crc32(stream_id.encode("utf-8")) % BUCKETS


@dataclass(frozen=True)
class EventData:
    """An event to write: ``data`` and ``metadata`` as encoded JSON text."""

    id: str
    type: str
    data: str
    metadata: str | None = None


@dataclass(frozen=True)
class StreamAppend:
    """Events for one stream, with the expected version checked under the write lock."""

    stream_id: str
    expected: ExpectedVersion
    events: tuple[EventData, ...]


@dataclass(frozen=True)
class StoredEvent:
    """An event as the log holds it (``data`` and ``metadata`` still encoded)."""

    position: int
    stream_id: str
    version: int
    id: str
    type: str
    data: str
    metadata: str | None
    recorded_at: datetime


@dataclass(frozen=True)
class PartitionLease:
    """A consumer partition leased to one owner: its checkpoint and fencing token."""

    consumer: str
    partition: int
    partitions: int
    position: int
    lease_token: int
    # The event the consumer failed on last (its position and attempts so far), so a
    # retry count survives a restart.
    failed_position: int | None = None
    attempts: int = 0


@dataclass(frozen=True)
class ConsumerState:
    """One partition of a consumer as stored, for listings and lag."""

    consumer: str
    partition: int
    partitions: int
    position: int
    lease_owner: str | None
    lease_expires_at: datetime | None
    failed_position: int | None
    attempts: int
    last_error: str | None
    updated_at: datetime


@dataclass(frozen=True)
class ParkedRecord:
    """An event a consumer gave up on after its retries, with the last error."""

    consumer: str
    position: int
    stream_id: str
    version: int
    event_id: str
    type: str
    error: str
    attempts: int
    parked_at: datetime


@dataclass(frozen=True)
class ViewFilter:
    """A condition on a top-level field of view documents: ``op`` is one of
    ``= != < <= > >=``; ``value`` is encoded JSON (compared as JSON: numbers as
    numbers, strings as strings)."""

    field: str
    op: str
    value: str


VIEW_OPS = ("=", "!=", "<", "<=", ">", ">=")
_FIELD = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,39}")


def check_field(name: str) -> str:
    """A top-level document field usable in a query or an index (it is inlined in SQL)."""
    if not isinstance(name, str) or not _FIELD.fullmatch(name):
        raise ValueError(
            f"view field {name!r} is not a plain top-level field name: use letters, digits "
            "and underscores, starting with a letter or underscore, at most 40 characters"
        )
    return name


def check_op(op: str) -> str:
    if op not in VIEW_OPS:
        raise ValueError(f"unknown view filter operator {op!r}: use one of {', '.join(VIEW_OPS)}")
    return op


def check_expected(stream_id: str, expected: ExpectedVersion, current: int) -> None:
    """Raise :class:`WrongExpectedVersionError` unless a stream at version ``current``
    (0: absent or deleted) satisfies ``expected``."""
    if expected is StreamState.ANY:
        return
    if expected is StreamState.NO_STREAM:
        ok = current == 0
    elif expected is StreamState.STREAM_EXISTS:
        ok = current > 0
    else:
        ok = current == expected
    if not ok:
        raise WrongExpectedVersionError(stream_id, expected, current)


def decide_append(
    append: StreamAppend, current: int, found: dict[str, tuple[int, int]]
) -> tuple[int, int] | None:
    """Whether ``append`` repeats one already written: ``found`` maps those of its event
    ids already in the stream to their ``(version, position)``. None: none of them is
    there (append normally); the first append's result: all of them, in order; a partial
    or reordered repeat raises :class:`WrongExpectedVersionError`."""
    if not found:
        return None
    ids = [e.id for e in append.events]
    versions = [found[i][0] for i in ids if i in found]
    if len(versions) == len(ids) and versions == list(range(versions[0], versions[0] + len(ids))):
        return found[ids[-1]]
    raise WrongExpectedVersionError(
        append.stream_id,
        append.expected,
        current,
        f"{len(versions)} of its {len(ids)} event ids are already in the stream, "
        "not as one earlier append in this order",
    )


class EventTx(abc.ABC):
    """What a hook may do inside an event-log transaction (synchronous calls)."""

    @abc.abstractmethod
    def view_get(self, view: str, key: str) -> str | None: ...

    @abc.abstractmethod
    def view_put(self, view: str, key: str, doc: str) -> None: ...

    @abc.abstractmethod
    def view_delete(self, view: str, key: str) -> None: ...

    def view_write(self, view: str, docs: Mapping[str, str | None]) -> None:
        """Put each document (``None``: delete its key); backends may do it in fewer
        statements."""
        for key, doc in docs.items():
            if doc is None:
                self.view_delete(view, key)
            else:
                self.view_put(view, key, doc)

    @abc.abstractmethod
    def append(self, appends: Sequence[StreamAppend]) -> list[tuple[int, int]]:
        """Append as :meth:`EventLogStore.append_events` does, in this transaction;
        ``(version, position)`` per append. Raises ``WrongExpectedVersionError``."""

    @abc.abstractmethod
    def start(self, instances: Sequence[NewInstance], messages: Sequence[Message]) -> None:
        """Create orchestration instances and enqueue messages in this transaction
        (an id still running is left as it is, like a duplicate start)."""

    @abc.abstractmethod
    def park(self, consumer: str, event: StoredEvent, error: str, attempts: int) -> None: ...

    @abc.abstractmethod
    def unpark(self, consumer: str, position: int) -> None: ...

    @abc.abstractmethod
    def generation(self, name: str) -> int:
        """As :meth:`EventLogStore.view_generation`, inside this transaction."""

    @abc.abstractmethod
    def checkpoint(self, consumer: str) -> int | None:
        """The checkpoint of a one-partition consumer (None if it is not registered)."""

    @abc.abstractmethod
    def set_checkpoint(self, consumer: str, position: int) -> None:
        """Move a one-partition consumer's checkpoint (inline projections)."""

    @abc.abstractmethod
    def read_log(self, after: int, limit: int) -> list[StoredEvent]:
        """As :meth:`EventLogStore.read_log`, inside this transaction."""

    @abc.abstractmethod
    def savepoint(self) -> AbstractContextManager[None]:
        """A nested transaction: an exception inside undoes only what it wrote."""

    @abc.abstractmethod
    def schedule_deliveries(
        self, subscription: str, topic: str, events: Sequence[StoredEvent], due_at: datetime
    ) -> None:
        """Add a topic delivery row per event, due at ``due_at`` and published at the
        event's ``recorded_at`` (see :mod:`taskloom.storage.topics_base`); a row that
        exists already is left as it is."""


#: Runs inside an append's transaction with the events just written.
AppendHook = Callable[[EventTx, list[StoredEvent]], None]
#: Runs inside a consumer's transaction; returns the new checkpoint position.
TxHook = Callable[[EventTx], int]


class EventLogStore(abc.ABC):
    """The hub's event log, consumers and views (see the module docstring)."""

    # -- streams and the log ----------------------------------------------------------

    @abc.abstractmethod
    async def append_events(
        self, appends: Sequence[StreamAppend], now: datetime, hook: AppendHook | None = None
    ) -> list[tuple[int, int]]:
        """All appends in one transaction, or none: ``(version, position)`` of each
        append's last event. An append whose event ids are all already in its stream, in
        order, writes nothing and returns the original result; a partial repeat or a
        version mismatch raises ``WrongExpectedVersionError`` and writes nothing."""

    @abc.abstractmethod
    async def read_stream(
        self, stream_id: str, from_version: int | None, backwards: bool, limit: int | None
    ) -> list[StoredEvent]: ...

    @abc.abstractmethod
    async def stream_version(self, stream_id: str) -> int:
        """The version of the stream's last event; 0 if it does not exist (or was
        deleted)."""

    @abc.abstractmethod
    async def read_log(
        self,
        after: int,
        limit: int,
        types: Sequence[str] | None = None,
        partition: tuple[int, int] | None = None,
        stream: str | None = None,
    ) -> list[StoredEvent]:
        """Events with ``position > after``, in position order; ``partition`` is
        ``(index, count)``: only streams whose bucket is ``index`` modulo ``count``;
        ``stream``: only that stream's events."""

    async def read_partitions(
        self, after: Mapping[int, int], count: int, limit: int
    ) -> dict[int, list[StoredEvent]]:
        """:meth:`read_log` of several partitions of ``count``, each after its own
        position (``{index: after}``); backends may make it one query."""
        return {
            index: await self.read_log(position, limit, partition=(index, count))
            for index, position in after.items()
        }

    @abc.abstractmethod
    async def log_head(self) -> int:
        """The last position ever assigned in the hub's log (0 for none)."""

    @abc.abstractmethod
    async def delete_stream(self, stream_id: str, expected: ExpectedVersion, purge: bool) -> bool:
        """Soft delete (the stream reads as absent; appending recreates it, versions going
        on from the last) or, with ``purge``, remove its events from the log and forget it.
        False if there was nothing to delete."""

    @abc.abstractmethod
    async def truncate_stream(self, stream_id: str, before_version: int) -> int:
        """Remove the stream's events below ``before_version``; how many were removed."""

    # -- consumers ----------------------------------------------------------------------

    @abc.abstractmethod
    async def consumer_ensure(
        self, consumer: str, partitions: int, start: int, now: datetime
    ) -> None:
        """Create the consumer's partitions at checkpoint ``start`` if it has none."""

    @abc.abstractmethod
    async def consumer_lease(
        self, consumer: str, owner: str, now: datetime, ttl: float, limit: int
    ) -> list[PartitionLease]:
        """Lease up to ``limit`` partitions that are free or whose lease lapsed; each
        lease increments the partition's token."""

    @abc.abstractmethod
    async def consumer_renew(
        self, consumer: str, leases: Sequence[PartitionLease], now: datetime, ttl: float
    ) -> set[int]:
        """Extend the leases still held; the partitions still ours."""

    @abc.abstractmethod
    async def consumer_release(self, consumer: str, leases: Sequence[PartitionLease]) -> None: ...

    @abc.abstractmethod
    async def consumer_apply(
        self, lease: PartitionLease, now: datetime, hook: TxHook
    ) -> int | None:
        """Run ``hook`` in one transaction fenced on ``lease``; store its returned
        position as the checkpoint (and clear the failure record). ``None`` if the lease
        was lost (nothing is written)."""

    @abc.abstractmethod
    async def consumer_fail(
        self, lease: PartitionLease, position: int, attempts: int, error: str, now: datetime
    ) -> bool:
        """Record a failed attempt at the event at ``position`` (fenced)."""

    @abc.abstractmethod
    async def consumer_states(self, consumer: str | None = None) -> list[ConsumerState]: ...

    @abc.abstractmethod
    async def consumer_reset(self, consumer: str, position: int, now: datetime) -> int:
        """Move every partition's checkpoint to ``position`` and drop their leases (the
        running holders lose their fencing); the number of partitions moved."""

    @abc.abstractmethod
    async def consumer_parked(self, consumer: str) -> list[ParkedRecord]: ...

    @abc.abstractmethod
    async def consumer_replay(self, consumer: str, positions: Sequence[int] | None) -> int:
        """Ask for parked events (all when ``positions`` is None) to be delivered again:
        their ``attempts`` become :data:`REPLAY` until the consumer's runner, which holds
        the handlers, runs them and unparks them. How many were marked."""

    # -- views ----------------------------------------------------------------------------

    @abc.abstractmethod
    async def view_get(self, view: str, key: str) -> str | None: ...

    @abc.abstractmethod
    async def view_query(
        self,
        view: str,
        filters: Sequence[ViewFilter],
        limit: int,
        after_key: str | None = None,
    ) -> list[tuple[str, str]]:
        """``(key, doc)`` pairs matching every filter, by key."""

    @abc.abstractmethod
    async def view_count(self, view: str) -> int: ...

    @abc.abstractmethod
    async def view_index(self, view: str, fields: Sequence[str]) -> None:
        """Create an index per top-level field for this view (idempotent)."""

    @abc.abstractmethod
    async def view_generation(self, name: str) -> int:
        """The live generation of a projection's view (1 if never rebuilt)."""

    @abc.abstractmethod
    async def view_swap(
        self, name: str, generation: int, consumer: str, now: datetime, hook: TxHook
    ) -> int:
        """In one transaction that holds the log's write lock (no append can commit
        meanwhile): run ``hook`` (which brings the new generation up to the head and
        returns the position it reached), make ``generation`` live, set ``consumer``'s
        checkpoints to that position (dropping its leases: a runner still applying events to
        the old generation loses its fencing), and drop the old generation's documents."""

    @abc.abstractmethod
    async def view_drop(self, view: str) -> None:
        """Remove every document of a physical view."""


# Events of one stream after a log position, by the (hub, stream_id, version) index alone
# (``:hub``, ``:stream``, ``:after``; the backends put in their placeholders and their
# table for ``{events}``). Within a
# stream, positions rise with versions (an append takes both under the stream's lock and
# the head's), so "position > after" is "version > v", v being the version of the
# stream's last event at or below ``after``. Reads keep "position > after" beside it, so
# any v up to that one gives the same events; v is found, cheapest first:
# - the event at ``after`` itself, when it is in the stream (a consumer's checkpoint, the
#   last event of a reader's page): one seek;
# - 0 when the stream's first event lies above ``after`` (a read from the start);
# - else a binary search over the stream's versions, one seek per halving, from just
#   below its first version (a truncated stream starts above 1): ``lo`` only ever takes
#   a version whose position is at most ``after``, and a missing version counts as
#   above it, so the search never passes v.
_AT = "hub = :hub AND stream_id = :stream"
_MID = "(lo + hi + 1) / 2"
_UP = "p <= :after"
_LO = f"CASE WHEN {_UP} THEN {_MID} ELSE lo END"
_HI = f"CASE WHEN {_UP} THEN hi ELSE {_MID} - 1 END"
STREAM_AFTER = (
    f"stream_id = :stream AND version > coalesce("
    f"(SELECT version FROM events WHERE hub = :hub AND position = :after "
    f"AND stream_id = :stream), "
    f"(SELECT 0 WHERE :after < (SELECT position FROM events WHERE {_AT} "
    f"ORDER BY version LIMIT 1)), "
    f"(WITH RECURSIVE b(lo, hi, p) AS ("
    f"SELECT t.lo, t.hi, (SELECT position FROM events WHERE {_AT} AND "
    f"version = (t.lo + t.hi + 1) / 2) FROM (SELECT (SELECT min(version) FROM events WHERE "
    f"{_AT}) - 1 AS lo, (SELECT max(version) FROM events WHERE {_AT}) AS hi) AS t "
    f"UNION ALL SELECT {_LO}, {_HI}, (SELECT position FROM events WHERE {_AT} AND "
    f"version = ({_LO} + {_HI} + 1) / 2) FROM b WHERE lo < hi"
    f") SELECT max(lo) FROM b))"
).replace("FROM events", "FROM {events}")


def view_name(name: str, generation: int) -> str:
    """The physical view of a projection's generation."""
    return f"{name}#{generation}"
