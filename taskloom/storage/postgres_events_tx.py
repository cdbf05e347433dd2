"""The PostgreSQL event log's append, and the :class:`EventTx` its hooks get.

**One round trip.** An append is one call of the ``event_append`` function
(``sql/postgres/0005_event_append.sql``, redefined in ``0013_event_log_speed.sql`` with
plans that need no statistics), which locks the streams' rows, checks event ids
and expected versions, takes positions and inserts, all on the server. Without a hook
the pool connection's autocommit makes that call its own transaction, so the append is
a single round trip, COMMIT included. The function leaves to :func:`_append_slow`
(the same steps, a statement at a time) what it is not built for: an event id already in
its stream (an idempotent retry, or a refusal), an event id twice in one call, an empty
append, an expected version that is no version.

**Why no reader skips an event.** Positions come from the hub's ``event_log_head`` row,
updated with ``position = position + n`` as the *last* lock an append takes (after its
stream rows and its checks; only its inserts and COMMIT follow). The update keeps the
row locked until the transaction ends, so the next append of the hub waits there and
gets the next positions only after this one committed or rolled back. A rollback undoes
its counter update too, so no position is left behind. And PostgreSQL makes a committed
transaction visible to new snapshots (``ProcArrayEndTransaction``) before it releases
its locks, so by the time the next append can take ``p + 1``, the transaction that wrote
``p`` is already visible: a reader that sees ``p + 1`` sees everything below it. Stream
rows are locked in stream-id order ("C" collation, which is code-point order, as Python
sorts), so appends to several streams never deadlock.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from psycopg import AsyncCursor
from psycopg.errors import UniqueViolation
from psycopg.pq import TransactionStatus

from taskloom.errors import WrongExpectedVersionError
from taskloom.events.records import StreamState
from taskloom.storage.base import DELIVERIES, EPISODES, LOG, STATUS, Message, NewInstance, timed
from taskloom.storage.events_base import (
    EventTx,
    StoredEvent,
    StreamAppend,
    check_expected,
    decide_append,
    stream_bucket,
)

if TYPE_CHECKING:
    from taskloom.storage.postgres_events import PostgresEventsMixin

__all__ = ["AppendGroup", "Member", "Outcome", "PgEventTx", "append", "append_together"]

Cur = AsyncCursor[tuple[Any, ...]]
T = TypeVar("T")

# How event_append receives StreamState values (a version is itself, >= 0).
_STATE_CODES = {StreamState.ANY: -1, StreamState.NO_STREAM: -2, StreamState.STREAM_EXISTS: -3}
_OK, _IDS_FOUND, _MISMATCH = 0, 1, 2

_INSERT_EVENTS = (
    "INSERT INTO {s}.events (hub, position, stream_id, version, event_id, type, data, "
    "metadata, bucket, recorded_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
)


async def append(
    cur: Cur,
    s: str,
    hub: str,
    appends: Sequence[StreamAppend],
    now: datetime,
    *,
    fast: bool = True,
) -> tuple[list[tuple[int, int]], list[StoredEvent]]:
    """Append as :meth:`EventLogStore.append_events` does, on ``cur``'s connection:
    ``(version, position)`` per append and the events written, in position order. In
    autocommit (no transaction open) this is its own transaction; inside one, part of it.
    ``fast=False`` goes straight to the Python path."""
    if not appends:
        return [], []
    codes = _codes(appends) if fast else None
    if codes is not None:
        out = await _call(cur, s, hub, appends, codes, [now] * len(appends))
        if out[0] == _MISMATCH:
            refused = appends[out[1] - 1]
            raise WrongExpectedVersionError(refused.stream_id, refused.expected, int(out[2]))
        if out[0] == _OK:
            results = _pairs(out)
            return results, _written(appends, results, now)
    if cur.connection.info.transaction_status == TransactionStatus.IDLE:
        async with cur.connection.transaction():
            return await _append_slow(cur, s, hub, appends, now)
    return await _append_slow(cur, s, hub, appends, now)


#: One caller's appends in a group: its appends and its ``now``.
Member = tuple[Sequence[StreamAppend], datetime]
#: What a member gets: its results, its error, or None: append it alone.
Outcome = list[tuple[int, int]] | Exception | None


class AppendGroup:
    """Folds the concurrent hook-less appends of one store into shared transactions.

    Appends of a hub queue on its head row one commit at a time, so a store whose
    callers append concurrently would spend most of each append waiting for the ones
    before it. Instead, while one group is in flight, the appends that arrive wait and
    go together in the next (at most ``limit`` callers), one round trip and one commit
    for all of them; a lone append goes at once, by itself. The group runs in a task of
    its own, so a caller that is cancelled leaves the others' appends alone."""

    def __init__(
        self, run: Callable[[list[Member]], Awaitable[list[Outcome]]], limit: int = 64
    ) -> None:
        self._run = run
        self._limit = limit
        self._waiting: list[tuple[Member, asyncio.Future[list[tuple[int, int]]]]] = []
        self._drainer: asyncio.Task[None] | None = None

    async def append(self, appends: Sequence[StreamAppend], now: datetime) -> list[tuple[int, int]]:
        future: asyncio.Future[list[tuple[int, int]]] = asyncio.get_running_loop().create_future()
        self._waiting.append(((appends, now), future))
        if self._drainer is None:
            self._drainer = asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        try:
            while self._waiting:
                batch = self._waiting[: self._limit]
                del self._waiting[: self._limit]
                try:
                    outcomes = await self._run([member for member, _ in batch])
                except Exception as exc:
                    outcomes = [exc] * len(batch)
                except BaseException:
                    for _, future in batch:
                        future.cancel()
                    raise
                for (_, future), outcome in zip(batch, outcomes, strict=True):
                    if future.done():
                        continue
                    if isinstance(outcome, Exception):
                        future.set_exception(outcome)
                    else:
                        assert outcome is not None
                        future.set_result(outcome)
        finally:
            self._drainer = None
            for _, future in self._waiting:
                future.cancel()
            self._waiting.clear()


