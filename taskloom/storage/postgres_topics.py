"""The PostgreSQL backend's :class:`~taskloom.storage.topics_base.TopicStore`, in the
tables of ``sql/postgres/0006_topics.sql``. A lease takes due rows with ``FOR UPDATE SKIP
LOCKED``, so hosts leasing at once share the rows instead of queueing on each other."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from psycopg import AsyncConnection, AsyncCursor

from taskloom.storage.base import DELIVERIES, SUBSCRIPTIONS
from taskloom.storage.events_base import StoredEvent
from taskloom.storage.postgres_events_tx import PgEventTx
from taskloom.storage.topics_base import (
    DeadLetterRecord,
    Delivery,
    DeliveryHook,
    DeliveryStats,
    SubscriptionRecord,
    TopicStore,
    fanout_consumer,
    letter_filter,
    merge_stats,
)

__all__ = ["PostgresTopicsMixin"]

T = TypeVar("T")
Conn = AsyncConnection[tuple[Any, ...]]
Cur = AsyncCursor[tuple[Any, ...]]

_EVENT_COLUMNS = (
    "e.position, e.stream_id, e.version, e.event_id, e.type, e.data, e.metadata, e.recorded_at"
)
_KEY = "hub = %s AND subscription = %s AND position = %s AND lease_token = %s"


def _maybe_event(row: Sequence[Any]) -> StoredEvent | None:
    return None if row[0] is None else StoredEvent(*row[:8])


class PostgresTopicsMixin(TopicStore):
    """:class:`TopicStore` for :class:`~taskloom.storage.postgres.PostgresStore`."""

    if TYPE_CHECKING:  # provided by PostgresStore and PostgresEventsMixin
        hub: str
        _s: str

        async def _run(self, op: Callable[[Conn], Awaitable[T]]) -> T: ...

        def _notify(self, kinds: str = ...) -> None: ...

        async def _fetch(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]: ...

        async def _exec(self, sql: str, params: Sequence[Any]) -> int: ...

    async def _tx(self, body: Callable[[Cur], Awaitable[T]]) -> T:
        async def op(conn: Conn) -> T:
            async with conn.transaction(), conn.cursor() as cur:
                return await body(cur)

        return await self._run(op)

    # -- subscriptions --------------------------------------------------------------

    async def subscription_put(self, record: SubscriptionRecord) -> bool:
        rows = await self._fetch(
            "INSERT INTO {s}.topic_subscriptions (hub, name, topic, kind, spec, created_at, "
            "updated_at) VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (hub, name) DO UPDATE "
            "SET topic = excluded.topic, kind = excluded.kind, spec = excluded.spec, "
            "updated_at = excluded.updated_at RETURNING (xmax = 0)",
            [
                self.hub,
                record.name,
                record.topic,
                record.kind,
                record.spec,
                record.created_at,
                record.updated_at,
            ],
        )
        self._notify(SUBSCRIPTIONS)
        return bool(rows[0][0])

    async def _subscriptions(self, where: str, params: Sequence[Any]) -> list[SubscriptionRecord]:
        rows = await self._fetch(
            "SELECT name, topic, kind, spec, created_at, updated_at FROM "
            f"{{s}}.topic_subscriptions WHERE hub = %s{where} ORDER BY name",
            [self.hub, *params],
        )
        return [SubscriptionRecord(*r) for r in rows]

    async def subscription_get(self, name: str) -> SubscriptionRecord | None:
        found = await self._subscriptions(" AND name = %s", [name])
        return found[0] if found else None

    async def subscription_list(self, topic: str | None = None) -> list[SubscriptionRecord]:
        if topic is None:
            return await self._subscriptions("", [])
        return await self._subscriptions(" AND topic = %s", [topic])

    async def subscription_delete(self, name: str) -> bool:
        s, hub = self._s, self.hub

        async def body(cur: Cur) -> bool:
            await cur.execute(
                f"DELETE FROM {s}.topic_subscriptions WHERE hub = %s AND name = %s", [hub, name]
            )
            found = cur.rowcount > 0
            for table in ("topic_deliveries", "topic_dead_letters"):
                await cur.execute(
                    f"DELETE FROM {s}.{table} WHERE hub = %s AND subscription = %s", [hub, name]
                )
            await cur.execute(
                f"DELETE FROM {s}.event_consumers WHERE hub = %s AND consumer = %s",
                [hub, fanout_consumer(name)],
            )
            return found

        found = await self._tx(body)
        self._notify(SUBSCRIPTIONS)
        return found

    # -- deliveries ----------------------------------------------------------------

    async def delivery_lease(
        self,
        subscription: str,
        owner: str,
        now: datetime,
        visibility: float,
        limit: int,
        after: int = 0,
    ) -> list[Delivery]:
        if limit < 1:
            return []
        rows = await self._fetch(
            "WITH due AS (SELECT position FROM {s}.topic_deliveries WHERE hub = %s AND "
            "subscription = %s AND position > %s AND due_at <= %s ORDER BY position LIMIT %s "
            "FOR UPDATE SKIP LOCKED), leased AS (UPDATE {s}.topic_deliveries d SET "
            "attempts = d.attempts + 1, lease_token = d.lease_token + 1, lease_owner = %s, "
            "due_at = %s, last_attempt_at = %s FROM due WHERE d.hub = %s AND "
            "d.subscription = %s AND d.position = due.position RETURNING d.position, d.topic, "
            "d.attempts, d.lease_token, d.published_at, d.last_outcome) "
            f"SELECT l.*, {_EVENT_COLUMNS} FROM leased l LEFT JOIN {{s}}.events e ON "
            "e.hub = %s AND e.position = l.position ORDER BY l.position",
            [
                self.hub,
                subscription,
                after,
                now,
                limit,
                owner,
                now + timedelta(seconds=visibility),
                now,
                self.hub,
                subscription,
                self.hub,
            ],
        )
        return [
            Delivery(subscription, r[0], r[1], r[2], r[3], r[4], r[5], _maybe_event(r[6:]))
            for r in rows
        ]

    def _key(self, delivery: Delivery) -> list[Any]:
        return [self.hub, delivery.subscription, delivery.position, delivery.lease_token]

    async def delivery_settle(
        self, delivery: Delivery, now: datetime, hook: DeliveryHook | None = None
    ) -> bool:
        if hook is None:
            sql = "DELETE FROM {s}.topic_deliveries WHERE " + _KEY
            return await self._exec(sql, self._key(delivery)) > 0
        s = self._s
        loop = asyncio.get_running_loop()

        async def body(cur: Cur) -> tuple[bool, str]:
            await cur.execute(f"DELETE FROM {s}.topic_deliveries WHERE {_KEY}", self._key(delivery))
            if not cur.rowcount:
                return False, ""
            tx = PgEventTx(self, cur, now, loop)  # type: ignore[arg-type]
            await asyncio.to_thread(hook, tx)
            return True, tx.kinds

        settled, kinds = await self._tx(body)
        if kinds:
            self._notify(kinds)
        return settled

    async def delivery_ack(self, deliveries: Sequence[Delivery]) -> int:
        if not deliveries:
            return 0
        return await self._exec(
            "DELETE FROM {s}.topic_deliveries d USING unnest(%b::text[], %b::bigint[], "
            "%b::bigint[]) AS k(subscription, position, token) WHERE d.hub = %s AND "
            "d.subscription = k.subscription AND d.position = k.position AND "
            "d.lease_token = k.token",
            [
                [d.subscription for d in deliveries],
                [d.position for d in deliveries],
                [d.lease_token for d in deliveries],
                self.hub,
            ],
        )

    async def delivery_retry(
        self, delivery: Delivery, due_at: datetime, outcome: str, now: datetime
    ) -> bool:
        count = await self._exec(
            "UPDATE {s}.topic_deliveries SET due_at = %s, last_outcome = %s, lease_owner = NULL "
            "WHERE " + _KEY,
            [due_at, outcome, *self._key(delivery)],
        )
        if count:
            self._notify(DELIVERIES)
        return count > 0

    async def delivery_dead_letter(
        self, delivery: Delivery, reason: str, outcome: str, now: datetime
    ) -> bool:
        rows = await self._fetch(
            "WITH gone AS (DELETE FROM {s}.topic_deliveries WHERE " + _KEY + " RETURNING "
            "last_attempt_at) INSERT INTO {s}.topic_dead_letters (hub, subscription, position, "
            "topic, reason, attempts, last_outcome, published_at, last_attempt_at, "
            "dead_lettered_at) SELECT %s, %s, %s, %s, %s, %s, %s, %s, "
            "coalesce(gone.last_attempt_at, %s), %s FROM gone ON CONFLICT (hub, subscription, "
            "position) DO UPDATE SET reason = excluded.reason, attempts = excluded.attempts, "
            "last_outcome = excluded.last_outcome, last_attempt_at = excluded.last_attempt_at, "
            "dead_lettered_at = excluded.dead_lettered_at RETURNING 1",
            [
                *self._key(delivery),
                self.hub,
                delivery.subscription,
                delivery.position,
                delivery.topic,
                reason,
                delivery.attempts,
                outcome,
                delivery.published_at,
                now,
                now,
            ],
        )
        return bool(rows)

    async def delivery_next_due(self, subscriptions: Sequence[str]) -> datetime | None:
        if not subscriptions:
            return None
        rows = await self._fetch(
            "SELECT min(due_at) FROM {s}.topic_deliveries WHERE hub = %s AND "
            "subscription = ANY(%s)",
            [self.hub, list(subscriptions)],
        )
        value = rows[0][0] if rows else None
        return value if isinstance(value, datetime) else None

    async def delivery_stats(self) -> list[DeliveryStats]:
        pending = {
            r[0]: (int(r[1]), r[2])
            for r in await self._fetch(
                "SELECT subscription, count(*), min(due_at) FROM {s}.topic_deliveries "
                "WHERE hub = %s GROUP BY subscription",
                [self.hub],
            )
        }
        dead = {
            r[0]: int(r[1])
            for r in await self._fetch(
                "SELECT subscription, count(*) FROM {s}.topic_dead_letters WHERE hub = %s "
                "GROUP BY subscription",
                [self.hub],
            )
        }
        return merge_stats(pending, dead)

    # -- dead letters ---------------------------------------------------------------

    async def dead_letters(
        self, topic: str | None, subscription: str | None, limit: int
    ) -> list[DeadLetterRecord]:
        where, params = letter_filter(topic, subscription, "%s")
        rows = await self._fetch(
            "SELECT d.subscription, d.position, d.topic, d.reason, d.attempts, d.last_outcome, "
            f"d.published_at, d.last_attempt_at, d.dead_lettered_at, {_EVENT_COLUMNS} FROM "
            "{s}.topic_dead_letters d LEFT JOIN {s}.events e ON e.hub = d.hub AND "
            f"e.position = d.position WHERE d.hub = %s{where} ORDER BY d.dead_lettered_at, "
            "d.position LIMIT %s",
            [self.hub, *params, limit],
        )
        return [
            DeadLetterRecord(
                r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], _maybe_event(r[9:])
            )
            for r in rows
        ]

    async def redrive(
        self,
        topic: str | None,
        subscription: str | None,
        positions: Sequence[int] | None,
        now: datetime,
    ) -> int:
        where, params = letter_filter(topic, subscription, "%s")
        if positions is not None:
            if not positions:
                return 0
            where += " AND d.position = ANY(%s)"
            params.append(list(positions))
        rows = await self._fetch(
            f"WITH moved AS (DELETE FROM {{s}}.topic_dead_letters d WHERE d.hub = %s{where} "
            "RETURNING subscription, position, topic) INSERT INTO {s}.topic_deliveries (hub, "
            "subscription, position, topic, due_at, published_at) SELECT %s, subscription, "
            "position, topic, %s, %s FROM moved ON CONFLICT (hub, subscription, position) DO "
            "NOTHING RETURNING 1",
            [self.hub, *params, self.hub, now, now],
        )
        if rows:
            self._notify(DELIVERIES)
        return len(rows)

    # -- reading a topic ------------------------------------------------------------

    async def position_at(self, stream_id: str, at: datetime) -> int:
        rows = await self._fetch(
            # By version: within a stream, positions rise with versions.
            "SELECT coalesce((SELECT position - 1 FROM {s}.events WHERE hub = %s AND "
            "stream_id = %s AND recorded_at >= %s ORDER BY version LIMIT 1), "
            "(SELECT position FROM {s}.event_log_head WHERE hub = %s), 0)",
            [self.hub, stream_id, at, self.hub],
        )
        return int(rows[0][0])
