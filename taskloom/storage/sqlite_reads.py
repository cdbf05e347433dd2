"""The reads of :class:`~taskloom.storage.sqlite.SqliteStore`: instances, statuses,
histories, queries, counts and the leases an instance is held by (as
``postgres_reads.py`` is for PostgreSQL). Nothing here writes."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, TypeVar

from taskloom.history import ExecutionStarted, HistoryEvent, loads_event
from taskloom.models import Status
from taskloom.storage import large
from taskloom.storage import sqlite_codec as codec
from taskloom.storage.base import (
    START_PREFIX,
    InstanceLeases,
    InstanceQuery,
    InstanceRecord,
    PendingWork,
    QueryResult,
)
from taskloom.storage.entity_rows import SQLITE_NO_ENTITIES

T = TypeVar("T")

_SELECT_RECORD = f"SELECT {', '.join(codec.RECORD_COLUMNS)} FROM instances"


class SqliteReadsMixin:
    """Reads for :class:`~taskloom.storage.sqlite.SqliteStore`, on its connection and
    error helpers."""

    if TYPE_CHECKING:  # provided by SqliteStore
        hub: str

        def _errors(self, action: str) -> AbstractContextManager[None]: ...

        def _connection(self) -> sqlite3.Connection: ...

        def _read(self, action: str) -> AbstractContextManager[sqlite3.Connection]: ...

        def _resolved(self, conn: sqlite3.Connection, objs: list[T]) -> list[T]: ...

    async def get_instance(self, instance_id: str) -> InstanceRecord | None:
        sql = f"{_SELECT_RECORD} WHERE hub = ? AND instance_id = ?"
        with self._errors(f"read instance {instance_id!r}"):
            conn = self._connection()
            row = conn.execute(sql, (self.hub, instance_id)).fetchone()
            return None if row is None else self._resolved(conn, [codec.record(row)])[0]

    async def get_statuses(self, instance_ids: Sequence[str]) -> dict[str, Status]:
        ids = list(dict.fromkeys(instance_ids))
        found: dict[str, Status] = {}
        with self._errors("read statuses"):
            conn = self._connection()
            for chunk in codec.chunks(ids):
                rows = conn.execute(
                    "SELECT instance_id, status FROM instances WHERE hub = ? AND instance_id "
                    f"IN ({codec.marks(len(chunk))})",
                    (self.hub, *chunk),
                )
                found.update((row[0], codec.STATUS[row[1]]) for row in rows)
        return found

    async def get_history(self, instance_id: str) -> list[HistoryEvent]:
        return (await self.load_histories([instance_id]))[instance_id]

    async def load_histories(self, instance_ids: Sequence[str]) -> dict[str, list[HistoryEvent]]:
        ids = list(dict.fromkeys(instance_ids))
        histories: dict[str, list[HistoryEvent]] = {i: [] for i in ids}
        with self._read("read histories") as conn:
            for chunk in codec.chunks(ids):
                rows = conn.execute(
                    "SELECT instance_id, event FROM history WHERE hub = ? AND instance_id IN "
                    f"({codec.marks(len(chunk))}) ORDER BY instance_id, seq",
                    (self.hub, *chunk),
                )
                for row in rows:
                    histories[row[0]].append(loads_event(row[1]))
            if any(large.refs(events) for events in histories.values()):
                flat = self._resolved(conn, [e for events in histories.values() for e in events])
                position = 0
                for events in histories.values():
                    events[:] = flat[position : position + len(events)]
                    position += len(events)
        return histories

    async def load_start_events(self, instance_ids: Sequence[str]) -> dict[str, ExecutionStarted]:
        ids = list(dict.fromkeys(instance_ids))
        found: dict[str, ExecutionStarted] = {}
        with self._read("read start events") as conn:
            for table, order in (("history", "seq"), ("messages", "id")):
                wanted = [i for i in ids if i not in found]
                for chunk in codec.chunks(wanted):
                    rows = conn.execute(
                        f"SELECT instance_id, event FROM {table} WHERE hub = ? AND instance_id "
                        f"IN ({codec.marks(len(chunk))}) AND substr(event, 1, ?) = ? "
                        f"ORDER BY instance_id, {order}",
                        (self.hub, *chunk, len(START_PREFIX), START_PREFIX),
                    )
                    for iid, text in rows:
                        event = loads_event(text)
                        if iid not in found and isinstance(event, ExecutionStarted):
                            found[iid] = event
            if large.refs(list(found.values())):
                resolved = self._resolved(conn, list(found.values()))
                found = dict(zip(found, resolved, strict=True))
        return found

    async def query_instances(
        self, query: InstanceQuery, page_size: int, continuation_token: str | None
    ) -> QueryResult:
        if page_size < 1:
            raise ValueError(f"page_size must be at least 1, got {page_size}")
        clauses, params = codec.where(self.hub, query)
        past, order = ("<", " DESC") if query.newest_first else (">", "")
        if continuation_token:
            created_at, instance_id = codec.decode_token(continuation_token)
            # A row value, which SQLite seeks as one index range (an OR it walks).
            clauses.append(f"(created_at, instance_id) {past} (?, ?)")
            params.extend([created_at, instance_id])
        sql = (
            f"{_SELECT_RECORD} WHERE {' AND '.join(clauses)} "
            f"ORDER BY created_at{order}, instance_id{order}"
        )
        with self._errors("query instances"):
            # One row past the page tells whether another page exists.
            conn = self._connection()
            rows = conn.execute(f"{sql} LIMIT ?", (*params, page_size + 1)).fetchall()
            result = QueryResult(self._resolved(conn, [codec.record(r) for r in rows[:page_size]]))
        if len(rows) > page_size:
            last = rows[page_size - 1]
            result.continuation_token = codec.encode_token(last["created_at"], last["instance_id"])
        return result

    async def inspect_instance(self, instance_id: str) -> InstanceLeases | None:
        key = (self.hub, instance_id)
        with self._errors("inspect an instance"):
            conn = self._connection()
            row = conn.execute(
                "SELECT lease_owner, lease_expires FROM instances "
                "WHERE hub = ? AND instance_id = ?",
                key,
            ).fetchone()
            if row is None:
                return None
            work = conn.execute(
                "SELECT task_id, name, attempt, visible_at, lease_owner, lease_expires "
                "FROM work_items WHERE hub = ? AND instance_id = ? ORDER BY id",
                key,
            ).fetchall()
            inbox = conn.execute(
                "SELECT COUNT(*), MIN(visible_at) FROM messages WHERE hub = ? AND instance_id = ?",
                key,
            ).fetchone()
        return InstanceLeases(
            row[0],
            codec.dt_or_none(row[1]),
            [
                PendingWork(w[0], w[1], w[2], codec.dt(w[3]), w[4], codec.dt_or_none(w[5]))
                for w in work
            ],
            inbox[0],
            codec.dt_or_none(inbox[1]),
        )

    async def count_instances(self) -> dict[Status, int]:
        sql = (
            f"SELECT status, COUNT(*) FROM instances WHERE hub = ? AND {SQLITE_NO_ENTITIES} "
            "GROUP BY status"
        )
        with self._errors("count instances"):
            rows = self._connection().execute(sql, (self.hub,)).fetchall()
        return {Status(row[0]): row[1] for row in rows}