async def append_together(
    cur: Cur,
    s: str,
    hub: str,
    members: Sequence[Member],
    notify: tuple[str, str] | None = None,
) -> tuple[list[Outcome], bool]:
    """Several callers' appends (no hooks) in one event_append call, so one transaction
    and one round trip; each member still succeeds or fails on its own. A member refused
    for its expected version is left to the Python path (None) and the others go again
    without it; when the function leaves a call to the Python path, every member left is
    None. ``notify`` (channel, payload): the first call also sends that ``pg_notify``, in
    its transaction; the second value returned says whether that call committed the
    appends (else the caller announces them as usual)."""
    notified = False
    outcomes: list[Outcome] = [None] * len(members)
    live = [m for m, (appends, _) in enumerate(members) if appends]
    for m in range(len(members)):
        if not members[m][0]:
            outcomes[m] = []
    while live:
        flat = [a for m in live for a in members[m][0]]
        codes = _codes(flat)
        if codes is None:
            return [o if o == [] else None for o in outcomes], notified
        nows = [members[m][1] for m in live for _ in members[m][0]]
        try:
            # Its own transaction: an id already in its stream fails the insert, which
            # undoes the call (see event_append's p_check).
            out = await _call(cur, s, hub, flat, codes, nows, check=False, notify=notify)
            # Told only if that call wrote: a later one's events commit after the NOTIFY.
            notified = notify is not None and out[0] == _OK
        except UniqueViolation as exc:
            if exc.diag.constraint_name != "events_stream_event":
                raise
            out = [_IDS_FOUND]
        notify = None
        if out[0] == _IDS_FOUND:
            # An id already in its stream: all go alone (the Python path tells a repeat
            # from a refusal).
            return [o if o == [] else None for o in outcomes], notified
        if out[0] == _OK:
            results = _pairs(out)
            for m in live:
                n = len(members[m][0])
                outcomes[m], results = results[:n], results[n:]
            return outcomes, notified
        # A refused member goes alone: the call did not look its ids up, and a repeat
        # of an earlier append is no refusal, whatever its expected version says.
        index = out[1] - 1
        for m in live:
            if index < len(members[m][0]):
                live.remove(m)
                break
            index -= len(members[m][0])
    return outcomes, notified


