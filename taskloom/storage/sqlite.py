"""The SQLite backend: stdlib :mod:`sqlite3` in WAL mode, the embedded default.

Calls run synchronously on the event loop's thread: a statement takes microseconds and
no method awaits in the middle of a transaction, so transactions never interleave within
one store. Several processes may share one file: every write transaction starts with
``BEGIN IMMEDIATE``, which takes SQLite's single writer lock up front, so a lease or a
fenced commit reads and writes under that lock and two processes can never both win.
Pure polls first look for candidates without a transaction, so idle workers do not
queue on the writer lock.

Times are stored as INTEGER microseconds since the epoch (exact and ordered); they come
back as timezone-aware UTC datetimes. Errors of :mod:`sqlite3` leave this module as
:class:`~taskloom.errors.StoreError` naming the file, with the driver error chained.
"""

from __future__ import annotations

import asyncio
import functools
import os
import sqlite3
import time
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any, TypeVar

from taskloom.errors import InstanceExistsError, StoreError
from taskloom.history import dumps_event
from taskloom.models import Status
from taskloom.storage import large, local_bus
from taskloom.storage import sqlite_codec as codec
from taskloom.storage.base import (
    ALL_KINDS,
    EPISODES,
    STATUS,
    EagerActivities,
    EpisodeCommit,
    InstanceQuery,
    InstanceRecord,
    LeasedEpisode,
    Message,
    NewInstance,
    NewWorkItem,
    Store,
    VersionFilter,
    WorkItem,
    child_conflict_message,
    commit_kinds,
    names_json,
    status_changes,
    timed,
)
from taskloom.storage.doorbell import Doorbell
from taskloom.storage.entity_rows import (
    SQLITE_KEEP_BUSY_ENTITIES,
    ensure_sqlite,
)
from taskloom.storage.migrations import load_migrations, split_statements
from taskloom.storage.sqlite_activities import SqliteActivitiesMixin
from taskloom.storage.sqlite_codec import name_params as _name_params
from taskloom.storage.sqlite_codec import version_params as _version_params
from taskloom.storage.sqlite_events import SqliteEventsMixin
from taskloom.storage.sqlite_host import SqliteHostMixin
from taskloom.storage.sqlite_reads import SqliteReadsMixin
from taskloom.storage.sqlite_topics import SqliteTopicsMixin
from taskloom.storage.sqlite_workers import SqliteWorkersMixin

__all__ = ["SqliteStore"]

_TERMINAL = tuple(s.value for s in Status if s.is_terminal)
_INSTANCE_DATA = ("history", "messages", "work_items", "payloads")
T = TypeVar("T")

# Inserting or replacing a row also resets its lease: token 0 matches no held lease, so
# a worker still holding a lease on a replaced terminal instance can never commit.
_UPSERT_RECORD = (
    f"INSERT INTO instances (hub, {', '.join(codec.RECORD_COLUMNS)}) "
    f"VALUES (:hub, {', '.join(':' + c for c in codec.RECORD_COLUMNS)}) "
    "ON CONFLICT (hub, instance_id) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in codec.RECORD_COLUMNS[1:])
    + ", lease_owner = NULL, lease_expires = NULL, lease_token = 0"
)
# A fresh id (the usual start) is one statement; a taken one falls back to the upsert.
_INSERT_RECORD = (
    f"INSERT INTO instances (hub, {', '.join(codec.RECORD_COLUMNS)}) "
    f"VALUES (:hub, {', '.join(':' + c for c in codec.RECORD_COLUMNS)}) "
    "ON CONFLICT (hub, instance_id) DO NOTHING"
)
# A commit rewrites the row from the episode's view (all but the columns no episode
# changes, whose indexes then need no update); the lease is released but its token kept,
# so stale tokens stay invalid until the next lease issues a higher one.
_FIXED_COLUMNS = ("instance_id", "created_at", "parent_instance_id", "scheduled_start_at")
_UPDATE_RECORD = (
    "UPDATE instances SET "
    + ", ".join(f"{c} = :{c}" for c in codec.RECORD_COLUMNS if c not in _FIXED_COLUMNS)
    + ", lease_owner = NULL, lease_expires = NULL"
    " WHERE hub = :hub AND instance_id = :instance_id"
)
# A lease takes a free row and reads it back in one statement.
_LEASE_RECORD = (
    "UPDATE instances SET lease_owner = ?, lease_token = ?, lease_expires = ? "
    "WHERE hub = ? AND instance_id = ? AND (lease_expires IS NULL OR lease_expires <= ?) "
    f"RETURNING {', '.join(codec.RECORD_COLUMNS)}"
)
# A commit needs our token and a lease still held: after a commit or an abandon the same
# token cannot apply again.
_COMMIT_RECORD = _UPDATE_RECORD + " AND lease_token = :lease_token AND lease_expires IS NOT NULL"
# An inline episode (InlineEpisodes) needs the row as the worker's last commit left it:
# unleased since (same token, no lease), the same history and execution, and no other
# visible message waiting.
_INLINE_RECORD = (
    _UPDATE_RECORD + " AND lease_token = :lease_token AND lease_expires IS NULL"
    " AND history_len = :prior_len AND execution_id = :execution_id"
    " AND NOT EXISTS (SELECT 1 FROM messages INDEXED BY messages_by_instance WHERE hub = :hub"
    " AND instance_id = :instance_id AND visible_at <= :now)"
)


