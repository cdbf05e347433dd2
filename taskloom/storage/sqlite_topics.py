"""The SQLite backend's :class:`~taskloom.storage.topics_base.TopicStore`, in the tables
of ``sql/sqlite/0005_topics.sql``. Writes are ``BEGIN IMMEDIATE`` transactions of the
store's single writer, so a lease's select-then-update cannot race another host's."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import TYPE_CHECKING, Any

from taskloom.storage import sqlite_codec as codec
from taskloom.storage.base import DELIVERIES, SUBSCRIPTIONS
from taskloom.storage.events_base import StoredEvent
from taskloom.storage.sqlite_events import HEAD, _event
from taskloom.storage.sqlite_events_tx import SqliteEventTx
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

__all__ = ["SqliteTopicsMixin"]

_EVENT_COLUMNS = (
    "e.position, e.stream_id, e.version, e.event_id, e.type, e.data, e.metadata, e.recorded_at"
)


def _maybe_event(row: Sequence[Any]) -> StoredEvent | None:
    return None if row[0] is None else _event(tuple(row))


class SqliteTopicsMixin(TopicStore):
    """:class:`TopicStore` for :class:`~taskloom.storage.sqlite.SqliteStore`."""

    if TYPE_CHECKING:  # provided by SqliteStore
        hub: str

        def _read(self, action: str) -> AbstractContextManager[sqlite3.Connection]: ...

        def _write(self, action: str) -> AbstractContextManager[sqlite3.Connection]: ...

        def _notify(self, kinds: str = ...) -> None: ...

    # -- subscriptions --------------------------------------------------------------

    async def subscription_put(self, record: SubscriptionRecord) -> bool:
        with self._write(f"store subscription {record.name!r}") as conn:
            cur = conn.execute(
                "UPDATE topic_subscriptions SET topic = ?, kind = ?, spec = ?, updated_at = ? "
                "WHERE hub = ? AND name = ?",
                (
                    record.topic,
                    record.kind,
                    record.spec,
                    codec.us(record.updated_at),
                    self.hub,
                    record.name,
                ),
            )
            created = not cur.rowcount
            if created:
                self._insert_subscription(conn, record)
        self._notify(SUBSCRIPTIONS)
        return created

    def _insert_subscription(self, conn: sqlite3.Connection, record: SubscriptionRecord) -> None:
        conn.execute(
            "INSERT INTO topic_subscriptions (hub, name, topic, kind, spec, created_at, "
            "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                self.hub,
                record.name,
                record.topic,
                record.kind,
                record.spec,
                codec.us(record.created_at),
                codec.us(record.updated_at),
            ),
        )

    def _subscriptions(self, where: str, params: Sequence[Any]) -> list[SubscriptionRecord]:
        with self._read("read topic subscriptions") as conn:
            rows = conn.execute(
                "SELECT name, topic, kind, spec, created_at, updated_at FROM "
                f"topic_subscriptions WHERE hub = ?{where} ORDER BY name",
                (self.hub, *params),
            ).fetchall()
        return [
            SubscriptionRecord(r[0], r[1], r[2], r[3], codec.dt(r[4]), codec.dt(r[5])) for r in rows
        ]

    async def subscription_get(self, name: str) -> SubscriptionRecord | None:
        found = self._subscriptions(" AND name = ?", [name])
        return found[0] if found else None

    async def subscription_list(self, topic: str | None = None) -> list[SubscriptionRecord]:
        if topic is None:
            return self._subscriptions("", [])
        return self._subscriptions(" AND topic = ?", [topic])

    async def subscription_delete(self, name: str) -> bool:
        with self._write(f"delete subscription {name!r}") as conn:
            cur = conn.execute(
                "DELETE FROM topic_subscriptions WHERE hub = ? AND name = ?", (self.hub, name)
            )
            for table in ("topic_deliveries", "topic_dead_letters"):
                conn.execute(
                    f"DELETE FROM {table} WHERE hub = ? AND subscription = ?", (self.hub, name)
                )
            conn.execute(
                "DELETE FROM event_consumers WHERE hub = ? AND consumer = ?",
                (self.hub, fanout_consumer(name)),
            )
        self._notify(SUBSCRIPTIONS)
        return cur.rowcount > 0

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
        at = codec.us(now)
        due = (
            "SELECT position FROM topic_deliveries WHERE hub = ? AND subscription = ? AND "
            "position > ? AND due_at <= ? ORDER BY position LIMIT ?"
        )
        params = (self.hub, subscription, after, at, limit)
        with self._read("look for due deliveries") as conn:
            if limit < 1 or conn.execute(due, params).fetchone() is None:
                return []
        with self._write(f"lease deliveries of {subscription!r}") as conn:
            leased = conn.execute(
                "UPDATE topic_deliveries SET attempts = attempts + 1, "
                "lease_token = lease_token + 1, lease_owner = ?, due_at = ?, last_attempt_at = ? "
                f"WHERE hub = ? AND subscription = ? AND position IN ({due}) "
                "RETURNING position, topic, attempts, lease_token, published_at, last_outcome",
                (owner, at + codec.seconds_to_us(visibility), at, self.hub, subscription, *params),
            ).fetchall()
            leased.sort(key=lambda r: r[0])
            events: dict[int, StoredEvent] = {}
            for chunk in codec.chunks([r[0] for r in leased]):
                for row in conn.execute(
                    f"SELECT {_EVENT_COLUMNS} FROM events e WHERE e.hub = ? AND "
                    f"e.position IN ({codec.marks(len(chunk))})",
                    (self.hub, *chunk),
                ):
                    events[row[0]] = _event(row)
        return [
            Delivery(subscription, r[0], r[1], r[2], r[3], codec.dt(r[4]), r[5], events.get(r[0]))
            for r in leased
        ]

    def _key(self, delivery: Delivery) -> tuple[str, str, int, int]:
        return (self.hub, delivery.subscription, delivery.position, delivery.lease_token)

    async def delivery_settle(
        self, delivery: Delivery, now: datetime, hook: DeliveryHook | None = None
    ) -> bool:
        with self._write(f"settle a delivery of {delivery.subscription!r}") as conn:
            cur = conn.execute(
                "DELETE FROM topic_deliveries WHERE hub = ? AND subscription = ? AND "
                "position = ? AND lease_token = ?",
                self._key(delivery),
            )
            if not cur.rowcount:
                return False
            tx = SqliteEventTx(self, conn, now)  # type: ignore[arg-type]
            if hook is not None:
                hook(tx)
        if tx.kinds:
            self._notify(tx.kinds)
        return True

    async def delivery_ack(self, deliveries: Sequence[Delivery]) -> int:
        if not deliveries:
            return 0
        with self._write(f"acknowledge {len(deliveries)} deliveries") as conn:
            before = conn.total_changes
            conn.executemany(
                "DELETE FROM topic_deliveries WHERE hub = ? AND subscription = ? AND "
                "position = ? AND lease_token = ?",
                [self._key(d) for d in deliveries],
            )
            return conn.total_changes - before

    async def delivery_retry(
        self, delivery: Delivery, due_at: datetime, outcome: str, now: datetime
    ) -> bool:
        with self._write(f"retry a delivery of {delivery.subscription!r}") as conn:
            cur = conn.execute(
                "UPDATE topic_deliveries SET due_at = ?, last_outcome = ?, lease_owner = NULL "
                "WHERE hub = ? AND subscription = ? AND position = ? AND lease_token = ?",
                (codec.us(due_at), outcome, *self._key(delivery)),
            )
        if cur.rowcount:
            self._notify(DELIVERIES)
        return cur.rowcount > 0

    async def delivery_dead_letter(
        self, delivery: Delivery, reason: str, outcome: str, now: datetime
    ) -> bool:
        with self._write(f"dead-letter a delivery of {delivery.subscription!r}") as conn:
            row = conn.execute(
                "DELETE FROM topic_deliveries WHERE hub = ? AND subscription = ? AND "
                "position = ? AND lease_token = ? RETURNING last_attempt_at",
                self._key(delivery),
            ).fetchone()
            if row is None:
                return False
            conn.execute(
                "INSERT OR REPLACE INTO topic_dead_letters (hub, subscription, position, topic, "
                "reason, attempts, last_outcome, published_at, last_attempt_at, "
                "dead_lettered_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    self.hub,
                    delivery.subscription,
                    delivery.position,
                    delivery.topic,
                    reason,
                    delivery.attempts,
                    outcome,
                    codec.us(delivery.published_at),
                    row[0] if row[0] is not None else codec.us(now),
                    codec.us(now),
                ),
            )
        return True

    async def delivery_next_due(self, subscriptions: Sequence[str]) -> datetime | None:
        if not subscriptions:
            return None
        with self._read("read the next delivery time") as conn:
            row = conn.execute(
                "SELECT min(due_at) FROM topic_deliveries WHERE hub = ? AND subscription IN "
                f"({codec.marks(len(subscriptions))})",
                (self.hub, *subscriptions),
            ).fetchone()
        return None if row is None or row[0] is None else codec.dt(row[0])

    async def delivery_stats(self) -> list[DeliveryStats]:
        with self._read("count topic deliveries") as conn:
            pending = {
                r[0]: (r[1], codec.dt_or_none(r[2]))
                for r in conn.execute(
                    "SELECT subscription, count(*), min(due_at) FROM topic_deliveries "
                    "WHERE hub = ? GROUP BY subscription",
                    (self.hub,),
                )
            }
            dead = dict(
                conn.execute(
                    "SELECT subscription, count(*) FROM topic_dead_letters WHERE hub = ? "
                    "GROUP BY subscription",
                    (self.hub,),
                ).fetchall()
            )
        return merge_stats(pending, dead)

    # -- dead letters ---------------------------------------------------------------

    async def dead_letters(
        self, topic: str | None, subscription: str | None, limit: int
    ) -> list[DeadLetterRecord]:
        where, params = letter_filter(topic, subscription, "?")
        with self._read("read dead letters") as conn:
            rows = conn.execute(
                "SELECT d.subscription, d.position, d.topic, d.reason, d.attempts, "
                "d.last_outcome, d.published_at, d.last_attempt_at, d.dead_lettered_at, "
                f"{_EVENT_COLUMNS} FROM topic_dead_letters d LEFT JOIN events e ON "
                f"e.hub = d.hub AND e.position = d.position WHERE d.hub = ?{where} "
                "ORDER BY d.dead_lettered_at, d.position LIMIT ?",
                (self.hub, *params, limit),
            ).fetchall()
        return [
            DeadLetterRecord(
                r[0],
                r[1],
                r[2],
                r[3],
                r[4],
                r[5],
                codec.dt(r[6]),
                codec.dt(r[7]),
                codec.dt(r[8]),
                _maybe_event(r[9:]),
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
        where, params = letter_filter(topic, subscription, "?")
        if positions is not None:
            if not positions:
                return 0
            where += f" AND d.position IN ({codec.marks(len(positions))})"
            params += list(positions)
        at = codec.us(now)
        with self._write("redrive dead letters") as conn:
            moved = conn.execute(
                f"DELETE FROM topic_dead_letters AS d WHERE d.hub = ?{where} "
                "RETURNING subscription, position, topic",
                (self.hub, *params),
            ).fetchall()
            conn.executemany(
                "INSERT OR IGNORE INTO topic_deliveries (hub, subscription, position, topic, "
                "due_at, published_at) VALUES (?, ?, ?, ?, ?, ?)",
                [(self.hub, r[0], r[1], r[2], at, at) for r in moved],
            )
        if moved:
            self._notify(DELIVERIES)
        return len(moved)

    # -- reading a topic ------------------------------------------------------------

    async def position_at(self, stream_id: str, at: datetime) -> int:
        with self._read("find a position by time") as conn:
            # By version: within a stream, positions rise with versions.
            row = conn.execute(
                "SELECT position FROM events INDEXED BY events_stream_version WHERE hub = ? "
                "AND stream_id = ? AND recorded_at >= ? ORDER BY version LIMIT 1",
                (self.hub, stream_id, codec.us(at)),
            ).fetchone()
            if row is not None and row[0] is not None:
                return int(row[0]) - 1
            head = conn.execute(HEAD, {"hub": self.hub}).fetchone()
        return 0 if head is None else int(head[0])