def _codes(appends: Sequence[StreamAppend]) -> list[int] | None:
    """The expected versions as event_append takes them; None for a call it leaves to
    the Python path."""
    codes: list[int] = []
    seen: set[tuple[str, str]] = set()
    for a in appends:
        if isinstance(a.expected, StreamState):
            codes.append(_STATE_CODES[a.expected])
        elif isinstance(a.expected, int) and not isinstance(a.expected, bool) and a.expected >= 0:
            codes.append(a.expected)
        else:
            return None
        if not a.events:
            return None
        for e in a.events:
            key = (a.stream_id, e.id)
            if key in seen:
                return None
            seen.add(key)
    return codes


async def _call(
    cur: Cur,
    s: str,
    hub: str,
    appends: Sequence[StreamAppend],
    codes: list[int],
    nows: list[datetime],
    check: bool = True,
    notify: tuple[str, str] | None = None,
) -> list[int]:
    ev_append: list[int] = []
    ev_offset: list[int] = []
    ids: list[str] = []
    types: list[str] = []
    data: list[str] = []
    meta: list[str | None] = []
    for n, a in enumerate(appends, 1):
        for k, e in enumerate(a.events, 1):
            ev_append.append(n)
            ev_offset.append(k)
            ids.append(e.id)
            types.append(e.type)
            data.append(e.data)
            meta.append(e.metadata)
    await cur.execute(
        # Binary parameters (%b): arrays dump several times faster than as text.
        f"SELECT {s}.event_append(%b, %b::timestamptz[], %b::text[], %b::bigint[], "
        "%b::int[], %b::int[], %b::int[], %b::int[], %b::text[], %b::text[], %b::text[], "
        "%b::text[], %b)" + (", pg_notify(%s, %s)" if notify else ""),
        [
            hub,
            nows,
            [a.stream_id for a in appends],
            codes,
            [len(a.events) for a in appends],
            [stream_bucket(a.stream_id) for a in appends],
            ev_append,
            ev_offset,
            ids,
            types,
            data,
            meta,
            check,
            *(notify or ()),
        ],
    )
    row = await cur.fetchone()
    assert row is not None
    out: list[int] = row[0]
    return out


def _pairs(out: list[int]) -> list[tuple[int, int]]:
    return [(int(out[i]), int(out[i + 1])) for i in range(1, len(out), 2)]


def _written(
    appends: Sequence[StreamAppend], results: list[tuple[int, int]], now: datetime
) -> list[StoredEvent]:
    written: list[StoredEvent] = []
    for a, (version, position) in zip(appends, results, strict=True):
        n = len(a.events)
        for k, e in enumerate(a.events):
            first = k - n + 1
            written.append(
                StoredEvent(
                    position + first,
                    a.stream_id,
                    version + first,
                    e.id,
                    e.type,
                    e.data,
                    e.metadata,
                    now,
                )
            )
    return written


