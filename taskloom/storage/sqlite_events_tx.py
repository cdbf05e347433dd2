"""The :class:`~taskloom.storage.events_base.EventTx` that SQLite event-log hooks get: view
reads and writes, appends, starts, parked events, savepoints and topic deliveries, on the
store's connection inside its open write transaction (the hooks run synchronously on the
store's thread)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime
from typing import TYPE_CHECKING

from taskloom.storage import sqlite_codec as codec
from taskloom.storage.base import DELIVERIES, EPISODES, LOG, STATUS, Message, NewInstance, timed
from taskloom.storage.events_base import EventTx, StoredEvent, StreamAppend

if TYPE_CHECKING:
    from taskloom.storage.sqlite_events import SqliteEventsMixin

__all__ = ["SqliteEventTx"]


class SqliteEventTx(EventTx):
    """:class:`EventTx` on the store's connection, inside its open write transaction."""

    def __init__(self, store: SqliteEventsMixin, conn: sqlite3.Connection, now: datetime) -> None:
        self._store = store
        self._conn = conn
        self._now = now
        self._savepoints = 0
        self.kinds = ""

    def view_get(self, view: str, key: str) -> str | None:
        row = self._conn.execute(
            "SELECT doc FROM event_views WHERE hub = ? AND view = ? AND key = ?",
            (self._store.hub, view, key),
        ).fetchone()
        return None if row is None else str(row[0])

    def view_put(self, view: str, key: str, doc: str) -> None:
        self._conn.execute(
            "INSERT INTO event_views (hub, view, key, doc) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (hub, view, key) DO UPDATE SET doc = excluded.doc",
            (self._store.hub, view, key, doc),
        )

    def view_delete(self, view: str, key: str) -> None:
        self._conn.execute(
            "DELETE FROM event_views WHERE hub = ? AND view = ? AND key = ?",
            (self._store.hub, view, key),
        )

    def append(self, appends: Sequence[StreamAppend]) -> list[tuple[int, int]]:
        # In a savepoint: a hook that catches a refused append keeps none of its appends.
        with self._savepoint():
            results, written = self._store._append(self._conn, appends, self._now)
        if written:
            self.kinds += LOG
        return results

    def start(self, instances: Sequence[NewInstance], messages: Sequence[Message]) -> None:
        for new in instances:
            self._store._create(self._conn, new)
        self._store._insert_messages(self._conn, messages)
        if instances or messages:
            self.kinds += EPISODES + STATUS + timed([*messages, *(n.start for n in instances)])

    def park(self, consumer: str, event: StoredEvent, error: str, attempts: int) -> None:
        self._conn.execute(
            "INSERT OR REPLACE INTO event_parked (hub, consumer, position, stream_id, version, "
            "event_id, type, error, attempts, parked_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                self._store.hub,
                consumer,
                event.position,
                event.stream_id,
                event.version,
                event.id,
                event.type,
                error,
                attempts,
                codec.us(self._now),
            ),
        )

    def unpark(self, consumer: str, position: int) -> None:
        self._conn.execute(
            "DELETE FROM event_parked WHERE hub = ? AND consumer = ? AND position = ?",
            (self._store.hub, consumer, position),
        )

    def read_log(self, after: int, limit: int) -> list[StoredEvent]:
        return self._store._read_log(self._conn, after, limit, None, None)

    def generation(self, name: str) -> int:
        row = self._conn.execute(
            "SELECT generation FROM event_view_meta WHERE hub = ? AND name = ?",
            (self._store.hub, name),
        ).fetchone()
        return 1 if row is None else int(row[0])

    def checkpoint(self, consumer: str) -> int | None:
        row = self._conn.execute(
            "SELECT min(position) FROM event_consumers WHERE hub = ? AND consumer = ?",
            (self._store.hub, consumer),
        ).fetchone()
        return None if row is None or row[0] is None else int(row[0])

    def set_checkpoint(self, consumer: str, position: int) -> None:
        self._conn.execute(
            "UPDATE event_consumers SET position = ?, updated_at = ? "
            "WHERE hub = ? AND consumer = ?",
            (position, codec.us(self._now), self._store.hub, consumer),
        )

    @contextmanager
    def _savepoint(self) -> Iterator[None]:
        self._savepoints += 1
        name = f"tl_sp{self._savepoints}"
        self._conn.execute(f"SAVEPOINT {name}")
        try:
            yield
        except BaseException:
            self._conn.execute(f"ROLLBACK TO {name}")
            self._conn.execute(f"RELEASE {name}")
            raise
        self._conn.execute(f"RELEASE {name}")

    def savepoint(self) -> AbstractContextManager[None]:
        return self._savepoint()

    def schedule_deliveries(
        self, subscription: str, topic: str, events: Sequence[StoredEvent], due_at: datetime
    ) -> None:
        if not events:
            return
        due = codec.us(due_at)
        self._conn.executemany(
            "INSERT OR IGNORE INTO topic_deliveries (hub, subscription, position, topic, "
            "due_at, published_at) VALUES (?, ?, ?, ?, ?, ?)",
            [
                (self._store.hub, subscription, e.position, topic, due, codec.us(e.recorded_at))
                for e in events
            ],
        )
        self.kinds += DELIVERIES
