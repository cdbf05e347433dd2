"""The planner settings of the PostgreSQL store's hot transactions (see "Plans that do
not go stale" in ``docs/scaling.md``).

psycopg prepares a statement after a few runs and PostgreSQL then caches one generic
plan for it, costed on the tables as they were then. Made on an empty hub, such a plan
scans tables that later hold thousands of rows. So the hot transactions set, for
themselves only, :func:`plan_setting`, and the reads by id are never prepared
(:data:`UNPREPARED`). Nothing here is public API.
"""

from __future__ import annotations

from typing import Any

from psycopg import AsyncConnection, AsyncCursor

__all__ = ["GENERIC_UP_TO", "UNPREPARED", "plan_setting", "planned"]

#: Batches up to this many rows may run on a cached (generic) plan; larger ones are
#: planned for their own parameters.
GENERIC_UP_TO = 8

#: ``prepare=`` for the reads by id (instances, statuses, histories, payloads, a queue
#: acknowledgement): planned on every call, since planning a look-up costs less than
#: the scan a plan cached on an empty hub would make.
UNPREPARED = False

_SETTINGS = "SELECT set_config('enable_seqscan', %s, true), set_config('plan_cache_mode', %s, true)"


def plan_setting(rows: int) -> tuple[str, list[Any]]:
    """The statement that sets, local to its transaction: for batches of up to
    :data:`GENERIC_UP_TO` rows, index scans rather than sequential ones whatever the
    statistics say (so the cached plan stays right as the tables grow); for larger
    ones, a plan made for their own rows."""
    small = rows <= GENERIC_UP_TO
    return _SETTINGS, ["off" if small else "on", "auto" if small else "force_custom_plan"]


async def planned(
    conn: AsyncConnection[tuple[Any, ...]], rows: int, sql: str, params: Any
) -> AsyncCursor[tuple[Any, ...]]:
    """Run one statement in a transaction of its own under :func:`plan_setting` for
    ``rows``, in one round trip; returns its cursor, ready to fetch."""
    cur = conn.cursor()
    async with conn.pipeline(), conn.transaction():
        await conn.execute(*plan_setting(rows))
        await cur.execute(sql, params)
    return cur
