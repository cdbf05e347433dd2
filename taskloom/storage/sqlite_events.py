"""The SQLite backend's :class:`~taskloom.storage.events_base.EventLogStore`, in the
tables of ``sql/sqlite/0004_events.sql``.

SQLite has one writer at a time: every append runs in a ``BEGIN IMMEDIATE`` transaction,
so positions counted on from the last one assigned (:data:`HEAD`) are assigned in commit
order, and a reader that follows the log by position can never pass an event that
commits later.
Hooks run synchronously on the store's thread inside that transaction.
"""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import TYPE_CHECKING, Any

from taskloom.events.records import ExpectedVersion, StreamState
from taskloom.storage import sqlite_codec as codec
from taskloom.storage.base import (
    LOG,
    SUBSCRIPTIONS,
    Message,
    NewInstance,
)
from taskloom.storage.events_base import (
    REPLAY,
    STREAM_AFTER,
    AppendHook,
    ConsumerState,
    EventLogStore,
    ParkedRecord,
    PartitionLease,
    StoredEvent,
    StreamAppend,
    TxHook,
    ViewFilter,
    check_expected,
    check_field,
    check_op,
    decide_append,
    stream_bucket,
    view_name,
)
from taskloom.storage.sqlite_events_tx import SqliteEventTx

if TYPE_CHECKING:
    from taskloom.models import Status

__all__ = ["HEAD", "SqliteEventsMixin"]

_EVENT_COLUMNS = "position, stream_id, version, event_id, type, data, metadata, recorded_at"
_CONSUMER_COLUMNS = (
    "consumer, partition, partitions, position, lease_owner, lease_expires, "
    "failed_position, attempts, last_error, updated_at"
)


# Events per INSERT statement (12 parameters each, under SQLite's limit of 32,766).
_ROWS = 500
# An event's row; its version counts on from the stream row.
_EVENT_ROW = (
    "(?, ?, ?, "
    "coalesce((SELECT version FROM event_streams WHERE hub = ? AND stream_id = ?), 0) + ?, "
    "?, ?, ?, ?, ?, ?)"
)
#: The last position ever assigned in a hub (``?``): the log's highest, or the head row's,
#: which only purges and truncations write (they may remove the log's tail), so an append
#: writes one page fewer. Positions are never reused; SQLite's single writer keeps them
#: in commit order.
HEAD = (
    "SELECT max(coalesce((SELECT max(position) FROM events WHERE hub = :hub), 0), "
    "coalesce((SELECT position FROM event_log_head WHERE hub = :hub), 0))"
)
# Before events are deleted: the head row keeps the highest position the log holds.
_KEEP_HEAD = (
    "INSERT INTO event_log_head (hub, position) SELECT :hub, p FROM (SELECT max(position) "
    "AS p FROM events WHERE hub = :hub) WHERE p IS NOT NULL "
    "ON CONFLICT (hub) DO UPDATE SET position = max(position, excluded.position)"
)
_STREAM_SET = (
    "ON CONFLICT (hub, stream_id) DO UPDATE SET version = version + excluded.version, "
    "deleted = 0, first_version = CASE WHEN deleted THEN version + 1 ELSE first_version END"
)
# The stream row's update for each kind of expected version; no row back: refused.
_STREAM_ANY = (
    f"INSERT INTO event_streams (hub, stream_id, version) VALUES (?, ?, ?) {_STREAM_SET} "
    "RETURNING version"
)
_STREAM_NEW = (
    f"INSERT INTO event_streams (hub, stream_id, version) VALUES (?, ?, ?) {_STREAM_SET} "
    "WHERE deleted OR version = 0 RETURNING version"
)
_STREAM_EXISTS = (
    "UPDATE event_streams SET version = version + ? WHERE hub = ? AND stream_id = ? "
    "AND NOT deleted AND version > 0 RETURNING version"
)
_STREAM_AT = (
    "UPDATE event_streams SET version = version + ? WHERE hub = ? AND stream_id = ? "
    "AND version = ? AND NOT deleted RETURNING version"
)