_Q = codec.QUERIES


@contextmanager
def _transaction(conn: sqlite3.Connection, begin: str) -> Iterator[sqlite3.Connection]:
    conn.execute(begin)
    try:
        yield conn
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


class SqliteStore(
    SqliteActivitiesMixin,
    SqliteReadsMixin,
    SqliteTopicsMixin,
    SqliteEventsMixin,
    SqliteHostMixin,
    SqliteWorkersMixin,
    Store,
):
    """A task hub in an SQLite file (or ``":memory:"``, private to this object)."""

    def __init__(
        self,
        path: str,
        hub: str = "default",
        *,
        busy_timeout_ms: int = 5000,
        payload_threshold: int = large.DEFAULT_THRESHOLD,
        payload_limit: int = large.DEFAULT_LIMIT,
    ) -> None:
        super().__init__()
        self.path = path
        self.hub = hub
        self.busy_timeout_ms = busy_timeout_ms
        self.payloads = large.Payloads(payload_threshold, payload_limit)
        self._conn: sqlite3.Connection | None = None
        self._doorbell: Doorbell | None = None
        self._starts: list[tuple[NewInstance, asyncio.Future[Status | None]]] = []

    def __repr__(self) -> str:
        return f"SqliteStore({self.path!r}, hub={self.hub!r})"

    # -- plumbing -------------------------------------------------------------------

    @contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            raise StoreError(
                f"SQLite store {self.path!r} (hub {self.hub!r}) failed to {action}: {exc}"
            ) from exc

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError(
                f"SQLite store {self.path!r} (hub {self.hub!r}) is not open: "
                "call `await store.open()` first"
            )
        return self._conn

    @contextmanager
    def _read(self, action: str) -> Iterator[sqlite3.Connection]:
        """A deferred transaction: one consistent snapshot for multi-statement reads."""
        with self._errors(action), _transaction(self._connection(), "BEGIN") as conn:
            yield conn

    @contextmanager
    def _write(self, action: str) -> Iterator[sqlite3.Connection]:
        """A write transaction holding SQLite's writer lock from its first statement;
        the large payloads its rows refer to are inserted last, before COMMIT."""
        with self._errors(action), _transaction(self._connection(), "BEGIN IMMEDIATE") as conn:
            try:
                yield conn
                self._flush_payloads(conn)
            finally:
                self.payloads.pending.clear()

    # -- large payloads (storage/large.py) --------------------------------------------

    def _flush_payloads(self, conn: sqlite3.Connection) -> None:
        pending = self.payloads.take()
        if not pending:
            return
        stored: set[tuple[str, str]] = set()
        for chunk in codec.chunks(sorted({digest for _, digest in pending})):
            stored.update(
                conn.execute(
                    f"SELECT instance_id, id FROM payloads WHERE hub = ? AND id IN "
                    f"({codec.marks(len(chunk))})",
                    (self.hub, *chunk),
                ).fetchall()
            )
        conn.executemany(
            "INSERT INTO payloads (hub, instance_id, id, size, data) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT DO NOTHING",
            [
                (self.hub, iid, digest, len(text), large.compress(text))
                for (iid, digest), text in pending.items()
                if (iid, digest) not in stored
            ],
        )

    def _resolved(self, conn: sqlite3.Connection, objs: list[T]) -> list[T]:
        """``objs`` with their payload markers resolved, in one query."""
        digests = large.refs(objs)
        if not digests:
            return objs
        # Rows written earlier in this transaction refer to payloads not inserted yet.
        texts = {d: text for (_, d), text in self.payloads.pending.items() if d in digests}
        for chunk in codec.chunks(sorted(digests - texts.keys())):
            for digest, data in conn.execute(
                "SELECT id, data FROM payloads WHERE hub = ? "
                f"AND id IN ({codec.marks(len(chunk))})",
                (self.hub, *chunk),
            ):
                if digest not in texts:
                    texts[digest] = large.decompress(data)
        return [large.resolve(obj, texts) for obj in objs]

    def _record_params(self, record: InstanceRecord) -> dict[str, Any]:
        return codec.record_params(self.hub, self.payloads.record(record))

    def _scalar(self, action: str, sql: str, params: Sequence[Any] | dict[str, Any]) -> Any:
        """The first column of the first row of a one-statement read (None if no row)."""
        with self._errors(action):
            row = self._connection().execute(sql, params).fetchone()
        return None if row is None else row[0]

    # -- wake-ups -------------------------------------------------------------------

    @functools.cached_property
    def _bus_key(self) -> tuple[str, str]:
        # Cached: every commit publishes on it, and realpath costs system calls.
        return (os.path.realpath(self.path) if self.path != ":memory:" else str(id(self)), self.hub)

    def _notify(self, kinds: str = ALL_KINDS, changed: Collection[str] | None = None) -> None:
        self._wake_locally(kinds, changed)
        local_bus.publish(self._bus_key, self._wake_locally, kinds)
        if self._doorbell is not None:
            self._doorbell.ring(kinds)

    def _listening(self) -> None:
        # Other processes ring only the processes that listen; the socket stays bound
        # until close, so a client waiting many times in a row binds once.
        if self._doorbell is not None:
            self._doorbell.listen(self._wake_locally)

    @property
    def doorbell(self) -> Doorbell | None:
        """This store's doorbell to other processes (None for ``:memory:`` or closed)."""
        return self._doorbell

    # -- lifecycle ------------------------------------------------------------------

    async def open(self) -> None:
        if self._conn is not None:
            return
        with self._errors("open the database"):
            # check_same_thread=False: the sync client may drive its loop from another
            # thread than the one that built the store; access is still one at a time.
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            try:
                conn.row_factory = sqlite3.Row
                # busy_timeout first, so the WAL switch waits for other openers.
                conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")
                await self._enable_wal(conn)
                # NORMAL in WAL mode survives a crash of the process; only an OS crash or
                # power loss may lose the last commits, and it never corrupts the file.
                conn.execute("PRAGMA synchronous = NORMAL")
                self._migrate(conn)
            except BaseException:
                conn.close()
                raise
            if self._conn is not None:  # a concurrent open() won while we waited
                conn.close()
                return
            self._conn = conn
        local_bus.subscribe(self._bus_key, self._wake_locally)
        if self.path != ":memory:" and not self.path.startswith("file:"):
            self._doorbell = Doorbell(self.path, self.hub)
            if self._listeners:
                self._doorbell.listen(self._wake_locally)

    async def _enable_wal(self, conn: sqlite3.Connection) -> None:
        # Switching a fresh file to WAL fails with SQLITE_BUSY at once, without calling
        # the busy handler, while another opener holds a lock; retry until busy_timeout.
        # The mode persists in the file, so only the first openers ever get here.
        deadline = time.monotonic() + self.busy_timeout_ms / 1000
        while True:
            try:
                conn.execute("PRAGMA journal_mode = WAL")
                return
            except sqlite3.OperationalError as exc:
                busy = getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_BUSY
                if not busy or time.monotonic() >= deadline:
                    raise
            await asyncio.sleep(0.005)

    def _migrate(self, conn: sqlite3.Connection) -> None:
        migrations = load_migrations("sqlite")
        for migration in migrations:
            # One BEGIN IMMEDIATE transaction per migration, re-reading the applied version
            # under the writer lock, so concurrent openers apply each exactly once.
            # (executescript would COMMIT first, so statements run one by one.)
            with _transaction(conn, "BEGIN IMMEDIATE"):
                conn.execute(_Q["create_migrations_table"])
                applied = conn.execute(
                    "SELECT COALESCE(MAX(version), 0) FROM taskloom_migrations"
                ).fetchone()[0]
                if applied > len(migrations):
                    raise StoreError(
                        f"SQLite store {self.path!r} has schema version {applied}, newer than "
                        f"this taskloom knows ({len(migrations)}): upgrade taskloom"
                    )
                if migration.version > applied:
                    for statement in split_statements(migration.sql):
                        conn.execute(statement)
                    conn.execute(_Q["record_migration"], (migration.version, migration.name))

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        doorbell, self._doorbell = self._doorbell, None
        if doorbell is not None:
            doorbell.close()
        if conn is not None:
            local_bus.unsubscribe(self._bus_key, self._wake_locally)
            with self._errors("close the database"):
                conn.close()

    # -- shared writes ----------------------------------------------------------------

    def _delete_in(
        self, conn: sqlite3.Connection, tables: Sequence[str], instance_ids: Sequence[str]
    ) -> None:
        for chunk in codec.chunks(instance_ids):
            for table in tables:
                marks = codec.marks(len(chunk))
                conn.execute(
                    f"DELETE FROM {table} WHERE hub = ? AND instance_id IN ({marks})",
                    (self.hub, *chunk),
                )

    def _create(self, conn: sqlite3.Connection, new: NewInstance) -> Status | None:
        """Create (or replace a terminal) instance; return the blocking status if any."""
        if conn.execute(_INSERT_RECORD, self._record_params(new.record)).rowcount == 1:
            # A fresh id has no leftovers: rows of other tables live only beside an
            # instance row (messages for unknown instances are dropped when inserted).
            self._insert_messages(conn, [new.start])
            return None
        row = conn.execute(
            "SELECT status FROM instances WHERE hub = ? AND instance_id = ?",
            (self.hub, new.record.instance_id),
        ).fetchone()
        if row is not None and not Status(row[0]).is_terminal:
            return Status(row[0])
        # Leftovers of a previous instance with this id must not leak into the new one.
        if row is not None:
            self._delete_in(conn, _INSTANCE_DATA, [new.record.instance_id])
        conn.execute(_UPSERT_RECORD, self._record_params(new.record))
        self._insert_messages(conn, [new.start])
        return None

    def _insert_messages(self, conn: sqlite3.Connection, messages: Sequence[Message]) -> None:
        if not messages:
            return
        ensure_sqlite(conn, self.hub, messages, codec.us)  # entities exist once addressed
        conn.executemany(
            _Q["insert_message"],
            [
                {
                    "hub": self.hub,
                    "instance_id": m.instance_id,
                    "execution_id": m.execution_id,
                    "visible_at": codec.us(m.visible_at),
                    "event": dumps_event(self.payloads.event(m.instance_id, m.event)),
                    "dedup_key": m.key,
                }
                for m in messages
            ],
        )

    # -- clients --------------------------------------------------------------------

    async def create_instance(self, new: NewInstance) -> None:
        # Starts made together (a client gathering many start_new calls) share one
        # transaction, begun on the loop's next turn: one lock round and WAL commit.
        loop = asyncio.get_running_loop()
        created: asyncio.Future[Status | None] = loop.create_future()
        if not self._starts:
            loop.call_soon(self._create_started)
        self._starts.append((new, created))
        blocking = await created
        if blocking is not None:
            raise InstanceExistsError(
                f"instance {new.record.instance_id!r} already exists in task hub {self.hub!r} "
                f"with status {blocking.value}; wait for it to finish, terminate it, or "
                "choose another instance_id"
            )

    def _create_started(self) -> None:
        starts, self._starts = self._starts, []
        what = f"create instance {starts[0][0].record.instance_id!r}"
        try:
            with self._write(
                what if len(starts) == 1 else f"create {len(starts)} instances"
            ) as conn:
                blocking = [self._create(conn, new) for new, _ in starts]
        except Exception as exc:
            for _, created in starts:
                if not created.done():
                    created.set_exception(exc)
            return
        made = [new for (new, _), b in zip(starts, blocking, strict=True) if b is None]
        if made:
            started = {new.record.instance_id: new.record.status for new in made}
            self._notify(EPISODES + STATUS + timed(new.start for new in made), started)
        for (_, created), status in zip(starts, blocking, strict=True):
            if not created.done():
                created.set_result(status)

    async def enqueue_messages(self, messages: Sequence[Message]) -> None:
        if not messages:
            return
        with self._write("enqueue messages") as conn:
            self._insert_messages(conn, messages)
        self._notify(EPISODES + timed(messages))

    async def purge_instances(
        self, query: InstanceQuery, instance_ids: Sequence[str] | None = None
    ) -> int:
        clauses, params = codec.where(self.hub, query)
        clauses.append(f"status IN ({codec.marks(len(_TERMINAL))})")
        params.extend(_TERMINAL)
        clauses.append(SQLITE_KEEP_BUSY_ENTITIES)
        sql = f"SELECT instance_id FROM instances WHERE {' AND '.join(clauses)}"
        with self._write("purge instances") as conn:
            if instance_ids is None:
                doomed = [r[0] for r in conn.execute(sql, params)]
            else:
                doomed = []
                for chunk in codec.chunks(list(dict.fromkeys(instance_ids))):
                    in_chunk = f"{sql} AND instance_id IN ({codec.marks(len(chunk))})"
                    doomed += [r[0] for r in conn.execute(in_chunk, (*params, *chunk))]
            self._delete_in(conn, (*_INSTANCE_DATA, "instances"), doomed)  # payloads too
        return len(doomed)

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
        at = codec.us(now)
        params = (self.hub, at, at, *_version_params(versions), *_name_params(names), limit)
        # Look without the writer lock first, so idle pollers never queue on it.
        if limit < 1 or not self._scalar("look for work", _Q["episode_candidates"], params):
            return []
        with self._write("lease instances") as conn:
            # Again under the lock: another process may have leased some meanwhile.
            ids = [r[0] for r in conn.execute(_Q["episode_candidates"], params)]
            return self._lease_instances(conn, ids, at, lease_for, owner)

    def _lease_instances(
        self, conn: sqlite3.Connection, ids: Sequence[str], at: int, lease_for: float, owner: str
    ) -> list[LeasedEpisode]:
        """Lease those of ``ids`` that are free (under the writer lock), with their
        visible inboxes. Tokens are taken for all of ``ids``; unused ones are gaps."""
        if not ids:
            return []
        last = conn.execute(_Q["next_lease_tokens"], (len(ids),)).fetchone()[0]
        expires = at + codec.seconds_to_us(lease_for)
        leased: dict[str, tuple[InstanceRecord, int]] = {}
        for token, iid in enumerate(ids, last - len(ids) + 1):
            params = (owner, token, expires, self.hub, iid, at)
            for row in conn.execute(_LEASE_RECORD, params).fetchall():
                leased[iid] = (codec.record(row), token)
        if not leased:
            return []
        inboxes: dict[str, list[Message]] = {i: [] for i in leased}
        for row in conn.execute(
            "SELECT * FROM messages WHERE hub = ? AND visible_at <= ? "
            f"AND instance_id IN ({codec.marks(len(leased))}) ORDER BY id",
            (self.hub, at, *leased),
        ):
            inboxes[row["instance_id"]].append(codec.message(row))
        records = [record for record, _ in leased.values()]
        messages = [m for inbox in inboxes.values() for m in inbox]
        if large.refs(records) or large.refs(messages):
            records = self._resolved(conn, records)
            by_id = {m.id: m for m in self._resolved(conn, messages)}
            for iid, record in zip(leased, records, strict=True):
                leased[iid] = (record, leased[iid][1])
            for inbox in inboxes.values():
                inbox[:] = [by_id[m.id] for m in inbox]
        return [LeasedEpisode(record, inboxes[i], token) for i, (record, token) in leased.items()]

    async def complete_episodes(
        self,
        commits: Sequence[EpisodeCommit],
        now: datetime,
        eager: EagerActivities | None = None,
    ) -> list[bool]:
        if not commits:
            return []
        # One transaction for the batch (one lock round and one WAL commit); each commit
        # checks its fence before writing anything, so a lost lease skips only itself.
        with self._write("complete episodes") as conn:
            applied = [self._apply_commit(conn, commit, now, eager) for commit in commits]
        if any(applied) and (kinds := commit_kinds(commits, applied, eager)):
            self._notify(kinds, status_changes(commits, applied))
        return applied

    def _apply_commit(
        self,
        conn: sqlite3.Connection,
        commit: EpisodeCommit,
        now: datetime,
        eager: EagerActivities | None,
        inline: bool = False,
    ) -> bool:
        key = (self.hub, commit.instance.instance_id)
        # The fenced row update goes first: when the lease is lost it matches no row and
        # nothing else is written.
        params = self._record_params(commit.instance)
        params["lease_token"] = commit.lease_token
        fence = _COMMIT_RECORD
        if inline:
            fence = _INLINE_RECORD
            params["prior_len"] = commit.prior_len
            params["now"] = codec.us(now)
        if conn.execute(fence, params).rowcount != 1:
            return False
        if commit.replace_history:
            conn.execute("DELETE FROM history WHERE hub = ? AND instance_id = ?", key)
            start = 0
        else:
            start = commit.prior_len
        conn.executemany(
            _Q["insert_history"],
            [
                (*key, seq, dumps_event(self.payloads.event(key[1], e)))
                for seq, e in enumerate(commit.history, start)
            ],
        )
        for chunk in codec.chunks(list(commit.consumed)):
            conn.execute(
                "DELETE FROM messages WHERE hub = ? AND instance_id = ? "
                f"AND id IN ({codec.marks(len(chunk))})",
                (*key, *chunk),
            )
        work = list(commit.work_items)
        if eager is not None:
            now_leased = work[: max(0, eager.limit - len(eager.leased))]
            work = work[len(now_leased) :]
            self._insert_leased_work(conn, now_leased, eager)
        if work:
            self._insert_work(conn, work)
        self._insert_messages(conn, commit.messages)
        for new in commit.new_instances:
            if self._create(conn, new) is not None:
                conflict = child_conflict_message(new, now)
                if conflict is not None:
                    self._insert_messages(conn, [conflict])
        return True

    def _work_row(self, w: NewWorkItem, visible_at: int, attempt: int) -> tuple[Any, ...]:
        stored = self.payloads.text(w.instance_id, w.input, f"input of activity {w.name!r}")
        return (self.hub, w.instance_id, w.execution_id, w.task_id, w.name, stored,
                visible_at, attempt, w.trace_parent,
                codec.us_or_none(w.scheduled_at))  # fmt: skip

    def _insert_work(self, conn: sqlite3.Connection, work: Sequence[NewWorkItem]) -> None:
        rows = [self._work_row(w, codec.us(w.visible_at), w.prior_attempts) for w in work]
        conn.executemany(_Q["insert_work_item"], rows)

    def _insert_leased_work(
        self, conn: sqlite3.Connection, items: Sequence[NewWorkItem], eager: EagerActivities
    ) -> None:
        # Hidden until the lease lapses, like any leased item (visible_at = expiry).
        expires = codec.us(eager.expires)
        for w in items:
            attempt = w.prior_attempts + 1
            row = (*self._work_row(w, expires, attempt), eager.owner, expires)
            item_id = conn.execute(_Q["insert_leased_work_item"], row).fetchone()[0]
            eager.leased.append(
                WorkItem(
                    item_id,
                    w.instance_id,
                    w.execution_id,
                    w.task_id,
                    w.name,
                    w.input,
                    1,
                    attempt,
                    w.trace_parent,
                    w.scheduled_at,
                )
            )

    async def renew_episodes(
        self, leases: Sequence[tuple[str, int]], now: datetime, lease_for: float
    ) -> list[bool]:
        expires = codec.us(now) + codec.seconds_to_us(lease_for)
        with self._write("renew episode leases") as conn:
            return [
                conn.execute(_Q["renew_episode"], (expires, self.hub, i, t)).rowcount == 1
                for i, t in leases
            ]

    async def abandon_episode(self, instance_id: str, lease_token: int) -> None:
        with self._write(f"abandon the episode of {instance_id!r}") as conn:
            released = conn.execute(_Q["abandon"], (self.hub, instance_id, lease_token)).rowcount
        if released:
            self._notify(EPISODES)

    # -- time -----------------------------------------------------------------------

    async def next_wakeup(self, now: datetime) -> datetime | None:
        params = {"hub": self.hub, "now": codec.us(now)}
        return codec.dt_or_none(self._scalar("find the next wake-up", _Q["next_wakeup"], params))

    async def has_runnable(
        self,
        now: datetime,
        episode_names: Collection[str] | None = None,
        activity_names: Collection[str] | None = None,
    ) -> bool:
        params = {
            "hub": self.hub,
            "now": codec.us(now),
            "episode_names": names_json(episode_names),
            "activity_names": names_json(activity_names),
        }
        return bool(self._scalar("look for work", _Q["has_runnable"], params))
