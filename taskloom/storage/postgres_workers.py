"""The PostgreSQL backend's worker registry and backlog figures
(:class:`~taskloom.storage.host_base.HostStore`'s ``heartbeat_worker``, ``remove_worker``,
``list_workers`` and ``backlog``); the registry is the ``workers`` table of
``sql/postgres/0010_workers.sql``.

A heartbeat is one autocommit ``INSERT ... ON CONFLICT DO UPDATE``; listing deletes the
expired rows and returns the live ones in one statement (a data-modifying CTE). The
backlog is one statement: a count over each visibility index and the oldest row of each.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from psycopg import AsyncConnection

from taskloom.history import loads_event
from taskloom.storage.base import AT_ONCE
from taskloom.storage.host_base import BacklogFigure, HostStore, WorkerRecord

__all__ = ["PostgresWorkersMixin"]

T = TypeVar("T")
Conn = AsyncConnection[tuple[Any, ...]]

_COLUMNS = (
    "worker_id, host, pid, kind, version, orchestrations, activities, entities, "
    "slots, busy, started_at, last_seen, expires_at"
)
_UPDATED = ", ".join(f"{c} = excluded.{c}" for c in _COLUMNS.split(", ")[1:])


def _record(row: Sequence[Any]) -> WorkerRecord:
    (wid, host, pid, kind, version, orchs, acts, ents, slots, busy, started, seen, expires) = row
    return WorkerRecord(
        worker_id=wid,
        host=host,
        pid=pid,
        kind=kind,
        orchestrations=tuple(orchs),
        activities=tuple(acts),
        entities=tuple(ents),
        slots=slots,
        busy=busy,
        started_at=started,
        last_seen=seen,
        expires_at=expires,
        version=version,
    )


class PostgresWorkersMixin(HostStore):
    """The worker registry of :class:`~taskloom.storage.postgres.PostgresStore`."""

    if TYPE_CHECKING:  # provided by PostgresStore
        hub: str
        _s: str

        async def _run(self, op: Callable[[Conn], Awaitable[T]]) -> T: ...

    async def heartbeat_worker(self, record: WorkerRecord) -> None:
        r = record
        values = [
            self.hub,
            r.worker_id,
            r.host,
            r.pid,
            r.kind,
            r.version,
            list(r.orchestrations),
            list(r.activities),
            list(r.entities),
            r.slots,
            r.busy,
            r.started_at,
            r.last_seen,
            r.expires_at,
        ]
        marks = ", ".join(["%s"] * len(values))

        async def op(conn: Conn) -> None:
            await conn.execute(
                f"INSERT INTO {self._s}.workers (hub, {_COLUMNS}) VALUES ({marks}) "
                f"ON CONFLICT (hub, worker_id) DO UPDATE SET {_UPDATED}",
                values,
            )

        await self._run(op)

    async def remove_worker(self, worker_id: str) -> bool:
        async def op(conn: Conn) -> bool:
            cur = await conn.execute(
                f"DELETE FROM {self._s}.workers WHERE hub = %s AND worker_id = %s RETURNING 1",
                [self.hub, worker_id],
            )
            return await cur.fetchone() is not None

        return await self._run(op)

    async def list_workers(self, now: datetime) -> list[WorkerRecord]:
        s = self._s

        async def op(conn: Conn) -> list[tuple[Any, ...]]:
            # The DELETE touches only expired rows; the SELECT reads the same snapshot,
            # so it still sees them and filters them out by expires_at.
            cur = await conn.execute(
                f"WITH gone AS (DELETE FROM {s}.workers WHERE hub = %(hub)s "
                "AND expires_at <= %(now)s) "
                f"SELECT {_COLUMNS} FROM {s}.workers WHERE hub = %(hub)s "
                "AND expires_at > %(now)s ORDER BY started_at, worker_id",
                {"hub": self.hub, "now": now},
            )
            return await cur.fetchall()

        return [_record(r) for r in await self._run(op)]

    async def backlog(self, now: datetime) -> list[BacklogFigure]:
        s = self._s

        async def op(conn: Conn) -> tuple[Any, ...] | None:
            cur = await conn.execute(
                f"WITH m AS (SELECT count(*) AS n, min(id) AS first FROM {s}.messages "
                "WHERE hub = %(hub)s AND visible_at <= %(now)s), "
                f"w AS (SELECT count(*) AS n, min(id) AS first FROM {s}.work_items "
                "WHERE hub = %(hub)s AND ready_at <= %(now)s) "
                "SELECT m.n, mm.visible_at, mm.event, w.n, ww.scheduled_at, ww.visible_at "
                f"FROM m CROSS JOIN w LEFT JOIN {s}.messages mm ON mm.id = m.first "
                f"LEFT JOIN {s}.work_items ww ON ww.id = w.first",
                {"hub": self.hub, "now": now},
            )
            return await cur.fetchone()

        row = await self._run(op)
        assert row is not None
        messages, visible, event, items, scheduled, item_visible = row
        oldest = None if event is None else max(visible, loads_event(event).timestamp)
        ready = None
        if item_visible is not None:
            ready = (
                scheduled
                if item_visible == AT_ONCE
                else max(scheduled or item_visible, item_visible)
            )
        return [
            BacklogFigure("orchestration", int(messages), oldest),
            BacklogFigure("activity", int(items), ready),
        ]
