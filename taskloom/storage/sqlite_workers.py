"""The SQLite backend's worker registry and backlog figures
(:class:`~taskloom.storage.host_base.HostStore`'s ``heartbeat_worker``, ``remove_worker``,
``list_workers`` and ``backlog``); the registry is the ``workers`` table of
``sql/sqlite/0008_workers.sql``.

A heartbeat is one ``INSERT ... ON CONFLICT DO UPDATE`` under the writer lock; listing
reads without it and takes the lock only when it found expired rows to delete. The
backlog is read without the lock: a count over each visibility index, and one row each.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import TYPE_CHECKING

from taskloom.history import loads_event
from taskloom.storage import sqlite_codec as codec
from taskloom.storage.base import AT_ONCE
from taskloom.storage.host_base import BacklogFigure, HostStore, WorkerRecord

__all__ = ["SqliteWorkersMixin"]

_COLUMNS = (
    "worker_id, host, pid, kind, version, orchestrations, activities, entities, "
    "slots, busy, started_at, last_seen, expires_at"
)
_UPDATED = ", ".join(f"{c} = excluded.{c}" for c in _COLUMNS.split(", ")[1:])


def _names(names: Sequence[str]) -> str:
    return json.dumps(list(names))


def _record(row: sqlite3.Row) -> WorkerRecord:
    return WorkerRecord(
        worker_id=row["worker_id"],
        host=row["host"],
        pid=row["pid"],
        kind=row["kind"],
        orchestrations=tuple(json.loads(row["orchestrations"])),
        activities=tuple(json.loads(row["activities"])),
        entities=tuple(json.loads(row["entities"])),
        slots=row["slots"],
        busy=row["busy"],
        started_at=codec.dt(row["started_at"]),
        last_seen=codec.dt(row["last_seen"]),
        expires_at=codec.dt(row["expires_at"]),
        version=row["version"],
    )


class SqliteWorkersMixin(HostStore):
    """The worker registry of :class:`~taskloom.storage.sqlite.SqliteStore`."""

    if TYPE_CHECKING:  # provided by SqliteStore
        hub: str

        def _read(self, action: str) -> AbstractContextManager[sqlite3.Connection]: ...

        def _write(self, action: str) -> AbstractContextManager[sqlite3.Connection]: ...

    async def heartbeat_worker(self, record: WorkerRecord) -> None:
        r = record
        values = (
            self.hub,
            r.worker_id,
            r.host,
            r.pid,
            r.kind,
            r.version,
            _names(r.orchestrations),
            _names(r.activities),
            _names(r.entities),
            r.slots,
            r.busy,
            codec.us(r.started_at),
            codec.us(r.last_seen),
            codec.us(r.expires_at),
        )
        with self._write(f"record the heartbeat of worker {r.worker_id!r}") as conn:
            conn.execute(
                f"INSERT INTO workers (hub, {_COLUMNS}) VALUES ({codec.marks(len(values))}) "
                f"ON CONFLICT (hub, worker_id) DO UPDATE SET {_UPDATED}",
                values,
            )

    async def remove_worker(self, worker_id: str) -> bool:
        with self._write(f"remove worker {worker_id!r}") as conn:
            deleted = conn.execute(
                "DELETE FROM workers WHERE hub = ? AND worker_id = ?", (self.hub, worker_id)
            ).rowcount
        return deleted == 1

    async def list_workers(self, now: datetime) -> list[WorkerRecord]:
        at = codec.us(now)
        with self._read("list workers") as conn:
            rows = conn.execute(
                f"SELECT {_COLUMNS} FROM workers WHERE hub = ? ORDER BY started_at, worker_id",
                (self.hub,),
            ).fetchall()
        live = [r for r in rows if r["expires_at"] > at]
        if len(live) < len(rows):
            with self._write("delete expired workers") as conn:
                conn.execute(
                    "DELETE FROM workers WHERE hub = ? AND expires_at <= ?", (self.hub, at)
                )
        return [_record(r) for r in live]

    async def backlog(self, now: datetime) -> list[BacklogFigure]:
        at = codec.us(now)
        with self._read("read the backlog") as conn:
            depth, first = conn.execute(
                "SELECT count(*), min(id) FROM messages WHERE hub = ? AND visible_at <= ?",
                (self.hub, at),
            ).fetchone()
            oldest = None
            if first is not None:
                row = conn.execute(
                    "SELECT visible_at, event FROM messages WHERE id = ?", (first,)
                ).fetchone()
                if row is not None:
                    oldest = max(codec.dt(row[0]), loads_event(row[1]).timestamp)
            orchestrations = BacklogFigure("orchestration", int(depth), oldest)
            # A leased item's visible_at is its lease expiry: visible ones nobody holds.
            depth, first = conn.execute(
                "SELECT count(*), min(id) FROM work_items WHERE hub = ? AND visible_at <= ?",
                (self.hub, at),
            ).fetchone()
            oldest = None
            if first is not None:
                row = conn.execute(
                    "SELECT scheduled_at, visible_at FROM work_items WHERE id = ?", (first,)
                ).fetchone()
                if row is not None:
                    oldest = _ready_at(codec.dt_or_none(row[0]), codec.dt(row[1]))
        return [orchestrations, BacklogFigure("activity", int(depth), oldest)]


def _ready_at(scheduled: datetime | None, visible: datetime) -> datetime | None:
    """When a work item became runnable: its scheduling, or a later visibility."""
    if visible == AT_ONCE:
        return scheduled
    return visible if scheduled is None else max(scheduled, visible)
