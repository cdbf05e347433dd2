"""The PostgreSQL backend's :class:`~taskloom.storage.host_base.HostStore`: queues,
schedules, API keys and secrets, in the tables of ``sql/postgres/0002_host.sql``.

:class:`PostgresHostMixin` runs on :class:`~taskloom.storage.postgres.PostgresStore`'s
pool through its ``_run`` (one statement or one transaction per call, retried on
connection failures) and in its schema.

- **Leasing** queue messages uses ``FOR UPDATE SKIP LOCKED``, so hosts never block each
  other nor lease one message twice. A leased message's ``visible_at`` moves to its lease
  expiry (a visibility timeout), so a message whose host died is delivered again once
  that time passes. A delivery is fenced by ``lease_token`` *and* a recorded
  ``lease_owner``; ``queue_fail`` clears the owner, so neither an ack nor a retried fail
  can apply twice.
- **Schedule ticks** are claimed by a conditional ``UPDATE ... RETURNING`` on
  ``next_tick``; concurrent claimers of one tick queue on the row lock and all but the
  first then find ``next_tick`` moved. The tick's queue message is inserted in the same
  transaction.
- **Wake-ups.** Writes that make messages visible call the store's ``_notify``: its own
  listeners wake at once and other hosts through the store's coalesced NOTIFY.
- **Retries.** A ``queue_put`` whose COMMIT was lost may be retried and put the message
  twice; queues are at-least-once anyway. A lost ``schedule_claim`` COMMIT retries as a
  lost claim (the tick is on the queue all the same).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from psycopg import AsyncConnection, AsyncCursor

from taskloom.storage.base import AT_ONCE, QUEUES
from taskloom.storage.host_base import (
    SCHEDULE_QUEUE,
    HostStore,
    KeyRecord,
    QueueMessage,
    ScheduleRecord,
)
from taskloom.storage.postgres_plans import UNPREPARED, plan_setting, planned

__all__ = ["PostgresHostMixin"]

T = TypeVar("T")
Conn = AsyncConnection[tuple[Any, ...]]
Cur = AsyncCursor[tuple[Any, ...]]

_MESSAGE_COLUMNS = "id, queue, body, dequeue_count, lease_token, inserted_at, error"
_SCHEDULE_COLUMNS = "name, spec, next_tick, paused, last_tick"
_KEY_COLUMNS = "id, name, role, key_hash, created_at, revoked_at"


def _message(row: Sequence[Any]) -> QueueMessage:
    return QueueMessage(*row[:7])


def _schedule(row: Sequence[Any]) -> ScheduleRecord:
    return ScheduleRecord(row[0], row[1], row[2], bool(row[3]), row[4])


def _key(row: Sequence[Any]) -> KeyRecord:
    return KeyRecord(*row[:6])


class PostgresHostMixin(HostStore):
    """:class:`HostStore` for :class:`~taskloom.storage.postgres.PostgresStore` (see the
    module docstring); it relies on the store's ``hub``, schema and ``_run``."""

    if TYPE_CHECKING:  # provided by PostgresStore
        hub: str
        _s: str

        async def _run(self, op: Callable[[Conn], Awaitable[T]]) -> T: ...

        def _notify(self, kinds: str = ...) -> None: ...

    async def _insert_message(
        self,
        cur: Cur,
        queue: str,
        body: str,
        visible_at: datetime,
        inserted_at: datetime,
        dequeue_count: int = 0,
        error: str | None = None,
    ) -> int:
        """Insert one queue message inside the caller's transaction; its id."""
        await cur.execute(
            f"INSERT INTO {self._s}.queue_messages "
            "(hub, queue, body, visible_at, inserted_at, dequeue_count, error) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING id",
            [self.hub, queue, body, visible_at, inserted_at, dequeue_count, error],
        )
        row = await cur.fetchone()
        assert row is not None
        return int(row[0])

    # -- queues ---------------------------------------------------------------------

    async def queue_put(self, queue: str, body: str, visible_at: datetime, now: datetime) -> int:
        async def op(conn: Conn) -> int:
            async with conn.transaction(), conn.cursor() as cur:
                message_id = await self._insert_message(cur, queue, body, visible_at, now)
                return message_id

        message_id = await self._run(op)
        self._notify(QUEUES)
        return message_id

    async def queue_lease(
        self, queues: Sequence[str], now: datetime, limit: int, visibility: float, owner: str
    ) -> list[QueueMessage]:
        names = list(dict.fromkeys(queues))
        if limit < 1 or not names:
            return []
        s = self._s
        params = {
            "hub": self.hub,
            "queues": names,
            "now": now,
            "limit": limit,
            "owner": owner,
            "until": now + timedelta(seconds=visibility),
        }

        async def op(conn: Conn) -> list[tuple[Any, ...]]:
            # Rows other hosts are leasing right now are skipped, not waited for. The plan
            # settings of the hot transactions keep a plan cached on an empty queue from
            # scanning a flooded one (docs/scaling.md, "Plans that do not go stale").
            cur = await planned(
                conn,
                limit,
                f"WITH picked AS (SELECT id, visible_at FROM {s}.queue_messages "
                "WHERE hub = %(hub)s AND queue = ANY(%(queues)b::text[]) "
                "AND visible_at <= %(now)s ORDER BY visible_at, id LIMIT %(limit)s "
                "FOR UPDATE SKIP LOCKED) "
                f"UPDATE {s}.queue_messages m SET lease_owner = %(owner)s, "
                "lease_token = m.lease_token + 1, dequeue_count = m.dequeue_count + 1, "
                "visible_at = %(until)s FROM picked WHERE m.id = picked.id RETURNING "
                + ", ".join(f"m.{c.strip()}" for c in _MESSAGE_COLUMNS.split(","))
                + ", picked.visible_at",
                params,
            )
            return await cur.fetchall()

        rows = sorted(await self._run(op), key=lambda r: (r[7], r[0]))
        return [_message(r) for r in rows]

    async def queue_ack(self, message_id: int, lease_token: int) -> bool:
        async def op(conn: Conn) -> bool:
            cur = await conn.execute(
                f"DELETE FROM {self._s}.queue_messages WHERE hub = %s AND id = %s "
                "AND lease_token = %s AND lease_owner IS NOT NULL RETURNING 1",
                [self.hub, message_id, lease_token],
                prepare=UNPREPARED,
            )
            return await cur.fetchone() is not None

        return await self._run(op)

    async def queue_fail(
        self,
        message_id: int,
        lease_token: int,
        error: str,
        retry_at: datetime,
        max_dequeue_count: int,
        now: datetime,
    ) -> str:
        s = self._s

        async def op(conn: Conn) -> str:
            async with conn.transaction(), conn.cursor() as cur:
                await cur.execute(*plan_setting(1))
                await cur.execute(
                    f"SELECT queue, body, dequeue_count, inserted_at FROM {s}.queue_messages "
                    "WHERE hub = %s AND id = %s AND lease_token = %s "
                    "AND lease_owner IS NOT NULL FOR UPDATE",
                    [self.hub, message_id, lease_token],
                )
                row = await cur.fetchone()
                if row is None:
                    return "lost"
                queue, body, dequeue_count, inserted_at = row
                if dequeue_count >= max_dequeue_count:
                    # A new message on the poison queue, visible at once, keeping the
                    # original insertion time and delivery count for diagnosis.
                    await cur.execute(f"DELETE FROM {s}.queue_messages WHERE id = %s", [message_id])
                    await self._insert_message(
                        cur, f"{queue}-poison", body, AT_ONCE, inserted_at, dequeue_count, error
                    )
                    outcome = "poisoned"
                else:
                    await cur.execute(
                        f"UPDATE {s}.queue_messages SET visible_at = %s, error = %s, "
                        "lease_owner = NULL WHERE id = %s",
                        [retry_at, error, message_id],
                    )
                    outcome = "retry"
                return outcome

        outcome = await self._run(op)
        if outcome != "lost":
            self._notify(QUEUES)
        return outcome

    async def queue_peek(self, queue: str, limit: int = 100) -> list[QueueMessage]:
        async def op(conn: Conn) -> list[tuple[Any, ...]]:
            cur = await conn.execute(
                f"SELECT {_MESSAGE_COLUMNS} FROM {self._s}.queue_messages "
                "WHERE hub = %s AND queue = %s ORDER BY id LIMIT %s",
                [self.hub, queue, max(limit, 0)],
            )
            return await cur.fetchall()

        return [_message(r) for r in await self._run(op)]

    # -- schedules ------------------------------------------------------------------

    async def schedule_upsert(self, name: str, spec: str, next_tick: datetime) -> ScheduleRecord:
        s = self._s

        async def op(conn: Conn) -> tuple[Any, ...]:
            async with conn.transaction(), conn.cursor() as cur:
                await cur.execute(
                    f"INSERT INTO {s}.schedules AS t (hub, name, spec, next_tick) "
                    "VALUES (%s, %s, %s, %s) ON CONFLICT (hub, name) DO UPDATE "
                    "SET spec = excluded.spec, next_tick = excluded.next_tick "
                    "WHERE t.spec <> excluded.spec",
                    [self.hub, name, spec, next_tick],
                )
                await cur.execute(
                    f"SELECT {_SCHEDULE_COLUMNS} FROM {s}.schedules WHERE hub = %s AND name = %s",
                    [self.hub, name],
                )
                row = await cur.fetchone()
                assert row is not None
                return row

        return _schedule(await self._run(op))

    async def schedule_list(self) -> list[ScheduleRecord]:
        async def op(conn: Conn) -> list[tuple[Any, ...]]:
            cur = await conn.execute(
                f"SELECT {_SCHEDULE_COLUMNS} FROM {self._s}.schedules WHERE hub = %s ORDER BY name",
                [self.hub],
            )
            return await cur.fetchall()

        return [_schedule(r) for r in await self._run(op)]

    async def schedule_claim(
        self, name: str, tick: datetime, next_tick: datetime, body: str, now: datetime
    ) -> bool:
        async def op(conn: Conn) -> bool:
            async with conn.transaction(), conn.cursor() as cur:
                await cur.execute(
                    f"UPDATE {self._s}.schedules SET next_tick = %s, last_tick = %s "
                    "WHERE hub = %s AND name = %s AND next_tick = %s AND NOT paused RETURNING 1",
                    [next_tick, tick, self.hub, name, tick],
                )
                if await cur.fetchone() is None:
                    return False
                await self._insert_message(cur, SCHEDULE_QUEUE, body, AT_ONCE, now)
                return True

        claimed = await self._run(op)
        if claimed:
            self._notify(QUEUES)
        return claimed

    async def schedule_set_paused(
        self, name: str, paused: bool, next_tick: datetime | None
    ) -> bool:
        async def op(conn: Conn) -> bool:
            cur = await conn.execute(
                f"UPDATE {self._s}.schedules SET paused = %s, "
                "next_tick = coalesce(%s::timestamptz, next_tick) "
                "WHERE hub = %s AND name = %s RETURNING 1",
                [paused, next_tick, self.hub, name],
            )
            return await cur.fetchone() is not None

        return await self._run(op)

    # -- keys and secrets -----------------------------------------------------------

    async def key_create(self, key: KeyRecord) -> None:
        async def op(conn: Conn) -> None:
            await conn.execute(
                f"INSERT INTO {self._s}.api_keys (hub, {_KEY_COLUMNS}) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s)",
                [self.hub, key.id, key.name, key.role, key.key_hash, key.created_at,
                 key.revoked_at],
            )  # fmt: skip

        await self._run(op)

    async def key_list(self) -> list[KeyRecord]:
        """Every key of the hub, revoked ones included, oldest first."""

        async def op(conn: Conn) -> list[tuple[Any, ...]]:
            cur = await conn.execute(
                f"SELECT {_KEY_COLUMNS} FROM {self._s}.api_keys WHERE hub = %s "
                "ORDER BY created_at, id",
                [self.hub],
            )
            return await cur.fetchall()

        return [_key(r) for r in await self._run(op)]

    async def key_revoke(self, key_id: str, now: datetime) -> bool:
        """Revoke the key; True if it exists (revoking again keeps the first time)."""

        async def op(conn: Conn) -> bool:
            cur = await conn.execute(
                f"UPDATE {self._s}.api_keys SET revoked_at = coalesce(revoked_at, %s) "
                "WHERE hub = %s AND id = %s RETURNING 1",
                [now, self.hub, key_id],
            )
            return await cur.fetchone() is not None

        return await self._run(op)

    async def key_hubs(self) -> dict[str, int]:
        async def op(conn: Conn) -> list[tuple[Any, ...]]:
            cur = await conn.execute(
                f"SELECT hub, count(*) FROM {self._s}.api_keys WHERE revoked_at IS NULL "
                "GROUP BY hub"
            )
            return await cur.fetchall()

        return {str(r[0]): int(r[1]) for r in await self._run(op)}

    async def key_lookup(self, key_hash: str) -> KeyRecord | None:
        async def op(conn: Conn) -> tuple[Any, ...] | None:
            cur = await conn.execute(
                f"SELECT {_KEY_COLUMNS} FROM {self._s}.api_keys WHERE hub = %s "
                "AND key_hash = %s AND revoked_at IS NULL",
                [self.hub, key_hash],
            )
            return await cur.fetchone()

        row = await self._run(op)
        return None if row is None else _key(row)

    async def secret(self, name: str, candidate: str) -> str:
        s = self._s

        async def op(conn: Conn) -> str:
            # Two autocommit statements, not one: the SELECT needs a snapshot taken after
            # a concurrent first writer's INSERT (which ours waited for) committed.
            await conn.execute(
                f"INSERT INTO {s}.secrets (hub, name, value) VALUES (%s, %s, %s) "
                "ON CONFLICT (hub, name) DO NOTHING",
                [self.hub, name, candidate],
            )
            cur = await conn.execute(
                f"SELECT value FROM {s}.secrets WHERE hub = %s AND name = %s", [self.hub, name]
            )
            row = await cur.fetchone()
            assert row is not None
            return str(row[0])

        return await self._run(op)