async def _append_slow(
    cur: Cur, s: str, hub: str, appends: Sequence[StreamAppend], now: datetime
) -> tuple[list[tuple[int, int]], list[StoredEvent]]:
    """The append a statement at a time, inside the caller's transaction. Each append
    sees the ones before it in the call (their events count as already in the stream),
    as on SQLite."""
    streams = sorted({a.stream_id for a in appends})
    state: dict[str, tuple[int, bool]] = {}
    while len(state) < len(streams):
        # A purge may delete a row between its insert and its lock: insert it again.
        await cur.executemany(
            f"INSERT INTO {s}.event_streams (hub, stream_id, version) VALUES (%s, %s, 0) "
            "ON CONFLICT (hub, stream_id) DO NOTHING",
            [(hub, sid) for sid in streams if sid not in state],
        )
        await cur.execute(
            f"SELECT stream_id, version, deleted FROM {s}.event_streams WHERE hub = %s AND "
            "stream_id = ANY(%s) ORDER BY stream_id FOR UPDATE",
            [hub, streams],
        )
        state = {r[0]: (int(r[1]), bool(r[2])) for r in await cur.fetchall()}
    # Events of this call by (stream, id): (version, -offset), the offset from the first
    # position this call takes; resolved once the positions are known.
    pending: dict[tuple[str, str], tuple[int, int]] = {}
    results: list[tuple[int, int]] = []
    plans: list[tuple[StreamAppend, int, bool, int]] = []
    offset = 0
    for a in appends:
        stored, deleted = state[a.stream_id]
        current = 0 if deleted else stored
        await cur.execute(
            f"SELECT event_id, version, position FROM {s}.events WHERE hub = %s AND "
            "stream_id = %s AND event_id = ANY(%s)",
            [hub, a.stream_id, [e.id for e in a.events]],
        )
        found = {r[0]: (int(r[1]), int(r[2])) for r in await cur.fetchall()}
        for e in a.events:
            if (a.stream_id, e.id) in pending:
                found[e.id] = pending[(a.stream_id, e.id)]
        repeat = decide_append(a, current, found)
        if repeat is not None:
            results.append(repeat)
            continue
        check_expected(a.stream_id, a.expected, current)
        plans.append((a, stored, deleted, offset))
        for k, e in enumerate(a.events):
            pending[(a.stream_id, e.id)] = (stored + 1 + k, -(offset + 1 + k))
        offset += len(a.events)
        state[a.stream_id] = (stored + len(a.events), False)
        results.append((stored + len(a.events), -offset))
    if not plans:
        return results, []
    await cur.executemany(
        f"UPDATE {s}.event_streams SET first_version = CASE WHEN deleted THEN %s "
        "ELSE first_version END, version = %s, deleted = false "
        "WHERE hub = %s AND stream_id = %s",
        [(stored + 1, stored + len(a.events), hub, a.stream_id) for a, stored, _, _ in plans],
    )
    # The head row last (see the module docstring).
    await cur.execute(
        f"INSERT INTO {s}.event_log_head AS h (hub, position) VALUES (%s, %s) "
        "ON CONFLICT (hub) DO UPDATE SET position = h.position + excluded.position "
        "RETURNING h.position",
        [hub, offset],
    )
    row = await cur.fetchone()
    assert row is not None
    base = int(row[0]) - offset
    written: list[StoredEvent] = []
    rows: list[tuple[Any, ...]] = []
    for a, stored, _, start in plans:
        bucket = stream_bucket(a.stream_id)
        for k, e in enumerate(a.events):
            event = StoredEvent(
                base + start + 1 + k,
                a.stream_id,
                stored + 1 + k,
                e.id,
                e.type,
                e.data,
                e.metadata,
                now,
            )
            written.append(event)
            row_ = (hub, event.position, a.stream_id, event.version, e.id, e.type, e.data)
            rows.append((*row_, e.metadata, bucket, now))
    if rows:
        await cur.executemany(_INSERT_EVENTS.replace("{s}", s), rows)
    return [(v, base - p if p <= 0 else p) for v, p in results], written


