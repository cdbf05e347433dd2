"""Starts on PostgreSQL, made together: concurrent ``create_instance`` calls share one
statement and one transaction (as on SQLite, where starts made together share one).

While a batch is in flight, new starts wait for the next one, so a lone start goes at
once and a burst of them costs a round trip (and a WAL flush) per batch rather than per
start. The statement creates every instance whose id is free and sends its start
message; an id that is taken is left alone, for the caller's slow path (lock the row,
replace it if finished), exactly as a single start does.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from taskloom.history import dumps_event
from taskloom.storage.base import NewInstance
from taskloom.storage.coalesce import Coalescer
from taskloom.storage.postgres_batch import INSTANCE_COLUMNS, record_values

__all__ = ["StartGroup", "Started", "starts_params", "starts_sql"]

#: Starts per statement at most (a burst is cut into batches of this size).
BATCH = 500


def starts_sql(s: str) -> str:
    """Create the instances of a batch whose ids are free, clear leftovers sent to those
    ids before they existed (on the statement's snapshot, so never the start messages
    the same statement inserts) and send their start messages; returns the ids created."""
    columns = [c.strip() for c in INSTANCE_COLUMNS.split(",")]
    casts = {
        "history_len": "int",
        "created_at": "timestamptz",
        "updated_at": "timestamptz",
        "completed_at": "timestamptz",
        "scheduled_start_at": "timestamptz",
    }
    arrays = ", ".join(f"%({c})b::{casts.get(c, 'text')}[]" for c in columns)
    key = "hub = %(hub)s AND instance_id IN (SELECT instance_id FROM created)"
    return f"""
WITH n AS (
    SELECT * FROM unnest({arrays},
        %(m_execution)b::text[], %(m_visible)b::timestamptz[], %(m_event)b::text[])
    WITH ORDINALITY AS n({INSTANCE_COLUMNS}, m_execution, m_visible, m_event, ord)
), created AS (
    INSERT INTO {s}.instances (hub, {INSTANCE_COLUMNS})
    SELECT %(hub)s, {INSTANCE_COLUMNS} FROM n ORDER BY ord
    ON CONFLICT (hub, instance_id) DO NOTHING
    RETURNING instance_id
), h AS (DELETE FROM {s}.history WHERE {key}
), m AS (DELETE FROM {s}.messages WHERE {key}
), w AS (DELETE FROM {s}.work_items WHERE {key}
), start AS (
    INSERT INTO {s}.messages (hub, instance_id, execution_id, visible_at, event)
    SELECT %(hub)s, n.instance_id, n.m_execution, n.m_visible, n.m_event FROM n
    WHERE n.instance_id IN (SELECT instance_id FROM created)
    ORDER BY n.ord
)
SELECT instance_id FROM created"""


def starts_params(hub: str, news: Sequence[NewInstance]) -> dict[str, Any]:
    """Parameters of :func:`starts_sql`: one array per instance column, then the start
    messages'."""
    rows = [record_values(n) for n in news]  # the columns after instance_id
    columns = [c.strip() for c in INSTANCE_COLUMNS.split(",")][1:]
    return {
        "hub": hub,
        "instance_id": [n.record.instance_id for n in news],
        **{name: [row[k] for row in rows] for k, name in enumerate(columns)},
        "m_execution": [n.start.execution_id for n in news],
        "m_visible": [n.start.visible_at for n in news],
        "m_event": [dumps_event(n.start.event) for n in news],
    }


@dataclass(frozen=True)
class Started:
    """A batch's answer for one start: ``created``, or the id was taken (then the
    caller's slow path decides); ``retried`` if the batch's transaction was retried
    after a lost COMMIT (the id may then be taken by this very start)."""

    created: bool
    retried: bool


#: Runs one batch: the starts -> (ids created, whether the transaction was retried).
RunBatch = Callable[[list[NewInstance]], Awaitable[tuple[set[str], bool]]]


class StartGroup:
    """Coalesces concurrent starts into batches, one batch in flight at a time."""

    def __init__(self, run: RunBatch) -> None:
        self._run = run
        self._group: Coalescer[NewInstance, Started] = Coalescer(
            self._batch, "taskloom-starts", BATCH
        )

    async def submit(self, new: NewInstance) -> Started:
        return await self._group.submit(new)

    async def _batch(self, batch: list[NewInstance]) -> list[Started]:
        # A second start of an id in the batch is left out: taken, by the first.
        first: dict[str, NewInstance] = {}
        for new in batch:
            first.setdefault(new.record.instance_id, new)
        created, retried = await self._run(list(first.values()))
        return [
            Started(
                first[new.record.instance_id] is new and new.record.instance_id in created,
                retried,
            )
            for new in batch
        ]
