"""The SQLite backend's :class:`~taskloom.storage.host_base.HostStore`: queues, schedules,
API keys and secrets, in the tables of ``sql/sqlite/0002_host.sql``.

:class:`SqliteHostMixin` runs on :class:`~taskloom.storage.sqlite.SqliteStore`'s
connection and hub, with its transaction helpers: every read-then-write happens in one
``BEGIN IMMEDIATE`` transaction under SQLite's writer lock, so stores of several
processes sharing the file never both win a lease or a schedule tick.

A leased queue message's ``visible_at`` is moved to its lease expiry (a visibility
timeout, like work items), so ``visible_at <= now`` finds every message free to lease and
a message whose holder died is delivered again once that time passes. A delivery is
fenced by ``lease_token`` *and* a recorded ``lease_owner``: ``queue_fail`` clears the
owner, so the same token can never ack or fail the message a second time.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import TYPE_CHECKING, Any

from taskloom.storage import sqlite_codec as codec
from taskloom.storage.base import AT_ONCE, QUEUES
from taskloom.storage.host_base import (
    SCHEDULE_QUEUE,
    HostStore,
    KeyRecord,
    QueueMessage,
    ScheduleRecord,
)

__all__ = ["SqliteHostMixin"]


_MESSAGE_COLUMNS = "id, queue, body, dequeue_count, lease_token, inserted_at, error"
_INSERT_MESSAGE = (
    "INSERT INTO queue_messages "
    "(hub, queue, body, visible_at, inserted_at, dequeue_count, error) "
    "VALUES (?, ?, ?, ?, ?, ?, ?)"
)
_SCHEDULE_COLUMNS = "name, spec, next_tick, paused, last_tick"
_KEY_COLUMNS = "id, name, role, key_hash, created_at, revoked_at"


def _message(row: sqlite3.Row) -> QueueMessage:
    return QueueMessage(
        id=row["id"],
        queue=row["queue"],
        body=row["body"],
        dequeue_count=row["dequeue_count"],
        lease_token=row["lease_token"],
        inserted_at=codec.dt(row["inserted_at"]),
        error=row["error"],
    )


def _schedule(row: sqlite3.Row) -> ScheduleRecord:
    return ScheduleRecord(
        name=row["name"],
        spec=row["spec"],
        next_tick=codec.dt(row["next_tick"]),
        paused=bool(row["paused"]),
        last_tick=codec.dt_or_none(row["last_tick"]),
    )


def _key(row: sqlite3.Row) -> KeyRecord:
    return KeyRecord(
        id=row["id"],
        name=row["name"],
        role=row["role"],
        key_hash=row["key_hash"],
        created_at=codec.dt(row["created_at"]),
        revoked_at=codec.dt_or_none(row["revoked_at"]),
    )


class SqliteHostMixin(HostStore):
    """:class:`HostStore` for :class:`~taskloom.storage.sqlite.SqliteStore` (see the
    module docstring); it relies on the store's ``hub`` and transaction helpers."""

    if TYPE_CHECKING:  # provided by SqliteStore
        hub: str

        def _read(self, action: str) -> AbstractContextManager[sqlite3.Connection]: ...

        def _write(self, action: str) -> AbstractContextManager[sqlite3.Connection]: ...

        def _scalar(self, action: str, sql: str, params: Sequence[Any] | dict[str, Any]) -> Any: ...

        def _notify(self, kinds: str = ...) -> None: ...

    # -- queues ---------------------------------------------------------------------

    async def queue_put(self, queue: str, body: str, visible_at: datetime, now: datetime) -> int:
        with self._write(f"put a message on queue {queue!r}") as conn:
            cur = conn.execute(
                _INSERT_MESSAGE,
                (self.hub, queue, body, codec.us(visible_at), codec.us(now), 0, None),
            )
            message_id = cur.lastrowid
        self._notify(QUEUES)
        assert message_id is not None
        return message_id

    async def queue_lease(
        self, queues: Sequence[str], now: datetime, limit: int, visibility: float, owner: str
    ) -> list[QueueMessage]:
        names = list(dict.fromkeys(queues))
        if limit < 1 or not names:
            return []
        at = codec.us(now)
        candidates = (
            f"SELECT id FROM queue_messages WHERE hub = ? AND queue IN ({codec.marks(len(names))}) "
            "AND visible_at <= ? ORDER BY visible_at, id LIMIT ?"
        )
        params = (self.hub, *names, at, limit)
        # Look without the writer lock first, so idle hosts never queue on it (ids start
        # at 1, so any found id is truthy).
        if not self._scalar("look for queue messages", candidates, params):
            return []
        hidden_until = at + round(visibility * 1_000_000)
        rows: list[sqlite3.Row] = []
        with self._write(f"lease messages of {names}") as conn:
            # Again under the lock: another process may have leased some meanwhile.
            ids = [r[0] for r in conn.execute(candidates, params)]
            for chunk in codec.chunks(ids):
                rows += conn.execute(
                    "UPDATE queue_messages SET lease_owner = ?, lease_token = lease_token + 1, "
                    "dequeue_count = dequeue_count + 1, visible_at = ? "
                    f"WHERE hub = ? AND id IN ({codec.marks(len(chunk))}) "
                    f"RETURNING {_MESSAGE_COLUMNS}",
                    (owner, hidden_until, self.hub, *chunk),
                ).fetchall()
        position = {message_id: n for n, message_id in enumerate(ids)}
        rows.sort(key=lambda r: position[r["id"]])
        return [_message(r) for r in rows]

    async def queue_ack(self, message_id: int, lease_token: int) -> bool:
        with self._write(f"acknowledge queue message {message_id}") as conn:
            deleted = conn.execute(
                "DELETE FROM queue_messages WHERE hub = ? AND id = ? AND lease_token = ? "
                "AND lease_owner IS NOT NULL",
                (self.hub, message_id, lease_token),
            ).rowcount
        return deleted == 1

    async def queue_fail(
        self,
        message_id: int,
        lease_token: int,
        error: str,
        retry_at: datetime,
        max_dequeue_count: int,
        now: datetime,
    ) -> str:
        with self._write(f"record a failed delivery of queue message {message_id}") as conn:
            row = conn.execute(
                "SELECT queue, body, dequeue_count, inserted_at FROM queue_messages "
                "WHERE hub = ? AND id = ? AND lease_token = ? AND lease_owner IS NOT NULL",
                (self.hub, message_id, lease_token),
            ).fetchone()
            if row is None:
                return "lost"
            if row["dequeue_count"] >= max_dequeue_count:
                # A new message on the poison queue, visible at once, keeping the
                # original insertion time and delivery count for diagnosis.
                conn.execute("DELETE FROM queue_messages WHERE id = ?", (message_id,))
                conn.execute(
                    _INSERT_MESSAGE,
                    (
                        self.hub,
                        f"{row['queue']}-poison",
                        row["body"],
                        codec.us(AT_ONCE),
                        row["inserted_at"],
                        row["dequeue_count"],
                        error,
                    ),
                )
                outcome = "poisoned"
            else:
                conn.execute(
                    "UPDATE queue_messages SET visible_at = ?, error = ?, lease_owner = NULL "
                    "WHERE id = ?",
                    (codec.us(retry_at), error, message_id),
                )
                outcome = "retry"
        self._notify(QUEUES)
        return outcome

    async def queue_peek(self, queue: str, limit: int = 100) -> list[QueueMessage]:
        with self._read(f"peek at queue {queue!r}") as conn:
            rows = conn.execute(
                f"SELECT {_MESSAGE_COLUMNS} FROM queue_messages WHERE hub = ? AND queue = ? "
                "ORDER BY id LIMIT ?",
                (self.hub, queue, max(limit, 0)),
            ).fetchall()
        return [_message(r) for r in rows]

    # -- schedules ------------------------------------------------------------------

    async def schedule_upsert(self, name: str, spec: str, next_tick: datetime) -> ScheduleRecord:
        with self._write(f"register schedule {name!r}") as conn:
            conn.execute(
                "INSERT INTO schedules (hub, name, spec, next_tick) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (hub, name) DO UPDATE SET spec = excluded.spec, "
                "next_tick = excluded.next_tick WHERE schedules.spec <> excluded.spec",
                (self.hub, name, spec, codec.us(next_tick)),
            )
            row = conn.execute(
                f"SELECT {_SCHEDULE_COLUMNS} FROM schedules WHERE hub = ? AND name = ?",
                (self.hub, name),
            ).fetchone()
        return _schedule(row)

    async def schedule_list(self) -> list[ScheduleRecord]:
        with self._read("list schedules") as conn:
            rows = conn.execute(
                f"SELECT {_SCHEDULE_COLUMNS} FROM schedules WHERE hub = ? ORDER BY name",
                (self.hub,),
            ).fetchall()
        return [_schedule(r) for r in rows]

    async def schedule_claim(
        self, name: str, tick: datetime, next_tick: datetime, body: str, now: datetime
    ) -> bool:
        with self._write(f"claim a tick of schedule {name!r}") as conn:
            claimed = (
                conn.execute(
                    "UPDATE schedules SET next_tick = ?, last_tick = ? "
                    "WHERE hub = ? AND name = ? AND next_tick = ? AND paused = 0",
                    (codec.us(next_tick), codec.us(tick), self.hub, name, codec.us(tick)),
                ).rowcount
                == 1
            )
            if claimed:
                at = codec.us(now)
                conn.execute(
                    _INSERT_MESSAGE,
                    (self.hub, SCHEDULE_QUEUE, body, codec.us(AT_ONCE), at, 0, None),
                )
        if claimed:
            self._notify(QUEUES)
        return claimed

    async def schedule_set_paused(
        self, name: str, paused: bool, next_tick: datetime | None
    ) -> bool:
        tick = None if next_tick is None else codec.us(next_tick)
        with self._write(f"pause or resume schedule {name!r}") as conn:
            updated = conn.execute(
                "UPDATE schedules SET paused = ?, next_tick = COALESCE(?, next_tick) "
                "WHERE hub = ? AND name = ?",
                (int(paused), tick, self.hub, name),
            ).rowcount
        return updated == 1

    # -- keys and secrets -----------------------------------------------------------

    async def key_create(self, key: KeyRecord) -> None:
        revoked = None if key.revoked_at is None else codec.us(key.revoked_at)
        with self._write(f"create API key {key.id!r}") as conn:
            conn.execute(
                f"INSERT INTO api_keys (hub, {_KEY_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    self.hub,
                    key.id,
                    key.name,
                    key.role,
                    key.key_hash,
                    codec.us(key.created_at),
                    revoked,
                ),
            )

    async def key_list(self) -> list[KeyRecord]:
        """Every key of the hub, revoked ones included, oldest first."""
        with self._read("list API keys") as conn:
            rows = conn.execute(
                f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE hub = ? ORDER BY created_at, id",
                (self.hub,),
            ).fetchall()
        return [_key(r) for r in rows]

    async def key_revoke(self, key_id: str, now: datetime) -> bool:
        """Revoke the key; True if it exists (revoking again keeps the first time)."""
        with self._write(f"revoke API key {key_id!r}") as conn:
            updated = conn.execute(
                "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, ?) WHERE hub = ? AND id = ?",
                (codec.us(now), self.hub, key_id),
            ).rowcount
        return updated == 1

    async def key_lookup(self, key_hash: str) -> KeyRecord | None:
        with self._read("look up an API key") as conn:
            row = conn.execute(
                f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE hub = ? AND key_hash = ? "
                "AND revoked_at IS NULL",
                (self.hub, key_hash),
            ).fetchone()
        return None if row is None else _key(row)

    async def key_hubs(self) -> dict[str, int]:
        with self._read("count API keys") as conn:
            rows = conn.execute(
                "SELECT hub, COUNT(*) FROM api_keys WHERE revoked_at IS NULL GROUP BY hub"
            ).fetchall()
        return {str(r[0]): int(r[1]) for r in rows}

    async def secret(self, name: str, candidate: str) -> str:
        with self._write(f"read secret {name!r}") as conn:
            conn.execute(
                "INSERT INTO secrets (hub, name, value) VALUES (?, ?, ?) "
                "ON CONFLICT (hub, name) DO NOTHING",
                (self.hub, name, candidate),
            )
            row = conn.execute(
                "SELECT value FROM secrets WHERE hub = ? AND name = ?", (self.hub, name)
            ).fetchone()
        return str(row[0])
