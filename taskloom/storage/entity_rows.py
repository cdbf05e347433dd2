"""Entity rows beside messages: both backends call these where messages are inserted.

Messages to instances that do not exist are dropped (``docs/architecture.md``), but an
entity (id ``@name@key``) exists as soon as somebody sends it something, as in Durable
Functions. So, in the transaction that inserts messages, every entity they address gets
a row first: a missing one is created empty (status ``Completed``: no state yet, see
``taskloom/entities/episodes.py``), and an empty one is marked ``Running`` again. The
latter takes the row's lock, so a concurrent ``clean_entity_storage`` (a purge of empty
entities) waits for this transaction and then no longer sees a terminal row; and purges
never remove an entity that still has messages (:data:`SQLITE_KEEP_BUSY_ENTITIES`), which
covers an episode that commits ``Completed`` while a message arrived meanwhile. Queries
leave entities out unless their id prefix starts with ``@`` (:data:`SQLITE_NO_ENTITIES`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from taskloom.storage.base import Message

__all__ = ["ensure_postgres", "ensure_sqlite", "entity_rows"]

SQLITE_NO_ENTITIES = "substr(instance_id, 1, 1) <> '@'"
SQLITE_KEEP_BUSY_ENTITIES = (
    "(substr(instance_id, 1, 1) <> '@' OR NOT EXISTS (SELECT 1 FROM messages AS busy "
    "WHERE busy.hub = instances.hub AND busy.instance_id = instances.instance_id))"
)
POSTGRES_NO_ENTITIES = "left(instance_id, 1) <> '@'"


def postgres_keep_busy_entities(schema: str) -> str:
    return (
        f"(left(instance_id, 1) <> '@' OR NOT EXISTS (SELECT 1 FROM {schema}.messages busy "
        "WHERE busy.hub = instances.hub AND busy.instance_id = instances.instance_id))"
    )


def wants_entities(prefix: str | None) -> bool:
    """Whether a query by instance id prefix asks for entities (``@...``)."""
    return bool(prefix) and str(prefix).startswith("@")


def entity_rows(messages: Sequence[Message]) -> list[tuple[str, str, datetime]]:
    """(instance id, entity name, time) of each entity addressed, sorted by id (so
    concurrent transactions lock rows in one order)."""
    found: dict[str, tuple[str, str, datetime]] = {}
    for m in messages:
        iid = m.instance_id
        if iid.startswith("@") and iid not in found:
            name = iid[1:].partition("@")[0]
            found[iid] = (iid, name, m.event.timestamp)
    return [found[k] for k in sorted(found)]


def ensure_sqlite(conn: Any, hub: str, messages: Sequence[Message], us: Any) -> None:
    """SQLite: under the writer lock of the inserting transaction."""
    rows = entity_rows(messages)
    if not rows:
        return
    conn.executemany(
        "UPDATE instances SET status = 'Running', completed_at = NULL "
        "WHERE hub = ? AND instance_id = ? AND status <> 'Running'",
        [(hub, iid) for iid, _, _ in rows],
    )
    conn.executemany(
        "INSERT INTO instances (hub, instance_id, execution_id, name, status, created_at, "
        "updated_at) VALUES (?, ?, '', ?, 'Completed', ?, ?) "
        "ON CONFLICT (hub, instance_id) DO NOTHING",
        [(hub, iid, name, us(t), us(t)) for iid, name, t in rows],
    )


async def ensure_postgres(conn: Any, schema: str, hub: str, messages: Sequence[Message]) -> None:
    """PostgreSQL: ``conn`` is a connection or cursor inside the inserting transaction."""
    rows = entity_rows(messages)
    if not rows:
        return
    ids = [iid for iid, _, _ in rows]
    await conn.execute(
        f"UPDATE {schema}.instances SET status = 'Running', completed_at = NULL "
        "WHERE hub = %s AND instance_id = ANY(%b::text[]) AND status <> 'Running'",
        [hub, ids],
    )
    await conn.execute(
        f"INSERT INTO {schema}.instances (hub, instance_id, execution_id, name, status, "
        "created_at, updated_at) SELECT %s, u.id, '', u.name, 'Completed', u.t, u.t "
        "FROM unnest(%b::text[], %b::text[], %b::timestamptz[]) AS u(id, name, t) "
        "ON CONFLICT (hub, instance_id) DO NOTHING",
        [hub, ids, [name for _, name, _ in rows], [t for _, _, t in rows]],
    )
