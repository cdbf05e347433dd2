"""The PostgreSQL store: many workers on many hosts sharing task hubs in one database.

Choices, and why:

- **psycopg 3, async, with a pool** (:class:`psycopg_pool.AsyncConnectionPool`). Pool
  connections run in autocommit; every protocol operation is either one statement or
  one explicit transaction, so a failed operation never leaves half its changes behind.
- **Fail fast on a bad URL.** :meth:`PostgresStore.open` first makes one plain
  connection, so a wrong host, database, user or password surfaces at once as a
  :class:`ConfigurationError` / :class:`StoreError` naming host, database and user (never
  the password) and the server's reason, instead of a pool timing out later.
- **Migrations** (``sql/postgres/NNNN_*.sql``) run in one transaction under
  ``pg_advisory_xact_lock`` keyed by the schema, so any number of processes starting at
  once migrate exactly once; DDL is transactional in PostgreSQL, so a failed migration
  leaves nothing behind. Tables live in ``schema`` (default ``taskloom``), created if
  missing; every table has a ``hub`` column leading every key, so hubs sit side by side.
- **Leasing** uses ``FOR UPDATE SKIP LOCKED``: concurrent workers never block each other
  and never lease the same row. Every lease increments ``lease_token``.
- **Fencing.** An episode commit applies only where the instance's ``lease_token`` still
  equals the commit's *and* a lease is still recorded (a commit or abandon clears the
  lease but keeps the token). The second condition makes a commit idempotent: if the
  connection dies while COMMIT is in flight and the outcome is unknown, the retry finds
  the lease released and returns False instead of appending the history twice. Activity
  results are fenced by deleting the work item with its token; a retried result finds
  the item gone and returns False, so the result message is never inserted twice.
- **One round trip per batch.** The hot writes (episode commits, activity results, the
  start of a free instance id) are each one set-based statement for the whole batch
  (:mod:`taskloom.storage.postgres_batch`), sent in psycopg pipeline mode together with
  ``BEGIN`` and ``COMMIT``; results are read after the COMMIT. The rare
  parts that depend on the statement's outcome (replaced histories, child instances)
  run after it, inside the same transaction.
- **Retries.** A connection-level failure (server restart, killed backend, failover,
  deadlock) raises :class:`psycopg.OperationalError`; the operation is retried on a fresh
  pool connection with exponential backoff (0.1 s .. 5 s) for up to ``retry_for`` seconds
  (30 by default) and each retry is logged as a warning. That is safe because every
  operation is one transaction and the completes are fenced as above; leases taken by a
  transaction whose outcome was lost simply expire. ``create_instance`` treats an
  instance with its own execution id found on a retry as created. The one operation a
  lost COMMIT can duplicate is :meth:`enqueue_messages` (external events carry no key).
- **Wake-ups.** No business transaction sends NOTIFY: a transaction that notifies takes
  a database-wide lock at COMMIT, which would serialise every commit of a busy hub.
  Instead, after each write that may wake someone (new work, a released lease, a status
  change) the store wakes its own listeners and asks its
  :class:`~taskloom.storage.postgres_notify.Announcer` for one ``pg_notify`` in a tiny
  transaction of its own; requests made while one is in flight fold into one more, so a
  process sends at most one at a time however fast it commits. One dedicated connection
  per store (outside the pool) LISTENs and wakes local listeners on every notification
  but its own; see :class:`~taskloom.storage.postgres_notify.NotifyListener` for its
  reconnect policy. Workers and waiting clients (any host) therefore wake within a
  round trip of a commit; a process killed between its COMMIT and its NOTIFY leaves the
  others to their fallback poll. Timers are found through :meth:`next_wakeup`.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Collection, Sequence
from datetime import datetime, timedelta
from typing import Any, TypeVar

import psycopg
from psycopg import AsyncConnection, AsyncCursor
from psycopg_pool import AsyncConnectionPool, PoolClosed

from taskloom.errors import ConfigurationError, InstanceExistsError, StoreError
from taskloom.history import dumps_event
from taskloom.models import Status
from taskloom.storage import large
from taskloom.storage.base import (
    ALL_KINDS,
    EPISODES,
    STATUS,
    EagerActivities,
    EpisodeCommit,
    LeasedEpisode,
    Message,
    NewInstance,
    Store,
    VersionFilter,
    child_conflict_message,
    commit_kinds,
    likely_commit_kinds,
    status_changes,
    timed,
)
from taskloom.storage.entity_rows import ensure_postgres
from taskloom.storage.migrations import load_migrations, split_statements
from taskloom.storage.postgres_activities import PostgresActivitiesMixin
from taskloom.storage.postgres_batch import (
    NAMES_ADMIT,
    commit_params,
    commit_rounds,
    commit_sql,
    create_params,
    create_sql,
    eager_items,
    history_rows,
    insert_history_sql,
    lease_episodes_sql,
    leased_inboxes_sql,
    record_values,
    version_params,
)
from taskloom.storage.postgres_events import PostgresEventsMixin
from taskloom.storage.postgres_host import PostgresHostMixin
from taskloom.storage.postgres_notify import (
    BACKOFF_MAX,
    BACKOFF_MIN,
    Announcer,
    NotifyListener,
    channel_name,
    connect_error,
    connection_kwargs,
    describe,
    parse_url,
    stable_key,
    validate_schema,
)
from taskloom.storage.postgres_plans import plan_setting, planned
from taskloom.storage.postgres_reads import PostgresReadsMixin
from taskloom.storage.postgres_starts import Started, StartGroup, starts_params, starts_sql
from taskloom.storage.postgres_topics import PostgresTopicsMixin
from taskloom.storage.postgres_workers import PostgresWorkersMixin

__all__ = ["PostgresStore"]

log = logging.getLogger("taskloom.storage.postgres")

T = TypeVar("T")
Conn = AsyncConnection[tuple[Any, ...]]
Cur = AsyncCursor[tuple[Any, ...]]


class PostgresStore(
    PostgresTopicsMixin,
    PostgresActivitiesMixin,
    PostgresEventsMixin,
    PostgresReadsMixin,
    PostgresHostMixin,
    PostgresWorkersMixin,
    Store,
):
    """One task hub in a PostgreSQL database (see the module docstring)."""

    def __init__(
        self,
        url: str,
        hub: str = "default",
        *,
        schema: str = "taskloom",
        min_size: int = 1,
        max_size: int = 10,
        retry_for: float = 30.0,
        payload_threshold: int = large.DEFAULT_THRESHOLD,
        payload_limit: int = large.DEFAULT_LIMIT,
    ) -> None:
        super().__init__()
        self.payloads = large.Payloads(payload_threshold, payload_limit)
        if not isinstance(hub, str) or not hub:
            raise ConfigurationError(f"invalid task hub name {hub!r}: use a non-empty string")
        if min_size < 0 or max_size < max(1, min_size):
            raise ConfigurationError(
                f"invalid pool size min_size={min_size}, max_size={max_size}: "
                "need 0 <= min_size <= max_size and max_size >= 1"
            )
        self.url = url
        self.hub = hub
        self.schema = validate_schema(schema)
        self._params = parse_url(url)
        self._kwargs = connection_kwargs(self._params, hub)
        self._min_size = min_size
        self._max_size = max_size
        self._retry_for = retry_for
        self._channel = channel_name(self.schema, hub)
        # The schema is validated to [a-z_][a-z0-9_]*, so quoting it is enough.
        self._s = f'"{self.schema}"'
        self._pool: AsyncConnectionPool[Conn] | None = None
        self._listener: NotifyListener | None = None
        self._announcer: Announcer | None = None
        self._start_group = StartGroup(self._start_batch)
        # Episodes the last lease took: the guess at the next lease's size that chooses
        # its plan settings (one at a time, a cached plan; in a burst, a fresh one).
        self._last_leased = 0
        # Our NOTIFY payload: the listener skips its own store's notifications.
        self._token = uuid.uuid4().hex
        self._open_lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"PostgresStore({describe(self._params)}, schema={self.schema!r}, hub={self.hub!r})"

    # -- lifecycle ------------------------------------------------------------------

    async def open(self) -> None:
        async with self._open_lock:
            if self._pool is not None:
                return
            listener = NotifyListener(
                self.url, self._kwargs, self._channel, self._wake_locally, ignore=self._token
            )
            try:
                conn = await psycopg.AsyncConnection.connect(self.url, **self._kwargs)
            except psycopg.Error as exc:
                raise connect_error(self._params, exc) from exc
            try:
                await self._migrate(conn)
                await conn.execute(f'LISTEN "{self._channel}"')
            except psycopg.Error as exc:
                await conn.close()
                raise StoreError(
                    f"cannot prepare PostgreSQL {describe(self._params)} "
                    f"(schema {self.schema!r}): {exc}"
                ) from exc
            pool: AsyncConnectionPool[Conn] = AsyncConnectionPool(
                self.url,
                min_size=self._min_size,
                max_size=self._max_size,
                kwargs=self._kwargs,
                open=False,
                # How long a caller queues for a free connection: a burst of thousands of
                # concurrent calls is normal load, not an outage.
                timeout=60.0,
                name=f"taskloom:{self.hub}",
            )
            try:
                await pool.open(wait=True, timeout=15.0)
            except Exception as exc:
                await conn.close()
                await pool.close()
                raise connect_error(self._params, exc) from exc
            listener.start(conn)
            self._pool, self._listener = pool, listener
            self._announcer = Announcer(self._send_notification)

    async def close(self) -> None:
        async with self._open_lock:
            listener, self._listener = self._listener, None
            announcer, self._announcer = self._announcer, None
            if announcer is not None:
                await announcer.close()
            pool, self._pool = self._pool, None
            if listener is not None:
                await listener.stop()
            if pool is not None:
                await pool.close()

    async def _migrate(self, conn: Conn) -> None:
        """Apply pending migrations once, however many processes start together."""
        async with conn.transaction():
            await conn.execute(
                "SELECT pg_advisory_xact_lock(%s)", [stable_key("taskloom-migrate", self.schema)]
            )
            await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {self._s}")
            await conn.execute(
                f"CREATE TABLE IF NOT EXISTS {self._s}.taskloom_migrations ("
                "version integer PRIMARY KEY, name text NOT NULL, "
                "applied_at timestamptz NOT NULL DEFAULT now())"
            )
            cur = await conn.execute(
                f"SELECT coalesce(max(version), 0) FROM {self._s}.taskloom_migrations"
            )
            row = await cur.fetchone()
            current = int(row[0]) if row else 0
            for migration in load_migrations("postgres"):
                if migration.version <= current:
                    continue
                log.info(
                    "applying PostgreSQL migration %04d_%s to schema %s",
                    migration.version,
                    migration.name,
                    self.schema,
                )
                for statement in split_statements(migration.sql.replace("{schema}", self._s)):
                    await conn.execute(statement)
                await conn.execute(
                    f"INSERT INTO {self._s}.taskloom_migrations (version, name) VALUES (%s, %s)",
                    [migration.version, migration.name],
                )

    # -- plumbing -------------------------------------------------------------------

    async def _run(self, op: Callable[[Conn], Awaitable[T]]) -> T:
        """Run ``op`` on a pool connection, retrying connection failures with backoff."""
        pool = self._pool
        if pool is None:
            raise StoreError(f"{self!r} is not open; call await store.open() first")
        deadline = time.monotonic() + self._retry_for
        delay = BACKOFF_MIN
        while True:
            try:
                async with pool.connection() as conn:
                    return await op(conn)
            except PoolClosed as exc:
                # Closed under our feet (store.close() during the call): do not retry.
                raise StoreError(f"{self!r} was closed during the operation") from exc
            except psycopg.OperationalError as exc:
                reason = " ".join(str(exc).split()) or type(exc).__name__
                if time.monotonic() + delay > deadline:
                    raise StoreError(
                        f"PostgreSQL {describe(self._params)} unavailable for "
                        f"{self._retry_for:.0f}s: {reason}"
                    ) from exc
                log.warning("PostgreSQL operation failed (%s); retrying in %.1fs", reason, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, BACKOFF_MAX)
            except psycopg.Error as exc:
                raise StoreError(f"PostgreSQL error on {describe(self._params)}: {exc}") from exc

    def _notify(self, kinds: str = ALL_KINDS, changed: Collection[str] | None = None) -> None:
        """Wake this store's listeners now and every other process on the hub soon."""
        self._wake_locally(kinds, changed)
        if self._announcer is not None:
            self._announcer.announce(kinds)

    def _claim(self, kinds: str) -> str:
        """The kinds a commit about to start may notify in its own transaction (see
        :class:`Announcer`), or "" (then it announces as usual). A non-empty answer
        must be :meth:`_settled`."""
        announcer = self._announcer
        return kinds if kinds and announcer is not None and announcer.claim() else ""

    async def _notify_within(self, conn: Conn, kinds: str) -> None:
        """Queue the ``pg_notify`` of a claimed commit in its transaction's pipeline."""
        if kinds:
            payload = f"{self._token}:{kinds}"
            await conn.execute("SELECT pg_notify(%s, %s)", [self._channel, payload])

    def _settled(self, sent: str, kinds: str, changed: Collection[str] | None = None) -> None:
        """After a commit that claimed the announcer (``sent``: what it notified; ""
        when it failed): wake local listeners of ``kinds``, announce what is left."""
        self._wake_locally(kinds, changed)
        if self._announcer is not None:
            self._announcer.settle(sent, kinds)

    async def _send_notification(self, kinds: str) -> None:
        async def op(conn: Conn) -> None:
            payload = f"{self._token}:{kinds}"
            await conn.execute("SELECT pg_notify(%s, %s)", [self._channel, payload])

        await self._run(op)

    async def _put_payloads(self, cur: Cur, pending: dict[tuple[str, str], str]) -> None:
        """Insert the large payloads of this transaction's rows (storage/large.py) that
        are not stored yet; only those are compressed."""
        if not pending:
            return
        await cur.execute(
            f"SELECT instance_id, id FROM {self._s}.payloads WHERE hub = %s AND id = ANY(%s)",
            [self.hub, sorted({digest for _, digest in pending})],
        )
        stored = {(row[0], row[1]) for row in await cur.fetchall()}
        rows = [(key, text) for key, text in pending.items() if key not in stored]
        if not rows:
            return
        await cur.execute(
            f"INSERT INTO {self._s}.payloads (hub, instance_id, id, size, data) "
            "SELECT %s, u.* FROM unnest(%b::text[], %b::text[], %b::bigint[], %b::bytea[]) "
            "AS u(instance_id, id, size, data) ON CONFLICT DO NOTHING",
            [
                self.hub,
                [iid for (iid, _), _ in rows],
                [digest for (_, digest), _ in rows],
                [len(text) for _, text in rows],
                [large.compress(text) for _, text in rows],
            ],
        )

    async def _insert_messages(self, cur: Cur, messages: Sequence[Message]) -> None:
        if not messages:
            return
        await ensure_postgres(cur, self._s, self.hub, messages)  # entities exist once addressed
        payloads = self.payloads.fork()
        messages = [payloads.message(m) for m in messages]
        await cur.execute(
            f"INSERT INTO {self._s}.messages "
            "(hub, instance_id, execution_id, visible_at, event, dedup_key) "
            "SELECT %s, u.* FROM unnest(%b::text[], %b::text[], %b::timestamptz[], %b::text[], "
            "%b::text[]) AS u(instance_id, execution_id, visible_at, event, dedup_key) "
            # Messages for instances that do not exist are dropped: they could never be
            # consumed (Durable Functions drops events sent to unknown instances too).
            f"WHERE EXISTS (SELECT 1 FROM {self._s}.instances i "
            "WHERE i.hub = %s AND i.instance_id = u.instance_id) "
            "ON CONFLICT (hub, dedup_key) WHERE dedup_key IS NOT NULL DO NOTHING",
            [
                self.hub,
                [m.instance_id for m in messages],
                [m.execution_id for m in messages],
                [m.visible_at for m in messages],
                [dumps_event(m.event) for m in messages],
                [m.key for m in messages],
                self.hub,
            ],
        )
        await self._put_payloads(cur, payloads.pending)

    async def _create(self, cur: Cur, new: NewInstance, retried: bool = False) -> Status | None:
        """Create ``new``, replacing a terminal instance; return the status that blocks it.

        With ``retried`` (a retry after a COMMIT whose outcome was lost), finding a live
        instance with our own execution id means the first attempt went through.
        """
        await cur.execute(create_sql(self._s), create_params(self.hub, new))
        row = await cur.fetchone()
        if row is not None and row[0]:
            return None
        return await self._replace(cur, new, retried)

    async def _replace(
        self,
        cur: Cur,
        new: NewInstance,
        retried: bool,
        pending: dict[tuple[str, str], str] | None = None,
    ) -> Status | None:
        """The slow path of :meth:`_create`: the id is taken (or was, a moment ago)."""
        s, iid = self._s, new.record.instance_id
        # Lock the row so a concurrent replace cannot interleave.
        await cur.execute(
            f"SELECT status, execution_id FROM {s}.instances "
            "WHERE hub = %s AND instance_id = %s FOR UPDATE",
            [self.hub, iid],
        )
        row = await cur.fetchone()
        if row is None:  # purged in between: start over
            created = await self._create(cur, new, retried)
            await self._put_payloads(cur, pending or {})
            return created
        status = Status(row[0])
        if not status.is_terminal:
            return None if retried and row[1] == new.record.execution_id else status
        # lease_token is kept (it only grows) so no stale lease can match; the old
        # lease, if any, is cleared so the new run can start at once.
        await cur.execute(
            f"UPDATE {s}.instances SET execution_id = %s, name = %s, version = %s, "
            "status = %s, input = %s, output = %s, custom_status = %s, failure = %s, "
            "created_at = %s, updated_at = %s, completed_at = %s, "
            "parent_instance_id = %s, scheduled_start_at = %s, history_len = %s, "
            "lease_owner = NULL, lease_expires_at = NULL "
            "WHERE hub = %s AND instance_id = %s",
            [*record_values(new), self.hub, iid],
        )
        # Leftovers of the earlier instance must not leak into the new one: one
        # statement clears all three.
        await cur.execute(
            f"WITH h AS (DELETE FROM {s}.history WHERE hub = %(hub)s AND instance_id = %(id)s), "
            f"m AS (DELETE FROM {s}.messages WHERE hub = %(hub)s AND instance_id = %(id)s), "
            f"p AS (DELETE FROM {s}.payloads WHERE hub = %(hub)s AND instance_id = %(id)s) "
            f"DELETE FROM {s}.work_items WHERE hub = %(hub)s AND instance_id = %(id)s",
            {"hub": self.hub, "id": iid},
        )
        await self._insert_messages(cur, [new.start])
        await self._put_payloads(cur, pending or {})
        return None

    # -- clients --------------------------------------------------------------------

    async def create_instance(self, new: NewInstance) -> None:
        payloads = self.payloads.fork()
        new = NewInstance(payloads.record(new.record), payloads.message(new.start))
        if payloads.pending:  # large payloads: a transaction of its own
            blocking = await self._create_alone(new, payloads.pending)
        else:
            started = await self._start_group.submit(new)
            blocking = None if started.created else await self._create_taken(new, started)
        if blocking is not None:
            raise InstanceExistsError(
                f"instance {new.record.instance_id!r} already exists in task hub {self.hub!r} "
                f"with status {blocking.value}; wait for it to finish, terminate or purge it, "
                "or choose another instance_id"
            )

    async def _start_batch(self, news: list[NewInstance]) -> tuple[set[str], bool]:
        """One batch of :class:`StartGroup`: one statement, one transaction."""
        attempts = 0
        kinds = EPISODES + STATUS + timed(n.start for n in news)
        params = starts_params(self.hub, news)

        async def op(conn: Conn) -> set[str]:
            nonlocal attempts
            attempts += 1
            async with conn.pipeline():
                cur = conn.cursor()
                async with conn.transaction():
                    await conn.execute(*plan_setting(len(news)))
                    await cur.execute(starts_sql(self._s), params)
                    await self._notify_within(conn, sent)
                return {row[0] for row in await cur.fetchall()}

        sent = self._claim(kinds)
        try:
            created = await self._run(op)
        except BaseException:
            if sent:
                self._settled("", "")
            raise
        changed = {
            n.record.instance_id: n.record.status for n in news if n.record.instance_id in created
        }
        if sent:
            self._settled(sent, kinds if created else "", changed)
        elif created:
            self._notify(kinds, changed)
        return created, attempts > 1

    async def _create_taken(self, new: NewInstance, started: Started) -> Status | None:
        """The slow path of a start whose id was taken: replace a finished instance."""

        async def op(conn: Conn) -> Status | None:
            async with conn.transaction(), conn.cursor() as cur:
                await cur.execute(*plan_setting(1))
                return await self._replace(cur, new, started.retried)

        return self._started(new, await self._run(op))

    async def _create_alone(
        self, new: NewInstance, pending: dict[tuple[str, str], str]
    ) -> Status | None:
        """A start with large payloads, in a transaction of its own."""
        attempts = 0

        async def op(conn: Conn) -> Status | None:
            nonlocal attempts
            attempts += 1
            async with conn.transaction(), conn.cursor() as cur:
                await cur.execute(*plan_setting(1))
                blocking = await self._create(cur, new, attempts > 1)
                if blocking is None:
                    await self._put_payloads(cur, pending)
                return blocking

        return self._started(new, await self._run(op))

    def _started(self, new: NewInstance, blocking: Status | None) -> Status | None:
        """After a start outside the batches: wake whoever waits for it, if it was made."""
        if blocking is None:
            changed = {new.record.instance_id: new.record.status}
            self._notify(EPISODES + STATUS + timed([new.start]), changed)
        return blocking

    async def enqueue_messages(self, messages: Sequence[Message]) -> None:
        if not messages:
            return

        async def op(conn: Conn) -> None:
            async with conn.pipeline(), conn.transaction(), conn.cursor() as cur:
                await cur.execute(*plan_setting(len(messages)))
                await self._insert_messages(cur, messages)

        await self._run(op)
        self._notify(EPISODES + timed(messages))

    # -- orchestration episodes -----------------------------------------------------

    async def lease_episodes(
        self,
        now: datetime,
        limit: int,
        lease_for: float,
        owner: str,
        versions: VersionFilter | None = None,
        names: Collection[str] | None = None,
    ) -> list[LeasedEpisode]:
        if limit < 1:
            return []
        s = self._s
        expires = now + timedelta(seconds=lease_for)
        params = {
            "hub": self.hub,
            "now": now,
            "limit": limit,
            "scan": max(limit * 8, 1000),
            "owner": owner,
            "expires": expires,
            **version_params(versions, names),
        }

        async def op(conn: Conn) -> list[LeasedEpisode]:
            # One round trip: BEGIN, the lease, the read of the leased inboxes, COMMIT.
            # The read is a statement of its own, so its snapshot is taken after our
            # row locks: it cannot return messages that a previous holder consumed in a
            # commit landing between the lease statement's snapshot and its lock.
            cur, inboxes = conn.cursor(), conn.cursor()
            async with conn.pipeline():
                async with conn.transaction():
                    await conn.execute(*plan_setting(min(limit, self._last_leased)))
                    await cur.execute(lease_episodes_sql(s), params)
                    await inboxes.execute(leased_inboxes_sql(s), params)
                leased = sorted(await cur.fetchall(), key=lambda r: (r[-2], r[-1]))
                rows = await inboxes.fetchall()
            self._last_leased = len(leased)
            return await self._with_inboxes(conn, leased, rows)

        return await self._run(op)

    async def complete_episodes(
        self,
        commits: Sequence[EpisodeCommit],
        now: datetime,
        eager: EagerActivities | None = None,
    ) -> list[bool]:
        if not commits:
            return []
        # The whole batch is one transaction (one COMMIT, one WAL flush) and, in the usual
        # case, one round trip: BEGIN, one set-based statement per round (see
        # commit_rounds; one in practice) and COMMIT are pipelined. Replaced
        # histories and child instances need the statement's outcome first.
        rounds = commit_rounds(commits)
        later = any(c.replace_history or c.new_instances for c in commits)
        sql = commit_sql(self._s)
        payloads = self.payloads.fork()
        stored = [payloads.commit(c) for c in commits]  # eager items keep their inputs

        async def op(conn: Conn) -> list[bool]:
            applied = [False] * len(commits)
            if eager is not None:
                eager.leased.clear()  # a retried attempt starts over
            async with conn.pipeline():
                async with conn.transaction():
                    await conn.execute(*plan_setting(len(commits)))
                    messages = [m for c in commits for m in c.messages]
                    await ensure_postgres(conn, self._s, self.hub, messages)
                    await self._notify_within(conn, sent)
                    fenced: list[tuple[list[int], Cur]] = []
                    for n, batch in enumerate(rounds):
                        cur = conn.cursor()
                        # Eager leases in the first round only (in practice the only one).
                        params = commit_params(
                            self.hub, [stored[k] for k in batch], eager if n == 0 else None
                        )
                        await cur.execute(sql, params)
                        fenced.append((batch, cur))
                    if later:
                        await self._mark_applied(fenced, commits, applied, eager)
                        done = [c for c, ok in zip(stored, applied, strict=True) if ok]
                        await self._finish_commits(conn, done, now)
                    if payloads.pending:
                        async with conn.cursor() as put:
                            await self._put_payloads(put, payloads.pending)
                if not later:
                    await self._mark_applied(fenced, commits, applied, eager)
            return applied

        sent = self._claim(likely_commit_kinds(commits, eager))
        try:
            applied = await self._run(op)
        except BaseException:
            if sent:
                self._settled("", "")
            raise
        kinds = commit_kinds(commits, applied, eager) if any(applied) else ""
        if sent:
            self._settled(sent, kinds, status_changes(commits, applied))
        elif kinds:
            self._notify(kinds, status_changes(commits, applied))
        return applied

    @staticmethod
    async def _mark_applied(
        fenced: list[tuple[list[int], Cur]],
        commits: Sequence[EpisodeCommit],
        applied: list[bool],
        eager: EagerActivities | None,
    ) -> None:
        for batch, cur in fenced:
            rows = await cur.fetchall()
            ids = {row[0] for row in rows if row[1] is None}
            for k in batch:
                applied[k] = commits[k].instance.instance_id in ids
            if eager is not None:
                eager.leased.extend(eager_items(rows, [commits[k] for k in batch]))

    async def _finish_commits(
        self, conn: Conn, done: Sequence[EpisodeCommit], now: datetime
    ) -> None:
        """What :func:`commit_sql` leaves out, for the applied commits ``done``."""
        s = self._s
        replaced = [c for c in done if c.replace_history]
        if replaced:
            await conn.execute(
                f"DELETE FROM {s}.history WHERE hub = %s AND instance_id = ANY(%b::text[])",
                [self.hub, [c.instance.instance_id for c in replaced]],
            )
            await conn.execute(insert_history_sql(s), {"hub": self.hub, **history_rows(replaced)})
        # A commit's messages go after its children, as creating a child clears what was
        # sent to its id before; a child whose id is running fails its parent's call.
        messages: list[Message] = []
        async with conn.cursor() as cur:
            for c in done:
                if not c.new_instances:
                    continue
                messages.extend(c.messages)
                for new in c.new_instances:
                    if await self._create(cur, new) is not None:
                        conflict = child_conflict_message(new, now)
                        if conflict is not None:
                            messages.append(conflict)
            await self._insert_messages(cur, messages)

    async def renew_episodes(
        self, leases: Sequence[tuple[str, int]], now: datetime, lease_for: float
    ) -> list[bool]:
        if not leases:
            return []
        expires = now + timedelta(seconds=lease_for)

        async def op(conn: Conn) -> set[tuple[str, int]]:
            cur = await planned(
                conn,
                len(leases),
                f"UPDATE {self._s}.instances i SET lease_expires_at = %s "
                "FROM unnest(%b::text[], %b::bigint[]) AS u(id, token) "
                "WHERE i.hub = %s AND i.instance_id = u.id AND i.lease_token = u.token "
                "AND i.lease_expires_at IS NOT NULL RETURNING i.instance_id, i.lease_token",
                [expires, [i for i, _ in leases], [t for _, t in leases], self.hub],
            )
            return {(row[0], row[1]) for row in await cur.fetchall()}

        renewed = await self._run(op)
        return [(iid, token) in renewed for iid, token in leases]

    async def abandon_episode(self, instance_id: str, lease_token: int) -> None:
        async def op(conn: Conn) -> bool:
            async with conn.pipeline(), conn.transaction(), conn.cursor() as cur:
                await cur.execute(*plan_setting(1))
                await cur.execute(
                    f"UPDATE {self._s}.instances SET lease_owner = NULL, lease_expires_at = NULL "
                    "WHERE hub = %s AND instance_id = %s AND lease_token = %s "
                    "AND lease_expires_at IS NOT NULL RETURNING 1",
                    [self.hub, instance_id, lease_token],
                )
                return await cur.fetchone() is not None

        if await self._run(op):
            self._notify(EPISODES)

    # -- time -----------------------------------------------------------------------

    async def next_wakeup(self, now: datetime) -> datetime | None:
        s = self._s

        async def op(conn: Conn) -> datetime | None:
            cur = await conn.execute(
                # Messages only of instances that exist (see _create); each branch is
                # one ordered index probe.
                "SELECT least("
                f"(SELECT m.visible_at FROM {s}.messages m WHERE m.hub = %(hub)s "
                "AND m.visible_at > %(now)s AND EXISTS (SELECT 1 FROM "
                f"{s}.instances i WHERE i.hub = m.hub AND i.instance_id = m.instance_id) "
                "ORDER BY m.visible_at LIMIT 1), "
                f"(SELECT min(ready_at) FROM {s}.work_items WHERE hub = %(hub)s "
                "AND ready_at > %(now)s), "
                f"(SELECT min(lease_expires_at) FROM {s}.instances WHERE hub = %(hub)s "
                "AND lease_expires_at > %(now)s))",
                {"hub": self.hub, "now": now},
            )
            row = await cur.fetchone()
            return None if row is None else row[0]

        return await self._run(op)

    async def has_runnable(
        self,
        now: datetime,
        episode_names: Collection[str] | None = None,
        activity_names: Collection[str] | None = None,
    ) -> bool:
        s = self._s
        params = {
            "hub": self.hub,
            "now": now,
            "names": None if episode_names is None else sorted(set(episode_names)),
            "activities": None if activity_names is None else sorted(set(activity_names)),
        }

        async def op(conn: Conn) -> bool:
            cur = await conn.execute(
                f"SELECT EXISTS (SELECT 1 FROM {s}.work_items WHERE hub = %(hub)s "
                "AND ready_at <= %(now)s AND (%(activities)b::text[] IS NULL "
                "OR name = ANY(%(activities)b::text[]))) OR EXISTS (SELECT 1 FROM "
                f"{s}.messages m JOIN {s}.instances i "
                "ON i.hub = m.hub AND i.instance_id = m.instance_id "
                "WHERE m.hub = %(hub)s AND m.visible_at <= %(now)s "
                "AND (i.lease_expires_at IS NULL OR i.lease_expires_at <= %(now)s) "
                f"AND {NAMES_ADMIT.format(alias='i')})",
                params,
            )
            row = await cur.fetchone()
            return bool(row and row[0])

        return await self._run(op)

    # -- introspection (tests, diagnostics) -------------------------------------------

    @property
    def listener(self) -> NotifyListener | None:
        """The LISTEN connection's supervisor, while open."""
        return self._listener
