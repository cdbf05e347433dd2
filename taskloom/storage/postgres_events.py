"""The PostgreSQL backend's :class:`~taskloom.storage.events_base.EventLogStore`, in the
tables of ``sql/postgres/0004_events.sql``.

**Positions in commit order.** An append first locks its streams' rows (inserted if
missing, then ``SELECT ... FOR UPDATE``, in stream-id order so concurrent multi-stream
appends never deadlock), checks versions and event ids, and only then takes positions
with ``UPDATE event_log_head SET position = position + n RETURNING position``. That row
stays locked until the transaction ends, so the next append waits for it; PostgreSQL
makes a transaction visible to new snapshots before it releases its locks, so a reader
that can see position ``p + 1`` can see ``p``. A rollback undoes its counter update too:
no position a reader could pass is ever left behind.

**Hooks** are synchronous: they run in a worker thread (``asyncio.to_thread``) while the
transaction's coroutine waits, and each :class:`EventTx` call made from that thread runs
its statements on the transaction's connection through the event loop
(``run_coroutine_threadsafe``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from psycopg import AsyncConnection, AsyncCursor

from taskloom.errors import WrongExpectedVersionError
from taskloom.events.records import ExpectedVersion
from taskloom.storage.base import (
    EPISODES,
    LOG,
    STATUS,
    ActivityResult,
    Message,
    NewInstance,
    refused,
    result_kinds,
    timed,
)
from taskloom.storage.events_base import (
    REPLAY,
    AppendHook,
    ConsumerState,
    EventLogStore,
    EventTx,
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

if TYPE_CHECKING:
    from taskloom.models import Status

__all__ = ["PostgresEventsMixin"]

Conn = AsyncConnection[tuple[Any, ...]]
Cur = AsyncCursor[tuple[Any, ...]]
T = TypeVar("T")

_EVENT_COLUMNS = "position, stream_id, version, event_id, type, data, metadata, recorded_at"
_CONSUMER_COLUMNS = (
    "consumer, partition, partitions, position, lease_owner, lease_expires, "
    "failed_position, attempts, last_error, updated_at"
)


def _event(row: Sequence[Any]) -> StoredEvent:
    return StoredEvent(*row[:8])


class _Tx(EventTx):
    """:class:`EventTx` on a transaction's connection, called from the hook's thread."""

    def __init__(
        self, store: PostgresEventsMixin, cur: Cur, now: datetime, loop: asyncio.AbstractEventLoop
    ) -> None:
        self._store = store
        self._cur = cur
        self._now = now
        self._loop = loop
        self._savepoints = 0
        self.kinds = ""

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    async def _rows(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        await self._cur.execute(sql, params)
        return await self._cur.fetchall() if self._cur.description else []

    def _q(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        return self._call(self._rows(sql.replace("{s}", self._store._s), params))

    def view_get(self, view: str, key: str) -> str | None:
        rows = self._q(
            "SELECT doc::text FROM {s}.event_views WHERE hub = %s AND view = %s AND key = %s",
            [self._store.hub, view, key],
        )
        return rows[0][0] if rows else None

    def view_put(self, view: str, key: str, doc: str) -> None:
        self._q(
            "INSERT INTO {s}.event_views (hub, view, key, doc) VALUES (%s, %s, %s, %s::jsonb) "
            "ON CONFLICT (hub, view, key) DO UPDATE SET doc = excluded.doc",
            [self._store.hub, view, key, doc],
        )

    def view_delete(self, view: str, key: str) -> None:
        self._q(
            "DELETE FROM {s}.event_views WHERE hub = %s AND view = %s AND key = %s",
            [self._store.hub, view, key],
        )

    def append(self, appends: Sequence[StreamAppend]) -> list[tuple[int, int]]:
        # In a savepoint: a hook that catches a refused append keeps none of its appends.
        with self.savepoint():
            results, written = self._call(self._store._append(self._cur, appends, self._now))
        if written:
            self.kinds += LOG
        return results

    def start(self, instances: Sequence[NewInstance], messages: Sequence[Message]) -> None:
        async def run() -> None:
            for new in instances:
                await self._store._create(self._cur, new)
            await self._store._insert_messages(self._cur, messages)

        self._call(run())
        if instances or messages:
            self.kinds += EPISODES + STATUS + timed([*messages, *(n.start for n in instances)])

    def park(self, consumer: str, event: StoredEvent, error: str, attempts: int) -> None:
        self._q(
            "INSERT INTO {s}.event_parked (hub, consumer, position, stream_id, version, "
            "event_id, type, error, attempts, parked_at) VALUES "
            "(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (hub, consumer, position) "
            "DO UPDATE SET error = excluded.error, attempts = excluded.attempts, "
            "parked_at = excluded.parked_at",
            [
                self._store.hub,
                consumer,
                event.position,
                event.stream_id,
                event.version,
                event.id,
                event.type,
                error,
                attempts,
                self._now,
            ],
        )

    def unpark(self, consumer: str, position: int) -> None:
        self._q(
            "DELETE FROM {s}.event_parked WHERE hub = %s AND consumer = %s AND position = %s",
            [self._store.hub, consumer, position],
        )

    def read_log(self, after: int, limit: int) -> list[StoredEvent]:
        return self._call(self._store._read_log(self._cur, after, limit, None, None))

    def generation(self, name: str) -> int:
        rows = self._q(
            "SELECT generation FROM {s}.event_view_meta WHERE hub = %s AND name = %s",
            [self._store.hub, name],
        )
        return int(rows[0][0]) if rows else 1

    def checkpoint(self, consumer: str) -> int | None:
        # Locked: an inline append and the runner catching up never both apply an event.
        rows = self._q(
            "SELECT position FROM {s}.event_consumers WHERE hub = %s AND consumer = %s "
            "ORDER BY partition FOR UPDATE",
            [self._store.hub, consumer],
        )
        return min(int(r[0]) for r in rows) if rows else None

    def set_checkpoint(self, consumer: str, position: int) -> None:
        self._q(
            "UPDATE {s}.event_consumers SET position = %s, updated_at = %s "
            "WHERE hub = %s AND consumer = %s",
            [position, self._now, self._store.hub, consumer],
        )

    @contextmanager
    def _savepoint(self) -> Iterator[None]:
        self._savepoints += 1
        name = f"tl_sp{self._savepoints}"
        self._q(f"SAVEPOINT {name}", [])
        try:
            yield
        except BaseException:
            self._q(f"ROLLBACK TO SAVEPOINT {name}", [])
            self._q(f"RELEASE SAVEPOINT {name}", [])
            raise
        self._q(f"RELEASE SAVEPOINT {name}", [])

    def savepoint(self) -> AbstractContextManager[None]:
        return self._savepoint()


class PostgresEventsMixin(EventLogStore):
    """:class:`EventLogStore` for :class:`~taskloom.storage.postgres.PostgresStore`."""

    if TYPE_CHECKING:  # provided by PostgresStore
        hub: str
        _s: str

        async def _run(self, op: Callable[[Conn], Awaitable[T]]) -> T: ...

        def _notify(self, kinds: str = ...) -> None: ...

        async def _create(
            self, cur: Cur, new: NewInstance, retried: bool = False
        ) -> Status | None: ...

        async def _insert_messages(self, cur: Cur, messages: Sequence[Message]) -> None: ...

    async def _fetch(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        async def op(conn: Conn) -> list[tuple[Any, ...]]:
            cur = await conn.execute(sql.replace("{s}", self._s), params)
            return await cur.fetchall() if cur.description else []

        return await self._run(op)

    async def _exec(self, sql: str, params: Sequence[Any]) -> int:
        async def op(conn: Conn) -> int:
            async with conn.transaction():
                cur = await conn.execute(sql.replace("{s}", self._s), params)
                return cur.rowcount

        return await self._run(op)

    async def _in_tx(
        self, now: datetime, body: Callable[[Cur, _Tx], Awaitable[T]]
    ) -> tuple[T, str]:
        loop = asyncio.get_running_loop()

        async def op(conn: Conn) -> tuple[T, str]:
            async with conn.transaction(), conn.cursor() as cur:
                tx = _Tx(self, cur, now, loop)
                return await body(cur, tx), tx.kinds

        return await self._run(op)

    # -- streams and the log ----------------------------------------------------------

    async def _append(
        self, cur: Cur, appends: Sequence[StreamAppend], now: datetime
    ) -> tuple[list[tuple[int, int]], list[StoredEvent]]:
        s, hub = self._s, self.hub
        streams = sorted({a.stream_id for a in appends})
        await cur.executemany(
            f"INSERT INTO {s}.event_streams (hub, stream_id, version) VALUES (%s, %s, 0) "
            "ON CONFLICT (hub, stream_id) DO NOTHING",
            [(hub, sid) for sid in streams],
        )
        await cur.execute(
            f"SELECT stream_id, version, deleted FROM {s}.event_streams WHERE hub = %s AND "
            "stream_id = ANY(%s) ORDER BY stream_id FOR UPDATE",
            [hub, streams],
        )
        state = {r[0]: (int(r[1]), bool(r[2])) for r in await cur.fetchall()}
        results: list[tuple[int, int] | None] = []
        plans: list[tuple[StreamAppend, int]] = []
        for append in appends:
            stored, deleted = state[append.stream_id]
            current = 0 if deleted else stored
            await cur.execute(
                f"SELECT event_id, version, position FROM {s}.events WHERE hub = %s AND "
                "stream_id = %s AND event_id = ANY(%s)",
                [hub, append.stream_id, [e.id for e in append.events]],
            )
            found = {r[0]: (int(r[1]), int(r[2])) for r in await cur.fetchall()}
            repeat = decide_append(append, current, found)
            if repeat is not None:
                results.append(repeat)
                continue
            check_expected(append.stream_id, append.expected, current)
            plans.append((append, stored))
            state[append.stream_id] = (stored + len(append.events), False)
            results.append(None)
        written: list[StoredEvent] = []
        if plans:
            total = sum(len(a.events) for a, _ in plans)
            await cur.execute(
                f"INSERT INTO {s}.event_log_head (hub, position) VALUES (%s, 0) "
                "ON CONFLICT (hub) DO NOTHING",
                [hub],
            )
            await cur.execute(
                f"UPDATE {s}.event_log_head SET position = position + %s WHERE hub = %s "
                "RETURNING position",
                [total, hub],
            )
            row = await cur.fetchone()
            assert row is not None
            position = int(row[0]) - total
            rows: list[tuple[Any, ...]] = []
            ends: list[tuple[int, int]] = []
            for append, stored in plans:
                bucket = stream_bucket(append.stream_id)
                for i, e in enumerate(append.events):
                    position += 1
                    version = stored + 1 + i
                    rows.append(
                        (
                            hub,
                            position,
                            append.stream_id,
                            version,
                            e.id,
                            e.type,
                            e.data,
                            e.metadata,
                            bucket,
                            now,
                        )
                    )
                    written.append(
                        StoredEvent(
                            position,
                            append.stream_id,
                            version,
                            e.id,
                            e.type,
                            e.data,
                            e.metadata,
                            now,
                        )
                    )
                ends.append((stored + len(append.events), position))
            await cur.executemany(
                f"INSERT INTO {s}.events (hub, position, stream_id, version, event_id, type, "
                "data, metadata, bucket, recorded_at) VALUES "
                "(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                rows,
            )
            await cur.executemany(
                f"UPDATE {s}.event_streams SET first_version = CASE WHEN deleted THEN %s "
                "ELSE first_version END, version = %s, deleted = false "
                "WHERE hub = %s AND stream_id = %s",
                [(stored + 1, stored + len(a.events), hub, a.stream_id) for a, stored in plans],
            )
            it = iter(ends)
            results = [r if r is not None else next(it) for r in results]
        return [r for r in results if r is not None], written

    async def append_events(
        self, appends: Sequence[StreamAppend], now: datetime, hook: AppendHook | None = None
    ) -> list[tuple[int, int]]:
        async def body(cur: Cur, tx: _Tx) -> tuple[list[tuple[int, int]], bool]:
            results, written = await self._append(cur, appends, now)
            if hook is not None and written:
                await asyncio.to_thread(hook, tx, written)
            return results, bool(written)

        (results, wrote), kinds = await self._in_tx(now, body)
        if wrote or kinds:
            self._notify(LOG + kinds)
        return results

    async def read_stream(
        self, stream_id: str, from_version: int | None, backwards: bool, limit: int | None
    ) -> list[StoredEvent]:
        rows = await self._fetch(
            "SELECT version, deleted, first_version FROM {s}.event_streams "
            "WHERE hub = %s AND stream_id = %s",
            [self.hub, stream_id],
        )
        if not rows or rows[0][1]:
            return []
        last, _, first = rows[0]
        if backwards:
            start = last if from_version is None else from_version
            where, params = "version <= %s AND version >= %s ORDER BY version DESC", [start, first]
        else:
            start = max(first, 1 if from_version is None else from_version)
            where, params = "version >= %s ORDER BY version", [start]
        tail = "" if limit is None else " LIMIT %s"
        found = await self._fetch(
            f"SELECT {_EVENT_COLUMNS} FROM {{s}}.events WHERE hub = %s AND stream_id = %s AND "
            f"{where}{tail}",
            [self.hub, stream_id, *params, *([] if limit is None else [limit])],
        )
        return [_event(r) for r in found]

    async def stream_version(self, stream_id: str) -> int:
        rows = await self._fetch(
            "SELECT CASE WHEN deleted THEN 0 ELSE version END FROM {s}.event_streams "
            "WHERE hub = %s AND stream_id = %s",
            [self.hub, stream_id],
        )
        return int(rows[0][0]) if rows else 0

    async def _read_log(
        self,
        cur: Cur,
        after: int,
        limit: int,
        types: Sequence[str] | None,
        partition: tuple[int, int] | None,
    ) -> list[StoredEvent]:
        clauses = ["hub = %s", "position > %s"]
        params: list[Any] = [self.hub, after]
        if types is not None:
            clauses.append("type = ANY(%s)")
            params.append(list(types))
        if partition is not None and partition[1] > 1:
            clauses.append("bucket %% %s = %s")
            params += [partition[1], partition[0]]
        await cur.execute(
            f"SELECT {_EVENT_COLUMNS} FROM {self._s}.events WHERE {' AND '.join(clauses)} "
            "ORDER BY position LIMIT %s",
            [*params, limit],
        )
        return [_event(r) for r in await cur.fetchall()]

    async def read_log(
        self,
        after: int,
        limit: int,
        types: Sequence[str] | None = None,
        partition: tuple[int, int] | None = None,
    ) -> list[StoredEvent]:
        async def op(conn: Conn) -> list[StoredEvent]:
            async with conn.cursor() as cur:
                return await self._read_log(cur, after, limit, types, partition)

        return await self._run(op)

    async def log_head(self) -> int:
        rows = await self._fetch(
            "SELECT position FROM {s}.event_log_head WHERE hub = %s", [self.hub]
        )
        return int(rows[0][0]) if rows else 0

    async def delete_stream(self, stream_id: str, expected: ExpectedVersion, purge: bool) -> bool:
        s, hub = self._s, self.hub

        async def body(cur: Cur, tx: _Tx) -> bool:
            await cur.execute(
                f"SELECT version, deleted FROM {s}.event_streams WHERE hub = %s AND "
                "stream_id = %s FOR UPDATE",
                [hub, stream_id],
            )
            row = await cur.fetchone()
            current = 0 if row is None or row[1] else int(row[0])
            check_expected(stream_id, expected, current)
            if purge:
                await cur.execute(
                    f"DELETE FROM {s}.events WHERE hub = %s AND stream_id = %s", [hub, stream_id]
                )
                await cur.execute(
                    f"DELETE FROM {s}.event_streams WHERE hub = %s AND stream_id = %s",
                    [hub, stream_id],
                )
                return row is not None
            if current == 0:
                return False
            await cur.execute(
                f"UPDATE {s}.event_streams SET deleted = true, first_version = version + 1 "
                "WHERE hub = %s AND stream_id = %s",
                [hub, stream_id],
            )
            return True

        done, _ = await self._in_tx(datetime.now(), body)
        return done

    async def truncate_stream(self, stream_id: str, before_version: int) -> int:
        s, hub = self._s, self.hub

        async def body(cur: Cur, tx: _Tx) -> int:
            await cur.execute(
                f"DELETE FROM {s}.events WHERE hub = %s AND stream_id = %s AND version < %s",
                [hub, stream_id, before_version],
            )
            removed = cur.rowcount
            await cur.execute(
                f"UPDATE {s}.event_streams SET first_version = greatest(first_version, %s) "
                "WHERE hub = %s AND stream_id = %s",
                [before_version, hub, stream_id],
            )
            return int(removed)

        removed, _ = await self._in_tx(datetime.now(), body)
        return removed

    async def _complete_with_appends(
        self, results: Sequence[ActivityResult], now: datetime
    ) -> list[bool]:
        """Activity results that carry appends, one transaction each: the fenced delete of
        the work item, the appends (a refusal turns the result into a ``TaskFailed``), the
        result message."""
        s, hub = self._s, self.hub
        done: list[bool] = []
        appended = False
        for result in results:

            async def body(cur: Cur, tx: _Tx, r: ActivityResult = result) -> tuple[bool, bool]:
                await cur.execute(
                    f"DELETE FROM {s}.work_items WHERE hub = %s AND id = %s AND lease_token = %s",
                    [hub, r.work_item_id, r.lease_token],
                )
                if cur.rowcount != 1:
                    return False, False
                message, wrote = r.message, True
                await cur.execute("SAVEPOINT activity_appends")
                try:
                    await self._append(cur, r.appends, now)
                except WrongExpectedVersionError as exc:
                    await cur.execute("ROLLBACK TO SAVEPOINT activity_appends")
                    message, wrote = refused(r.message, exc), False
                await self._insert_messages(cur, [message])
                return True, wrote

            (ok, wrote), _ = await self._in_tx(now, body)
            done.append(ok)
            appended = appended or wrote
        took = [r for r, ok in zip(results, done, strict=True) if ok]
        if took:
            self._notify(result_kinds(took, None) + (LOG if appended else ""))
        return done

    # -- consumers ----------------------------------------------------------------------

    async def consumer_ensure(
        self, consumer: str, partitions: int, start: int, now: datetime
    ) -> None:
        s, hub = self._s, self.hub

        async def body(cur: Cur, tx: _Tx) -> None:
            await cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [f"{hub}/{consumer}"])
            await cur.execute(
                f"SELECT partitions, min(position), max(lease_token) FROM {s}.event_consumers "
                "WHERE hub = %s AND consumer = %s GROUP BY partitions",
                [hub, consumer],
            )
            rows = await cur.fetchall()
            if len(rows) == 1 and rows[0][0] == partitions:
                return
            base, first = 0, start
            if rows:
                first = min(int(r[1]) for r in rows)
                # Tokens above every old one: a lease from before cannot commit after.
                base = max(int(r[2]) for r in rows)
                await cur.execute(
                    f"DELETE FROM {s}.event_consumers WHERE hub = %s AND consumer = %s",
                    [hub, consumer],
                )
            await cur.executemany(
                f"INSERT INTO {s}.event_consumers (hub, consumer, partition, partitions, "
                "position, lease_token, updated_at) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                [(hub, consumer, p, partitions, first, base, now) for p in range(partitions)],
            )

        await self._in_tx(now, body)

    async def consumer_lease(
        self, consumer: str, owner: str, now: datetime, ttl: float, limit: int
    ) -> list[PartitionLease]:
        if limit < 1:
            return []
        rows = await self._fetch(
            "UPDATE {s}.event_consumers SET lease_owner = %s, lease_expires = %s, "
            "lease_token = lease_token + 1 WHERE (hub, consumer, partition) IN ("
            "SELECT hub, consumer, partition FROM {s}.event_consumers WHERE hub = %s AND "
            "consumer = %s AND (lease_owner IS NULL OR lease_expires <= %s) "
            "ORDER BY partition LIMIT %s FOR UPDATE SKIP LOCKED) "
            "RETURNING partition, partitions, position, lease_token, failed_position, attempts",
            [owner, now + timedelta(seconds=ttl), self.hub, consumer, now, limit],
        )
        return sorted((PartitionLease(consumer, *r) for r in rows), key=lambda x: x.partition)

    async def consumer_renew(
        self, consumer: str, leases: Sequence[PartitionLease], now: datetime, ttl: float
    ) -> set[int]:
        if not leases:
            return set()
        rows = await self._fetch(
            "UPDATE {s}.event_consumers c SET lease_expires = %s FROM "
            "unnest(%s::int[], %s::bigint[]) AS l(partition, token) WHERE c.hub = %s AND "
            "c.consumer = %s AND c.partition = l.partition AND c.lease_token = l.token AND "
            "c.lease_owner IS NOT NULL RETURNING c.partition",
            [
                now + timedelta(seconds=ttl),
                [x.partition for x in leases],
                [x.lease_token for x in leases],
                self.hub,
                consumer,
            ],
        )
        return {int(r[0]) for r in rows}

    async def consumer_release(self, consumer: str, leases: Sequence[PartitionLease]) -> None:
        if not leases:
            return
        await self._exec(
            "UPDATE {s}.event_consumers c SET lease_owner = NULL, lease_expires = NULL FROM "
            "unnest(%s::int[], %s::bigint[]) AS l(partition, token) WHERE c.hub = %s AND "
            "c.consumer = %s AND c.partition = l.partition AND c.lease_token = l.token",
            [[x.partition for x in leases], [x.lease_token for x in leases], self.hub, consumer],
        )

    async def consumer_apply(
        self, lease: PartitionLease, now: datetime, hook: TxHook
    ) -> int | None:
        s, hub = self._s, self.hub

        async def body(cur: Cur, tx: _Tx) -> int | None:
            await cur.execute(
                f"SELECT 1 FROM {s}.event_consumers WHERE hub = %s AND consumer = %s AND "
                "partition = %s AND lease_token = %s AND lease_owner IS NOT NULL FOR UPDATE",
                [hub, lease.consumer, lease.partition, lease.lease_token],
            )
            if await cur.fetchone() is None:
                return None
            position = await asyncio.to_thread(hook, tx)
            await cur.execute(
                f"UPDATE {s}.event_consumers SET position = %s, failed_position = NULL, "
                "attempts = 0, last_error = NULL, updated_at = %s WHERE hub = %s AND "
                "consumer = %s AND partition = %s",
                [position, now, hub, lease.consumer, lease.partition],
            )
            return position

        position, kinds = await self._in_tx(now, body)
        if kinds:
            self._notify(kinds)
        return position

    async def consumer_fail(
        self, lease: PartitionLease, position: int, attempts: int, error: str, now: datetime
    ) -> bool:
        count = await self._exec(
            "UPDATE {s}.event_consumers SET failed_position = %s, attempts = %s, "
            "last_error = %s, updated_at = %s WHERE hub = %s AND consumer = %s AND "
            "partition = %s AND lease_token = %s AND lease_owner IS NOT NULL",
            [
                position,
                attempts,
                error,
                now,
                self.hub,
                lease.consumer,
                lease.partition,
                lease.lease_token,
            ],
        )
        return count > 0

    async def consumer_states(self, consumer: str | None = None) -> list[ConsumerState]:
        sql = f"SELECT {_CONSUMER_COLUMNS} FROM {{s}}.event_consumers WHERE hub = %s"
        params: list[Any] = [self.hub]
        if consumer is not None:
            sql += " AND consumer = %s"
            params.append(consumer)
        rows = await self._fetch(sql + " ORDER BY consumer, partition", params)
        return [ConsumerState(*r) for r in rows]

    async def consumer_reset(self, consumer: str, position: int, now: datetime) -> int:
        count = await self._exec(
            "UPDATE {s}.event_consumers SET position = %s, lease_owner = NULL, "
            "lease_expires = NULL, lease_token = lease_token + 1, failed_position = NULL, "
            "attempts = 0, last_error = NULL, updated_at = %s WHERE hub = %s AND consumer = %s",
            [position, now, self.hub, consumer],
        )
        self._notify(LOG)
        return count

    async def consumer_parked(self, consumer: str) -> list[ParkedRecord]:
        rows = await self._fetch(
            "SELECT consumer, position, stream_id, version, event_id, type, error, attempts, "
            "parked_at FROM {s}.event_parked WHERE hub = %s AND consumer = %s ORDER BY position",
            [self.hub, consumer],
        )
        return [ParkedRecord(*r) for r in rows]

    async def consumer_replay(self, consumer: str, positions: Sequence[int] | None) -> int:
        sql = "UPDATE {s}.event_parked SET attempts = %s WHERE hub = %s AND consumer = %s"
        params: list[Any] = [REPLAY, self.hub, consumer]
        if positions is not None:
            sql += " AND position = ANY(%s)"
            params.append(list(positions))
        count = await self._exec(sql, params)
        self._notify(LOG)
        return count

    # -- views ----------------------------------------------------------------------------

    async def view_get(self, view: str, key: str) -> str | None:
        rows = await self._fetch(
            "SELECT doc::text FROM {s}.event_views WHERE hub = %s AND view = %s AND key = %s",
            [self.hub, view, key],
        )
        return rows[0][0] if rows else None

    async def view_query(
        self,
        view: str,
        filters: Sequence[ViewFilter],
        limit: int,
        after_key: str | None = None,
    ) -> list[tuple[str, str]]:
        clauses = ["hub = %s", "view = %s"]
        params: list[Any] = [self.hub, view]
        if after_key is not None:
            clauses.append("key > %s")
            params.append(after_key)
        for f in filters:
            # The field is inlined so the expression matches the index of view_index.
            clauses.append(f"(doc -> '{check_field(f.field)}') {check_op(f.op)} %s::jsonb")
            params.append(f.value)
        rows = await self._fetch(
            f"SELECT key, doc::text FROM {{s}}.event_views WHERE {' AND '.join(clauses)} "
            "ORDER BY key LIMIT %s",
            [*params, limit],
        )
        return [(r[0], r[1]) for r in rows]

    async def view_count(self, view: str) -> int:
        rows = await self._fetch(
            "SELECT count(*) FROM {s}.event_views WHERE hub = %s AND view = %s", [self.hub, view]
        )
        return int(rows[0][0])

    async def view_index(self, view: str, fields: Sequence[str]) -> None:
        for name in fields:
            name = check_field(name)
            await self._exec(
                f"CREATE INDEX IF NOT EXISTS event_views_f_{name} ON {{s}}.event_views "
                f"(hub, view, (doc -> '{name}'))",
                [],
            )

    async def view_generation(self, name: str) -> int:
        rows = await self._fetch(
            "SELECT generation FROM {s}.event_view_meta WHERE hub = %s AND name = %s",
            [self.hub, name],
        )
        return int(rows[0][0]) if rows else 1

    async def view_swap(
        self, name: str, generation: int, consumer: str, now: datetime, hook: TxHook
    ) -> int:
        s, hub = self._s, self.hub

        async def body(cur: Cur, tx: _Tx) -> int:
            # The log's write lock: no append commits until the swap has.
            await cur.execute(
                f"INSERT INTO {s}.event_log_head (hub, position) VALUES (%s, 0) "
                "ON CONFLICT (hub) DO NOTHING",
                [hub],
            )
            await cur.execute(
                f"SELECT position FROM {s}.event_log_head WHERE hub = %s FOR UPDATE", [hub]
            )
            position = await asyncio.to_thread(hook, tx)
            await cur.execute(
                f"SELECT generation FROM {s}.event_view_meta WHERE hub = %s AND name = %s",
                [hub, name],
            )
            row = await cur.fetchone()
            old = 1 if row is None else int(row[0])
            await cur.execute(
                f"INSERT INTO {s}.event_view_meta (hub, name, generation) VALUES (%s, %s, %s) "
                "ON CONFLICT (hub, name) DO UPDATE SET generation = excluded.generation",
                [hub, name, generation],
            )
            await cur.execute(
                f"UPDATE {s}.event_consumers SET position = %s, failed_position = NULL, "
                "attempts = 0, last_error = NULL, updated_at = %s, lease_owner = NULL, "
                "lease_expires = NULL, lease_token = lease_token + 1 "
                "WHERE hub = %s AND consumer = %s",
                [position, now, hub, consumer],
            )
            if old != generation:
                await cur.execute(
                    f"DELETE FROM {s}.event_views WHERE hub = %s AND view = %s",
                    [hub, view_name(name, old)],
                )
            return position

        position, _ = await self._in_tx(now, body)
        return position

    async def view_drop(self, view: str) -> None:
        await self._exec(
            "DELETE FROM {s}.event_views WHERE hub = %s AND view = %s", [self.hub, view]
        )