class PgEventTx(EventTx):
    """:class:`EventTx` on a transaction's connection, called from the hook's thread:
    each call runs its statements on the event loop (``run_coroutine_threadsafe``) and
    waits for them."""

    def __init__(
        self,
        store: PostgresEventsMixin,
        cur: Cur,
        now: datetime,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self._store = store
        self._cur = cur
        self._now = now
        self._loop = loop
        self._savepoints = 0
        #: Wake-up kinds of what the hook wrote, sent after COMMIT.
        self.kinds = ""

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    async def _rows(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        await self._cur.execute(sql, params)
        return await self._cur.fetchall() if self._cur.description else []

    def _q(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        return self._call(self._rows(sql.replace("{s}", self._store._s), params))

    def view_get(self, view: str, key: str) -> str | None:
        rows = self._q(
            "SELECT doc::text FROM {s}.event_views WHERE hub = %s AND view = %s AND key = %s",
            [self._store.hub, view, key],
        )
        return rows[0][0] if rows else None

    def view_put(self, view: str, key: str, doc: str) -> None:
        self._q(
            "INSERT INTO {s}.event_views (hub, view, key, doc) VALUES (%s, %s, %s, %s::jsonb) "
            "ON CONFLICT (hub, view, key) DO UPDATE SET doc = excluded.doc",
            [self._store.hub, view, key, doc],
        )

    def view_delete(self, view: str, key: str) -> None:
        self._q(
            "DELETE FROM {s}.event_views WHERE hub = %s AND view = %s AND key = %s",
            [self._store.hub, view, key],
        )

    def view_write(self, view: str, docs: Mapping[str, str | None]) -> None:
        puts = {k: d for k, d in docs.items() if d is not None}
        gone = [k for k, d in docs.items() if d is None]
        if puts:
            self._q(
                "INSERT INTO {s}.event_views (hub, view, key, doc) SELECT %s, %s, k, d::jsonb "
                "FROM unnest(%b::text[], %b::text[]) AS u(k, d) "
                "ON CONFLICT (hub, view, key) DO UPDATE SET doc = excluded.doc",
                [self._store.hub, view, list(puts), list(puts.values())],
            )
        if gone:
            self._q(
                "DELETE FROM {s}.event_views WHERE hub = %s AND view = %s AND key = ANY(%s)",
                [self._store.hub, view, gone],
            )

    def append(self, appends: Sequence[StreamAppend]) -> list[tuple[int, int]]:
        # In a savepoint: a hook that catches a refused append keeps none of its appends.
        store = self._store
        with self.savepoint():
            results, written = self._call(
                append(self._cur, store._s, store.hub, appends, self._now)
            )
        if written:
            self.kinds += LOG
        return results

    def start(self, instances: Sequence[NewInstance], messages: Sequence[Message]) -> None:
        async def run() -> None:
            for new in instances:
                await self._store._create(self._cur, new)
            await self._store._insert_messages(self._cur, messages)

        self._call(run())
        if instances or messages:
            self.kinds += EPISODES + STATUS + timed([*messages, *(n.start for n in instances)])

    def park(self, consumer: str, event: StoredEvent, error: str, attempts: int) -> None:
        self._q(
            "INSERT INTO {s}.event_parked (hub, consumer, position, stream_id, version, "
            "event_id, type, error, attempts, parked_at) VALUES "
            "(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (hub, consumer, position) "
            "DO UPDATE SET error = excluded.error, attempts = excluded.attempts, "
            "parked_at = excluded.parked_at",
            [
                self._store.hub,
                consumer,
                event.position,
                event.stream_id,
                event.version,
                event.id,
                event.type,
                error,
                attempts,
                self._now,
            ],
        )

    def unpark(self, consumer: str, position: int) -> None:
        self._q(
            "DELETE FROM {s}.event_parked WHERE hub = %s AND consumer = %s AND position = %s",
            [self._store.hub, consumer, position],
        )

    def read_log(self, after: int, limit: int) -> list[StoredEvent]:
        return self._call(self._store._read_log(self._cur, after, limit, None, None))

    def generation(self, name: str) -> int:
        rows = self._q(
            "SELECT generation FROM {s}.event_view_meta WHERE hub = %s AND name = %s",
            [self._store.hub, name],
        )
        return int(rows[0][0]) if rows else 1

    def checkpoint(self, consumer: str) -> int | None:
        # Locked: an inline append and the runner catching up never both apply an event.
        rows = self._q(
            "SELECT position FROM {s}.event_consumers WHERE hub = %s AND consumer = %s "
            "ORDER BY partition FOR UPDATE",
            [self._store.hub, consumer],
        )
        return min(int(r[0]) for r in rows) if rows else None

    def set_checkpoint(self, consumer: str, position: int) -> None:
        self._q(
            "UPDATE {s}.event_consumers SET position = %s, updated_at = %s "
            "WHERE hub = %s AND consumer = %s",
            [position, self._now, self._store.hub, consumer],
        )

    @contextmanager
    def _savepoint(self) -> Iterator[None]:
        self._savepoints += 1
        name = f"tl_sp{self._savepoints}"
        self._q(f"SAVEPOINT {name}", [])
        try:
            yield
        except BaseException:
            self._q(f"ROLLBACK TO SAVEPOINT {name}", [])
            self._q(f"RELEASE SAVEPOINT {name}", [])
            raise
        self._q(f"RELEASE SAVEPOINT {name}", [])

    def savepoint(self) -> AbstractContextManager[None]:
        return self._savepoint()

    def schedule_deliveries(
        self, subscription: str, topic: str, events: Sequence[StoredEvent], due_at: datetime
    ) -> None:
        if not events:
            return
        self._q(
            "INSERT INTO {s}.topic_deliveries (hub, subscription, position, topic, due_at, "
            "published_at) SELECT %s, %s, p, %s, %s, r FROM unnest(%b::bigint[], "
            "%b::timestamptz[]) AS e(p, r) ON CONFLICT (hub, subscription, position) DO NOTHING",
            [
                self._store.hub,
                subscription,
                topic,
                due_at,
                [e.position for e in events],
                [e.recorded_at for e in events],
            ],
        )
        self.kinds += DELIVERIES
