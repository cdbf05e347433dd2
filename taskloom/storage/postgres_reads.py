"""The read side of the PostgreSQL store: instances, histories, paged queries, purge.

:class:`PostgresReadsMixin` runs on :class:`~taskloom.storage.postgres.PostgresStore`'s
pool through its ``_run``. Queries page by keyset on ``(created_at, instance_id)``, so a
page costs the same however deep it is; the continuation token is that key, encoded.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from psycopg import AsyncConnection

from taskloom.history import ExecutionStarted, HistoryEvent, loads_event
from taskloom.models import FailureDetails, Status
from taskloom.storage import large
from taskloom.storage.base import (
    START_PREFIX,
    InstanceLeases,
    InstanceQuery,
    InstanceRecord,
    PendingWork,
    QueryResult,
)
from taskloom.storage.entity_rows import (
    POSTGRES_NO_ENTITIES,
    postgres_keep_busy_entities,
    wants_entities,
)
from taskloom.storage.postgres_batch import INSTANCE_COLUMNS
from taskloom.storage.postgres_plans import UNPREPARED

__all__ = ["PostgresReadsMixin", "instance_from_row"]

T = TypeVar("T")
Conn = AsyncConnection[tuple[Any, ...]]

_TERMINAL = [s.value for s in Status if s.is_terminal]


def instance_from_row(row: Sequence[Any]) -> InstanceRecord:
    failure = row[8]
    return InstanceRecord(
        instance_id=row[0],
        execution_id=row[1],
        name=row[2],
        version=row[3],
        status=Status(row[4]),
        input=row[5],
        output=row[6],
        custom_status=row[7],
        failure=FailureDetails.from_dict(json.loads(failure)) if failure else None,
        created_at=row[9],
        updated_at=row[10],
        completed_at=row[11],
        parent_instance_id=row[12],
        scheduled_start_at=row[13],
        history_len=row[14],
    )


def _encode_token(created_at: datetime, instance_id: str) -> str:
    raw = json.dumps([created_at.isoformat(), instance_id], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode_token(token: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        created, instance_id = json.loads(raw)
        return datetime.fromisoformat(created), str(instance_id)
    except (ValueError, TypeError) as exc:
        raise ValueError(
            f"invalid continuation token {token!r}: pass back one a query returned"
        ) from exc


class PostgresReadsMixin:
    """Reads, queries and purges for :class:`~taskloom.storage.postgres.PostgresStore`."""

    if TYPE_CHECKING:  # provided by PostgresStore
        hub: str
        _s: str

        async def _run(self, op: Callable[[Conn], Awaitable[T]]) -> T: ...

    async def _resolved(self, conn: Conn, objs: list[T]) -> list[T]:
        """``objs`` with their large payload markers resolved, in one query."""
        digests = large.refs(objs)
        if not digests:
            return objs
        cur = await conn.execute(
            f"SELECT DISTINCT ON (id) id, data FROM {self._s}.payloads "
            "WHERE hub = %s AND id = ANY(%s)",
            [self.hub, sorted(digests)],
            prepare=UNPREPARED,
        )
        texts = {row[0]: large.decompress(row[1]) for row in await cur.fetchall()}
        return [large.resolve(obj, texts) for obj in objs]

    async def get_instance(self, instance_id: str) -> InstanceRecord | None:
        async def op(conn: Conn) -> InstanceRecord | None:
            cur = await conn.execute(
                f"SELECT {INSTANCE_COLUMNS} FROM {self._s}.instances "
                "WHERE hub = %s AND instance_id = %s",
                [self.hub, instance_id],
                prepare=UNPREPARED,
            )
            row = await cur.fetchone()
            return (
                None if row is None else (await self._resolved(conn, [instance_from_row(row)]))[0]
            )

        return await self._run(op)

    async def get_statuses(self, instance_ids: Sequence[str]) -> dict[str, Status]:
        ids = list(dict.fromkeys(instance_ids))

        async def op(conn: Conn) -> dict[str, Status]:
            cur = await conn.execute(
                f"SELECT instance_id, status FROM {self._s}.instances "
                "WHERE hub = %s AND instance_id = ANY(%b::text[])",
                [self.hub, ids],
                prepare=UNPREPARED,
            )
            return {row[0]: Status(row[1]) for row in await cur.fetchall()}

        return await self._run(op) if ids else {}

    async def get_history(self, instance_id: str) -> list[HistoryEvent]:
        return (await self.load_histories([instance_id]))[instance_id]

    async def load_histories(self, instance_ids: Sequence[str]) -> dict[str, list[HistoryEvent]]:
        ids = list(dict.fromkeys(instance_ids))
        if not ids:
            return {}

        async def op(conn: Conn) -> list[tuple[str, HistoryEvent]]:
            cur = await conn.execute(
                f"SELECT instance_id, event FROM {self._s}.history "
                "WHERE hub = %s AND instance_id = ANY(%b::text[]) ORDER BY instance_id, seq",
                [self.hub, ids],
                prepare=UNPREPARED,
            )
            rows = await cur.fetchall()
            events = await self._resolved(conn, [loads_event(row[1]) for row in rows])
            return [(row[0], event) for row, event in zip(rows, events, strict=True)]

        found: dict[str, list[HistoryEvent]] = {i: [] for i in ids}
        for instance_id, event in await self._run(op):
            found[instance_id].append(event)
        return found

    async def load_start_events(self, instance_ids: Sequence[str]) -> dict[str, ExecutionStarted]:
        ids = list(dict.fromkeys(instance_ids))
        if not ids:
            return {}

        async def op(conn: Conn) -> dict[str, ExecutionStarted]:
            # The first start in each history; then, for instances whose history has
            # none (not started yet), the first one in the inbox.
            cur = await conn.execute(
                "WITH h AS (SELECT DISTINCT ON (instance_id) instance_id, event "
                f"FROM {self._s}.history WHERE hub = %s AND instance_id = ANY(%b::text[]) "
                "AND left(event, %s) = %s ORDER BY instance_id, seq), "
                "m AS (SELECT DISTINCT ON (instance_id) instance_id, event "
                f"FROM {self._s}.messages WHERE hub = %s AND instance_id = ANY(%b::text[]) "
                "AND left(event, %s) = %s AND instance_id NOT IN (SELECT instance_id FROM h) "
                "ORDER BY instance_id, id) "
                "SELECT instance_id, event FROM h UNION ALL SELECT instance_id, event FROM m",
                [self.hub, ids, len(START_PREFIX), START_PREFIX] * 2,
                prepare=UNPREPARED,
            )
            rows = await cur.fetchall()
            starts = {
                row[0]: e for row in rows if isinstance(e := loads_event(row[1]), ExecutionStarted)
            }
            resolved = await self._resolved(conn, list(starts.values()))
            return dict(zip(starts, resolved, strict=True))

        return await self._run(op)

    def _filters(self, query: InstanceQuery) -> tuple[str, list[Any]]:
        """WHERE conditions (after ``hub = %s``) and their parameters for a query."""
        conds: list[str] = []
        params: list[Any] = []
        if query.statuses is not None:
            conds.append("status = ANY(%b::text[])")
            params.append([s.value for s in query.statuses])
        if query.name is not None:
            conds.append("name = %s")
            params.append(query.name)
        if query.instance_id_prefix:
            prefix = query.instance_id_prefix
            escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            conds.append("instance_id LIKE %s")
            params.append(escaped + "%")
        if query.created_from is not None:
            conds.append("created_at >= %s")
            params.append(query.created_from)
        if query.created_to is not None:
            conds.append("created_at <= %s")
            params.append(query.created_to)
        if query.parent_instance_id is not None:
            conds.append("parent_instance_id = %s")
            params.append(query.parent_instance_id)
        if query.version is not None:
            conds.append("COALESCE(version, '') = %s")
            params.append(query.version)
        if not wants_entities(query.instance_id_prefix):
            conds.append(POSTGRES_NO_ENTITIES)  # entities (@name@key) are not orchestrations
        return "".join(f" AND {c}" for c in conds), params

    async def inspect_instance(self, instance_id: str) -> InstanceLeases | None:
        key = [self.hub, instance_id]

        async def op(conn: Conn) -> InstanceLeases | None:
            cur = await conn.execute(
                f"SELECT lease_owner, lease_expires_at FROM {self._s}.instances "
                "WHERE hub = %s AND instance_id = %s",
                key,
            )
            row = await cur.fetchone()
            if row is None:
                return None
            cur = await conn.execute(
                "SELECT task_id, name, attempt, visible_at, lease_owner, lease_expires_at "
                f"FROM {self._s}.work_items WHERE hub = %s AND instance_id = %s ORDER BY id",
                key,
            )
            work = [PendingWork(*w) for w in await cur.fetchall()]
            cur = await conn.execute(
                f"SELECT COUNT(*), MIN(visible_at) FROM {self._s}.messages "
                "WHERE hub = %s AND instance_id = %s",
                key,
            )
            inbox = await cur.fetchone()
            assert inbox is not None
            return InstanceLeases(row[0], row[1], work, inbox[0], inbox[1])

        return await self._run(op)

    async def count_instances(self) -> dict[Status, int]:
        async def op(conn: Conn) -> list[tuple[str, int]]:
            cur = await conn.execute(
                f"SELECT status, COUNT(*) FROM {self._s}.instances WHERE hub = %s "
                f"AND {POSTGRES_NO_ENTITIES} GROUP BY status",
                [self.hub],
            )
            return [(row[0], row[1]) for row in await cur.fetchall()]

        return {Status(status): count for status, count in await self._run(op)}

    async def query_instances(
        self, query: InstanceQuery, page_size: int, continuation_token: str | None
    ) -> QueryResult:
        if page_size < 1:
            raise ValueError(f"page_size must be at least 1, not {page_size}")
        where, params = self._filters(query)
        past, order = ("<", " DESC") if query.newest_first else (">", "")
        if continuation_token:
            created, last_id = _decode_token(continuation_token)
            where += f" AND (created_at, instance_id) {past} (%s, %s)"
            params += [created, last_id]

        async def op(conn: Conn) -> tuple[int, list[InstanceRecord]]:
            cur = await conn.execute(
                f"SELECT {INSTANCE_COLUMNS} FROM {self._s}.instances WHERE hub = %s{where} "
                f"ORDER BY created_at{order}, instance_id{order} LIMIT %s",
                [self.hub, *params, page_size + 1],
            )
            rows = await cur.fetchall()
            page = [instance_from_row(r) for r in rows[:page_size]]
            return len(rows), await self._resolved(conn, page)

        count, records = await self._run(op)
        token = None
        if count > page_size:
            last = records[-1]
            token = _encode_token(last.created_at, last.instance_id)
        return QueryResult(records, token)

    async def purge_instances(
        self, query: InstanceQuery, instance_ids: Sequence[str] | None = None
    ) -> int:
        where, params = self._filters(query)
        where += f" AND {postgres_keep_busy_entities(self._s)}"
        if instance_ids is not None:
            if not instance_ids:
                return 0
            where += " AND instance_id = ANY(%b::text[])"
            params.append(list(instance_ids))
        s = self._s

        async def op(conn: Conn) -> int:
            # One statement: the CTEs delete the dependants of exactly the rows deleted.
            cur = await conn.execute(
                f"WITH gone AS (DELETE FROM {s}.instances WHERE hub = %s "
                f"AND status = ANY(%b::text[]){where} RETURNING instance_id), "
                f"h AS (DELETE FROM {s}.history WHERE hub = %s "
                "AND instance_id IN (SELECT instance_id FROM gone)), "
                f"m AS (DELETE FROM {s}.messages WHERE hub = %s "
                "AND instance_id IN (SELECT instance_id FROM gone)), "
                f"w AS (DELETE FROM {s}.work_items WHERE hub = %s "
                "AND instance_id IN (SELECT instance_id FROM gone)), "
                f"p AS (DELETE FROM {s}.payloads WHERE hub = %s "
                "AND instance_id IN (SELECT instance_id FROM gone)) "
                "SELECT count(*) FROM gone",
                [self.hub, _TERMINAL, *params, self.hub, self.hub, self.hub, self.hub],
            )
            row = await cur.fetchone()
            return int(row[0]) if row else 0

        return await self._run(op)
