"""The PostgreSQL backend's :class:`~taskloom.storage.events_base.EventLogStore`, in the
tables of ``sql/postgres/0004_events.sql``.

**Appends** (:mod:`taskloom.storage.postgres_events_tx`) take positions from the hub's
head row as the last lock before COMMIT, so positions are assigned in commit order and a
reader following the log never passes an event that commits later; without a hook an
append is one round trip (the ``event_append`` function of
``sql/postgres/0005_event_append.sql``, as of ``0013_event_log_speed.sql``). That module's
docstring says why it is correct.

**Hooks** are synchronous: they run in a worker thread (``asyncio.to_thread``) while the
transaction's coroutine waits, and each :class:`EventTx` call made from that thread runs
its statements on the transaction's connection through the event loop
(``run_coroutine_threadsafe``).

**Consumers** lease partitions with ``FOR UPDATE SKIP LOCKED``; **views** are ``jsonb``,
filtered on ``doc -> 'field'`` with the field inlined so :meth:`view_index`'s expression
indexes apply.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from psycopg import AsyncConnection, AsyncCursor

from taskloom.errors import WrongExpectedVersionError
from taskloom.events.records import ExpectedVersion
from taskloom.storage.base import (
    LOG,
    SUBSCRIPTIONS,
    ActivityResult,
    Message,
    NewInstance,
    refused,
    result_kinds,
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
    view_name,
)
from taskloom.storage.postgres_events_tx import (
    AppendGroup,
    Member,
    Outcome,
    PgEventTx,
    append,
    append_together,
)

if TYPE_CHECKING:
    from taskloom.models import Status

__all__ = ["PostgresEventsMixin"]

Conn = AsyncConnection[tuple[Any, ...]]
Cur = AsyncCursor[tuple[Any, ...]]
T = TypeVar("T")

# See STREAM_AFTER, in psycopg's named placeholders.
_STREAM_AFTER = re.sub(r":(hub|stream|after)\b", r"%(\1)s", STREAM_AFTER)

_EVENT_COLUMNS = "position, stream_id, version, event_id, type, data, metadata, recorded_at"
_CONSUMER_COLUMNS = (
    "consumer, partition, partitions, position, lease_owner, lease_expires, "
    "failed_position, attempts, last_error, updated_at"
)


def _event(row: Sequence[Any]) -> StoredEvent:
    return StoredEvent(*row[:8])


class PostgresEventsMixin(EventLogStore):
    """:class:`EventLogStore` for :class:`~taskloom.storage.postgres.PostgresStore`."""

    _append_group: AppendGroup | None = None  # made on the first hook-less append

    if TYPE_CHECKING:  # provided by PostgresStore
        hub: str
        _s: str

        async def _run(self, op: Callable[[Conn], Awaitable[T]]) -> T: ...

        def _notify(self, kinds: str = ...) -> None: ...

        def _claim(self, kinds: str) -> str: ...

        def _settled(self, sent: str, kinds: str) -> None: ...

        _channel: str
        _token: str

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
        self, now: datetime, body: Callable[[Cur, PgEventTx], Awaitable[T]]
    ) -> tuple[T, str]:
        loop = asyncio.get_running_loop()

        async def op(conn: Conn) -> tuple[T, str]:
            async with conn.transaction(), conn.cursor() as cur:
                tx = PgEventTx(self, cur, now, loop)
                return await body(cur, tx), tx.kinds

        return await self._run(op)

    # -- streams and the log ----------------------------------------------------------

    async def append_events(
        self, appends: Sequence[StreamAppend], now: datetime, hook: AppendHook | None = None
    ) -> list[tuple[int, int]]:
        if hook is None:
            group = self._append_group
            if group is None:
                group = self._append_group = AppendGroup(self._append_members)
            return await group.append(appends, now)

        async def body(cur: Cur, tx: PgEventTx) -> tuple[list[tuple[int, int]], bool]:
            results, written = await append(cur, self._s, self.hub, appends, now)
            if written:
                await asyncio.to_thread(hook, tx, written)
            return results, bool(written)

        (results, wrote), kinds = await self._in_tx(now, body)
        if wrote or kinds:
            self._notify(LOG + kinds)
        return results

    async def _append_members(self, members: list[Member]) -> list[Outcome]:
        """The appends of an :class:`AppendGroup`: together in one autocommit statement,
        or, for those the function leaves to the Python path, each in its own
        transaction."""
        s, hub = self._s, self.hub
        # With nothing in flight, the group's call carries the NOTIFY in its own
        # transaction (see Announcer): other processes hear of the events as they commit.
        sent = self._claim(LOG)
        notify = (self._channel, f"{self._token}:{sent}") if sent else None

        async def together(conn: Conn) -> tuple[list[Outcome], bool]:
            async with conn.cursor() as cur:
                return await append_together(cur, s, hub, members, notify)

        try:
            outcomes, notified = await self._run(together)
        except BaseException:
            if sent:
                self._settled("", "")
            raise
        wrote = any(isinstance(o, list) for o in outcomes)
        if sent:
            self._settled(sent if notified else "", LOG if wrote else "")
            wrote = False  # told
        for i, outcome in enumerate(outcomes):
            if outcome is not None:
                continue

            async def alone(conn: Conn, member: Member = members[i]) -> tuple[Outcome, bool]:
                async with conn.cursor() as cur:
                    results, written = await append(cur, s, hub, *member, fast=False)
                    return results, bool(written)

            try:
                outcomes[i], alone_wrote = await self._run(alone)
                wrote = wrote or alone_wrote
            except Exception as exc:
                outcomes[i] = exc
        if wrote:
            self._notify(LOG)
        return outcomes

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
        stream: str | None = None,
    ) -> list[StoredEvent]:
        if types is None and stream is None:
            # The log, or one partition of it: by event_read (see read_partitions).
            index, count = partition or (0, 1)
            await cur.execute(
                f"SELECT * FROM {self._s}.event_read(%s, %b::int[], %b::bigint[], %s, %s)",
                [self.hub, [index], [after], count, limit],
            )
            return [_event(r[1:]) for r in await cur.fetchall()]
        if types is not None and partition is None and stream is None:
            # By event_read_types (see read_partitions).
            await cur.execute(
                f"SELECT * FROM {self._s}.event_read_types(%s, %b::text[], %s, %s)",
                [self.hub, list(types), after, limit],
            )
            return [_event(r) for r in await cur.fetchall()]
        clauses = ["hub = %(hub)s", "position > %(after)s"]
        params: dict[str, Any] = {"hub": self.hub, "after": after, "limit": limit}
        if types is not None:
            clauses.append("type = ANY(%(types)s)")
            params["types"] = list(types)
        if partition is not None and partition[1] > 1:
            clauses.append("bucket %% %(partitions)s = %(partition)s")
            params.update(partitions=partition[1], partition=partition[0])
        order = "position"
        if stream is not None:
            clauses.append(_STREAM_AFTER.replace("{events}", f"{self._s}.events"))
            params["stream"] = stream
            order = "version"
        await cur.execute(
            f"SELECT {_EVENT_COLUMNS} FROM {self._s}.events WHERE {' AND '.join(clauses)} "
            f"ORDER BY {order} LIMIT %(limit)s",
            params,
        )
        return [_event(r) for r in await cur.fetchall()]

    async def read_log(
        self,
        after: int,
        limit: int,
        types: Sequence[str] | None = None,
        partition: tuple[int, int] | None = None,
        stream: str | None = None,
    ) -> list[StoredEvent]:
        async def op(conn: Conn) -> list[StoredEvent]:
            async with conn.cursor() as cur:
                return await self._read_log(cur, after, limit, types, partition, stream)

        return await self._run(op)

    async def read_partitions(
        self, after: Mapping[int, int], count: int, limit: int
    ) -> dict[int, list[StoredEvent]]:
        # One query: a read per partition, each its own range of positions (the
        # event_read function of migration 0013, for plans that need no statistics).
        rows = await self._fetch(
            "SELECT * FROM {s}.event_read(%s, %b::int[], %b::bigint[], %s, %s)",
            [self.hub, list(after), list(after.values()), count, limit],
        )
        out: dict[int, list[StoredEvent]] = {index: [] for index in after}
        for row in rows:
            out[row[0]].append(_event(row[1:]))
        return out

    async def log_head(self) -> int:
        rows = await self._fetch(
            "SELECT position FROM {s}.event_log_head WHERE hub = %s", [self.hub]
        )
        return int(rows[0][0]) if rows else 0

    async def delete_stream(self, stream_id: str, expected: ExpectedVersion, purge: bool) -> bool:
        s, hub = self._s, self.hub

        async def body(cur: Cur, tx: PgEventTx) -> bool:
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

        async def body(cur: Cur, tx: PgEventTx) -> int:
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

            async def body(
                cur: Cur, tx: PgEventTx, r: ActivityResult = result
            ) -> tuple[bool, bool]:
                await cur.execute(
                    f"DELETE FROM {s}.work_items WHERE hub = %s AND id = %s AND lease_token = %s",
                    [hub, r.work_item_id, r.lease_token],
                )
                if cur.rowcount != 1:
                    return False, False
                message, wrote = r.message, True
                await cur.execute("SAVEPOINT activity_appends")
                try:
                    await append(cur, s, hub, r.appends, now)
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

        async def body(cur: Cur, tx: PgEventTx) -> None:
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
            "unnest(%b::int[], %b::bigint[]) AS l(partition, token) WHERE c.hub = %s AND "
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
            "unnest(%b::int[], %b::bigint[]) AS l(partition, token) WHERE c.hub = %s AND "
            "c.consumer = %s AND c.partition = l.partition AND c.lease_token = l.token",
            [[x.partition for x in leases], [x.lease_token for x in leases], self.hub, consumer],
        )

    async def consumer_apply(
        self, lease: PartitionLease, now: datetime, hook: TxHook
    ) -> int | None:
        s, hub = self._s, self.hub

        async def body(cur: Cur, tx: PgEventTx) -> int | None:
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
        self._notify(LOG + SUBSCRIPTIONS)
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

        async def body(cur: Cur, tx: PgEventTx) -> int:
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