# See STREAM_AFTER: the main read is forced onto the index, since SQLite might otherwise
# take the primary key's range of positions.
_STREAM_AFTER = STREAM_AFTER.replace("{events}", "events")


@functools.lru_cache(maxsize=64)
def _insert_events(rows: int) -> str:
    return (
        "INSERT INTO events (hub, position, stream_id, version, event_id, type, data, "
        "metadata, bucket, recorded_at) VALUES " + ", ".join([_EVENT_ROW] * rows)
    )


def _event(row: sqlite3.Row | tuple[Any, ...]) -> StoredEvent:
    return StoredEvent(
        position=row[0],
        stream_id=row[1],
        version=row[2],
        id=row[3],
        type=row[4],
        data=row[5],
        metadata=row[6],
        recorded_at=codec.dt(row[7]),
    )


def _stream_state(conn: sqlite3.Connection, hub: str, stream_id: str) -> tuple[int, int, bool]:
    """``(stored version, current version, exists as a row)`` of a stream."""
    row = conn.execute(
        "SELECT version, deleted FROM event_streams WHERE hub = ? AND stream_id = ?",
        (hub, stream_id),
    ).fetchone()
    if row is None:
        return 0, 0, False
    return row[0], 0 if row[1] else row[0], True


class SqliteEventsMixin(EventLogStore):
    """:class:`EventLogStore` for :class:`~taskloom.storage.sqlite.SqliteStore`."""

    if TYPE_CHECKING:  # provided by SqliteStore
        hub: str

        def _connection(self) -> sqlite3.Connection: ...

        def _errors(self, action: str) -> AbstractContextManager[None]: ...

        def _read(self, action: str) -> AbstractContextManager[sqlite3.Connection]: ...

        def _write(self, action: str) -> AbstractContextManager[sqlite3.Connection]: ...

        def _scalar(self, action: str, sql: str, params: Sequence[Any] | dict[str, Any]) -> Any: ...

        def _notify(self, kinds: str = ...) -> None: ...

        def _create(self, conn: sqlite3.Connection, new: NewInstance) -> Status | None: ...

        def _insert_messages(
            self, conn: sqlite3.Connection, messages: Sequence[Message]
        ) -> None: ...

    # -- streams and the log ----------------------------------------------------------

    def _append(
        self, conn: sqlite3.Connection, appends: Sequence[StreamAppend], now: datetime
    ) -> tuple[list[tuple[int, int]], list[StoredEvent]]:
        written: list[StoredEvent] = []
        results, _ = self._append_rows(conn, appends, now, written)
        return results, written

    def _append_rows(
        self,
        conn: sqlite3.Connection,
        appends: Sequence[StreamAppend],
        now: datetime,
        written: list[StoredEvent] | None,
    ) -> tuple[list[tuple[int, int]], bool]:
        """Write ``appends``: ``(version, position)`` each, and whether any wrote (not
        all repeats). Appends that write add their events to ``written`` (when given).
        A refusal raises with some of the appends written: every caller rolls back its
        transaction or savepoint then.

        The call reads the head (:data:`HEAD`) once; then an append is two statements:
        the insert of its events, which takes versions from the stream row and refuses an
        event id the stream already holds (a repeat: see :meth:`_repeat`); the stream
        row's update, which checks the expected version."""
        hub = self.hub
        at = codec.us(now)
        results: list[tuple[int, int]] = []
        wrote = False
        head = conn.execute(HEAD, {"hub": hub}).fetchone()[0]
        for append in appends:
            sid = append.stream_id
            n = len(append.events)
            bucket = stream_bucket(sid)
            try:
                for lo in range(0, n, _ROWS):
                    chunk = append.events[lo : lo + _ROWS]
                    params: list[Any] = []
                    for i, e in enumerate(chunk, lo + 1):
                        params += (hub, head + i, sid, hub, sid, i, e.id, e.type, e.data)
                        params += (e.metadata, bucket, at)
                    conn.execute(_insert_events(len(chunk)), params)
            except sqlite3.IntegrityError as exc:
                if "event_id" not in str(exc):
                    raise
                results.append(self._repeat(conn, append))
                continue
            expected = append.expected
            if expected is StreamState.ANY:
                row = conn.execute(_STREAM_ANY, (hub, sid, n)).fetchone()
            elif expected is StreamState.NO_STREAM or expected == 0:
                row = conn.execute(_STREAM_NEW, (hub, sid, n)).fetchone()
            elif expected is StreamState.STREAM_EXISTS:
                row = conn.execute(_STREAM_EXISTS, (n, hub, sid)).fetchone()
            else:
                row = conn.execute(_STREAM_AT, (n, hub, sid, expected)).fetchone()
            if row is None:
                _, current, _ = _stream_state(conn, hub, sid)
                check_expected(sid, expected, current)
                raise AssertionError(f"stream {sid!r} at {current} refused {expected!r}")
            last = row[0]
            head += n
            wrote = True
            if written is not None:
                first, stored = head - n + 1, last - n
                written += [
                    StoredEvent(
                        first + i, sid, stored + 1 + i, e.id, e.type, e.data, e.metadata, now
                    )
                    for i, e in enumerate(append.events)
                ]
            results.append((last, head))
        return results, wrote

    def _repeat(self, conn: sqlite3.Connection, append: StreamAppend) -> tuple[int, int]:
        """The result of an append some of whose event ids the stream already holds: the
        first append's, if it repeats one whole; else :class:`WrongExpectedVersionError`."""
        _, current, _ = _stream_state(conn, self.hub, append.stream_id)
        ids = [e.id for e in append.events]
        found: dict[str, tuple[int, int]] = {}
        for chunk in codec.chunks(ids):
            for event_id, version, position in conn.execute(
                "SELECT event_id, version, position FROM events WHERE hub = ? AND "
                f"stream_id = ? AND event_id IN ({codec.marks(len(chunk))})",
                (self.hub, append.stream_id, *chunk),
            ):
                found[event_id] = (version, position)
        repeat = decide_append(append, current, found)
        if repeat is None:  # the insert said otherwise
            raise AssertionError(f"no event id of {ids} found in stream {append.stream_id!r}")
        return repeat

    async def append_events(
        self, appends: Sequence[StreamAppend], now: datetime, hook: AppendHook | None = None
    ) -> list[tuple[int, int]]:
        conn = self._connection()
        # The events written are built only for a hook to see.
        written: list[StoredEvent] | None = None if hook is None else []
        kinds = ""
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                results, wrote = self._append_rows(conn, appends, now, written)
                if hook is not None and written:
                    tx = SqliteEventTx(self, conn, now)
                    hook(tx, written)
                    kinds = tx.kinds
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        except sqlite3.Error:
            with self._errors(f"append to {len(appends)} stream(s)"):
                raise
        if wrote or kinds:
            self._notify(LOG + kinds)
        return results

    async def read_stream(
        self, stream_id: str, from_version: int | None, backwards: bool, limit: int | None
    ) -> list[StoredEvent]:
        with self._read(f"read stream {stream_id!r}") as conn:
            row = conn.execute(
                "SELECT version, deleted, first_version FROM event_streams "
                "WHERE hub = ? AND stream_id = ?",
                (self.hub, stream_id),
            ).fetchone()
            if row is None or row[1]:
                return []
            first = row[2]
            if backwards:
                start = row[0] if from_version is None else from_version
                sql = "version <= ? AND version >= ? ORDER BY version DESC"
                params: tuple[Any, ...] = (start, first)
            else:
                start = max(first, 1 if from_version is None else from_version)
                sql = "version >= ? ORDER BY version"
                params = (start,)
            rows = conn.execute(
                f"SELECT {_EVENT_COLUMNS} FROM events WHERE hub = ? AND stream_id = ? AND {sql}"
                + ("" if limit is None else " LIMIT ?"),
                (self.hub, stream_id, *params, *(() if limit is None else (limit,))),
            ).fetchall()
        return [_event(r) for r in rows]

    async def stream_version(self, stream_id: str) -> int:
        value = self._scalar(
            f"read the version of stream {stream_id!r}",
            "SELECT CASE WHEN deleted THEN 0 ELSE version END FROM event_streams "
            "WHERE hub = ? AND stream_id = ?",
            (self.hub, stream_id),
        )
        return int(value or 0)

    def _read_log(
        self,
        conn: sqlite3.Connection,
        after: int,
        limit: int,
        types: Sequence[str] | None,
        partition: tuple[int, int] | None,
        stream: str | None = None,
    ) -> list[StoredEvent]:
        clauses = ["hub = :hub", "position > :after"]
        params: dict[str, Any] = {"hub": self.hub, "after": after, "limit": limit}
        if types is not None:
            names = {f"t{i}": t for i, t in enumerate(types)}
            clauses.append(f"type IN ({', '.join(':' + n for n in names)})" if types else "0")
            params.update(names)
        if partition is not None and partition[1] > 1:
            clauses.append("bucket % :partitions = :partition")
            params.update(partitions=partition[1], partition=partition[0])
        source, order = "events", "position"
        if stream is not None:
            clauses.append(_STREAM_AFTER)
            params["stream"] = stream
            source, order = "events INDEXED BY events_stream_version", "version"
        rows = conn.execute(
            f"SELECT {_EVENT_COLUMNS} FROM {source} WHERE {' AND '.join(clauses)} "
            f"ORDER BY {order} LIMIT :limit",
            params,
        ).fetchall()
        return [_event(r) for r in rows]

    async def read_log(
        self,
        after: int,
        limit: int,
        types: Sequence[str] | None = None,
        partition: tuple[int, int] | None = None,
        stream: str | None = None,
    ) -> list[StoredEvent]:
        with self._read("read the event log") as conn:
            return self._read_log(conn, after, limit, types, partition, stream)

    async def log_head(self) -> int:
        value = self._scalar("read the head of the event log", HEAD, {"hub": self.hub})
        return int(value or 0)

    async def delete_stream(self, stream_id: str, expected: ExpectedVersion, purge: bool) -> bool:
        action = f"{'purge' if purge else 'delete'} stream {stream_id!r}"
        with self._write(action) as conn:
            _, current, exists = _stream_state(conn, self.hub, stream_id)
            check_expected(stream_id, expected, current)
            if purge:
                conn.execute(_KEEP_HEAD, {"hub": self.hub})
                conn.execute(
                    "DELETE FROM events WHERE hub = ? AND stream_id = ?", (self.hub, stream_id)
                )
                conn.execute(
                    "DELETE FROM event_streams WHERE hub = ? AND stream_id = ?",
                    (self.hub, stream_id),
                )
                return exists
            if current == 0:
                return False
            conn.execute(
                "UPDATE event_streams SET deleted = 1, first_version = version + 1 "
                "WHERE hub = ? AND stream_id = ?",
                (self.hub, stream_id),
            )
        return True

    async def truncate_stream(self, stream_id: str, before_version: int) -> int:
        with self._write(f"truncate stream {stream_id!r}") as conn:
            conn.execute(_KEEP_HEAD, {"hub": self.hub})
            removed = conn.execute(
                "DELETE FROM events WHERE hub = ? AND stream_id = ? AND version < ?",
                (self.hub, stream_id, before_version),
            ).rowcount
            conn.execute(
                "UPDATE event_streams SET first_version = max(first_version, ?) "
                "WHERE hub = ? AND stream_id = ?",
                (before_version, self.hub, stream_id),
            )
        return int(removed)

    # -- consumers ----------------------------------------------------------------------

    async def consumer_ensure(
        self, consumer: str, partitions: int, start: int, now: datetime
    ) -> None:
        with self._write(f"register consumer {consumer!r}") as conn:
            rows = conn.execute(
                "SELECT partitions, min(position) FROM event_consumers "
                "WHERE hub = ? AND consumer = ? GROUP BY partitions",
                (self.hub, consumer),
            ).fetchall()
            if len(rows) == 1 and rows[0][0] == partitions:
                return
            token = 0
            if rows:
                start = min(r[1] for r in rows)
                # The new partitions' tokens start above every old one, so a lease of the
                # old partitioning stays fenced off.
                old = conn.execute(
                    "DELETE FROM event_consumers WHERE hub = ? AND consumer = ? "
                    "RETURNING lease_token",
                    (self.hub, consumer),
                ).fetchall()
                token = max(r[0] for r in old) + 1
            conn.executemany(
                "INSERT INTO event_consumers (hub, consumer, partition, partitions, position, "
                "lease_token, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    (self.hub, consumer, p, partitions, start, token, codec.us(now))
                    for p in range(partitions)
                ],
            )

    async def consumer_lease(
        self, consumer: str, owner: str, now: datetime, ttl: float, limit: int
    ) -> list[PartitionLease]:
        at = codec.us(now)
        free = (
            "SELECT partition FROM event_consumers WHERE hub = ? AND consumer = ? AND "
            "(lease_owner IS NULL OR lease_expires <= ?) ORDER BY partition LIMIT ?"
        )
        params = (self.hub, consumer, at, limit)
        if limit < 1 or self._scalar("look for free partitions", free, params) is None:
            return []
        with self._write(f"lease partitions of consumer {consumer!r}") as conn:
            parts = [r[0] for r in conn.execute(free, params)]
            rows = [
                conn.execute(
                    "UPDATE event_consumers SET lease_owner = ?, lease_expires = ?, "
                    "lease_token = lease_token + 1 WHERE hub = ? AND consumer = ? AND "
                    "partition = ? RETURNING partition, partitions, position, lease_token, "
                    "failed_position, attempts",
                    (owner, at + codec.seconds_to_us(ttl), self.hub, consumer, p),
                ).fetchone()
                for p in parts
            ]
        return [PartitionLease(consumer, *r) for r in rows]

    async def consumer_renew(
        self, consumer: str, leases: Sequence[PartitionLease], now: datetime, ttl: float
    ) -> set[int]:
        held: set[int] = set()
        if not leases:
            return held
        until = codec.us(now) + codec.seconds_to_us(ttl)
        with self._write(f"renew partitions of consumer {consumer!r}") as conn:
            for lease in leases:
                cur = conn.execute(
                    "UPDATE event_consumers SET lease_expires = ? WHERE hub = ? AND consumer = ? "
                    "AND partition = ? AND lease_token = ? AND lease_owner IS NOT NULL",
                    (until, self.hub, consumer, lease.partition, lease.lease_token),
                )
                if cur.rowcount:
                    held.add(lease.partition)
        return held

    async def consumer_release(self, consumer: str, leases: Sequence[PartitionLease]) -> None:
        if not leases:
            return
        with self._write(f"release partitions of consumer {consumer!r}") as conn:
            conn.executemany(
                "UPDATE event_consumers SET lease_owner = NULL, lease_expires = NULL "
                "WHERE hub = ? AND consumer = ? AND partition = ? AND lease_token = ?",
                [(self.hub, consumer, x.partition, x.lease_token) for x in leases],
            )

    def _fenced(self, conn: sqlite3.Connection, lease: PartitionLease) -> bool:
        row = conn.execute(
            "SELECT 1 FROM event_consumers WHERE hub = ? AND consumer = ? AND partition = ? "
            "AND lease_token = ? AND lease_owner IS NOT NULL",
            (self.hub, lease.consumer, lease.partition, lease.lease_token),
        ).fetchone()
        return row is not None

    async def consumer_apply(
        self, lease: PartitionLease, now: datetime, hook: TxHook
    ) -> int | None:
        with self._write(f"commit consumer {lease.consumer!r}") as conn:
            if not self._fenced(conn, lease):
                return None
            tx = SqliteEventTx(self, conn, now)
            position = hook(tx)
            conn.execute(
                "UPDATE event_consumers SET position = ?, failed_position = NULL, attempts = 0, "
                "last_error = NULL, updated_at = ? WHERE hub = ? AND consumer = ? AND "
                "partition = ?",
                (position, codec.us(now), self.hub, lease.consumer, lease.partition),
            )
        if tx.kinds:
            self._notify(tx.kinds)
        return position

    async def consumer_fail(
        self, lease: PartitionLease, position: int, attempts: int, error: str, now: datetime
    ) -> bool:
        with self._write(f"record a failure of consumer {lease.consumer!r}") as conn:
            cur = conn.execute(
                "UPDATE event_consumers SET failed_position = ?, attempts = ?, last_error = ?, "
                "updated_at = ? WHERE hub = ? AND consumer = ? AND partition = ? AND "
                "lease_token = ? AND lease_owner IS NOT NULL",
                (
                    position,
                    attempts,
                    error,
                    codec.us(now),
                    self.hub,
                    lease.consumer,
                    lease.partition,
                    lease.lease_token,
                ),
            )
        return cur.rowcount > 0

    async def consumer_states(self, consumer: str | None = None) -> list[ConsumerState]:
        sql = f"SELECT {_CONSUMER_COLUMNS} FROM event_consumers WHERE hub = ?"
        params: tuple[Any, ...] = (self.hub,)
        if consumer is not None:
            sql += " AND consumer = ?"
            params += (consumer,)
        with self._read("list consumers") as conn:
            rows = conn.execute(sql + " ORDER BY consumer, partition", params).fetchall()
        return [
            ConsumerState(
                consumer=r[0],
                partition=r[1],
                partitions=r[2],
                position=r[3],
                lease_owner=r[4],
                lease_expires_at=codec.dt_or_none(r[5]),
                failed_position=r[6],
                attempts=r[7],
                last_error=r[8],
                updated_at=codec.dt(r[9]),
            )
            for r in rows
        ]

    async def consumer_reset(self, consumer: str, position: int, now: datetime) -> int:
        with self._write(f"reset consumer {consumer!r}") as conn:
            cur = conn.execute(
                "UPDATE event_consumers SET position = ?, lease_owner = NULL, "
                "lease_expires = NULL, lease_token = lease_token + 1, failed_position = NULL, "
                "attempts = 0, last_error = NULL, updated_at = ? WHERE hub = ? AND consumer = ?",
                (position, codec.us(now), self.hub, consumer),
            )
        self._notify(LOG + SUBSCRIPTIONS)
        return int(cur.rowcount)

    async def consumer_parked(self, consumer: str) -> list[ParkedRecord]:
        with self._read(f"list parked events of {consumer!r}") as conn:
            rows = conn.execute(
                "SELECT consumer, position, stream_id, version, event_id, type, error, "
                "attempts, parked_at FROM event_parked WHERE hub = ? AND consumer = ? "
                "ORDER BY position",
                (self.hub, consumer),
            ).fetchall()
        return [
            ParkedRecord(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], codec.dt(r[8]))
            for r in rows
        ]

    async def consumer_replay(self, consumer: str, positions: Sequence[int] | None) -> int:
        sql = "UPDATE event_parked SET attempts = ? WHERE hub = ? AND consumer = ?"
        params: list[Any] = [REPLAY, self.hub, consumer]
        if positions is not None:
            sql += f" AND position IN ({codec.marks(len(positions))})" if positions else " AND 0"
            params += list(positions)
        with self._write(f"replay parked events of {consumer!r}") as conn:
            count = conn.execute(sql, params).rowcount
        self._notify(LOG)
        return int(count)

    # -- views ----------------------------------------------------------------------------

    async def view_get(self, view: str, key: str) -> str | None:
        value = self._scalar(
            f"read {key!r} of view {view!r}",
            "SELECT doc FROM event_views WHERE hub = ? AND view = ? AND key = ?",
            (self.hub, view, key),
        )
        return None if value is None else str(value)

    async def view_query(
        self,
        view: str,
        filters: Sequence[ViewFilter],
        limit: int,
        after_key: str | None = None,
    ) -> list[tuple[str, str]]:
        clauses = ["hub = ?", "view = ?"]
        params: list[Any] = [self.hub, view]
        if after_key is not None:
            clauses.append("key > ?")
            params.append(after_key)
        for f in filters:
            # The path is inlined so the expression matches the index of view_index.
            clauses.append(
                f"json_extract(doc, '$.{check_field(f.field)}') {check_op(f.op)} "
                "json_extract(?, '$')"
            )
            params.append(f.value)
        with self._read(f"query view {view!r}") as conn:
            rows = conn.execute(
                f"SELECT key, doc FROM event_views WHERE {' AND '.join(clauses)} "
                "ORDER BY key LIMIT ?",
                (*params, limit),
            ).fetchall()
        return [(r[0], r[1]) for r in rows]

    async def view_count(self, view: str) -> int:
        value = self._scalar(
            f"count view {view!r}",
            "SELECT count(*) FROM event_views WHERE hub = ? AND view = ?",
            (self.hub, view),
        )
        return int(value or 0)

    async def view_index(self, view: str, fields: Sequence[str]) -> None:
        with self._write(f"index view {view!r}") as conn:
            for name in fields:
                name = check_field(name)
                conn.execute(
                    f"CREATE INDEX IF NOT EXISTS event_views_f_{name} ON event_views "
                    f"(hub, view, json_extract(doc, '$.{name}'))"
                )

    async def view_generation(self, name: str) -> int:
        value = self._scalar(
            f"read the generation of view {name!r}",
            "SELECT generation FROM event_view_meta WHERE hub = ? AND name = ?",
            (self.hub, name),
        )
        return int(value or 1)

    async def view_swap(
        self, name: str, generation: int, consumer: str, now: datetime, hook: TxHook
    ) -> int:
        with self._write(f"swap in generation {generation} of view {name!r}") as conn:
            tx = SqliteEventTx(self, conn, now)
            position = hook(tx)
            row = conn.execute(
                "SELECT generation FROM event_view_meta WHERE hub = ? AND name = ?",
                (self.hub, name),
            ).fetchone()
            old = 1 if row is None else row[0]
            conn.execute(
                "INSERT INTO event_view_meta (hub, name, generation) VALUES (?, ?, ?) "
                "ON CONFLICT (hub, name) DO UPDATE SET generation = excluded.generation",
                (self.hub, name, generation),
            )
            # The live runner's lease is fenced off: it worked on the old generation.
            conn.execute(
                "UPDATE event_consumers SET position = ?, failed_position = NULL, attempts = 0, "
                "last_error = NULL, updated_at = ?, lease_owner = NULL, lease_expires = NULL, "
                "lease_token = lease_token + 1 WHERE hub = ? AND consumer = ?",
                (position, codec.us(now), self.hub, consumer),
            )
            if old != generation:
                conn.execute(
                    "DELETE FROM event_views WHERE hub = ? AND view = ?",
                    (self.hub, view_name(name, old)),
                )
        return position

    async def view_drop(self, view: str) -> None:
        with self._write(f"drop view {view!r}") as conn:
            conn.execute("DELETE FROM event_views WHERE hub = ? AND view = ?", (self.hub, view))
