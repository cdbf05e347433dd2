"""What only the PostgreSQL store promises, beyond the shared contract of test_store.py.

Migrations under an advisory lock, the ``schema`` option, hubs side by side, clear errors
for wrong URLs, LISTEN/NOTIFY wake-ups across store objects, leasing without double
leases under concurrency, and carrying on when the server drops every connection.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from backends import PG_URL, require_postgres

from taskloom.errors import ConfigurationError, StoreError, TaskloomError
from taskloom.history import ExecutionStarted, OrchestratorStarted, TaskCompleted
from taskloom.models import Status
from taskloom.storage import open_store
from taskloom.storage.base import (
    ActivityResult,
    EpisodeCommit,
    InstanceQuery,
    InstanceRecord,
    Message,
    NewInstance,
    NewWorkItem,
)
from taskloom.storage.migrations import load_migrations
from taskloom.storage.postgres import PostgresStore

pytestmark = pytest.mark.postgres

T0 = datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _needs_postgres() -> None:
    require_postgres()


def _new(instance_id: str, created: datetime = T0) -> NewInstance:
    execution = f"{instance_id}:{uuid.uuid4().hex[:6]}"
    record = InstanceRecord(
        instance_id=instance_id,
        execution_id=execution,
        name="orch",
        status=Status.PENDING,
        created_at=created,
        updated_at=created,
    )
    start = ExecutionStarted(
        timestamp=created, name="orch", instance_id=instance_id, execution_id=execution
    )
    return NewInstance(record, Message(instance_id, start, created, execution))


async def _admin(sql: str, *params: object) -> list[tuple[object, ...]]:
    async with await psycopg.AsyncConnection.connect(PG_URL, autocommit=True) as conn:
        cur = await conn.execute(sql, params or None)
        return await cur.fetchall() if cur.description else []


@pytest.fixture
async def schema() -> AsyncIterator[str]:
    """A fresh schema, dropped afterwards."""
    name = "tl_" + uuid.uuid4().hex[:10]
    yield name
    await _admin(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


@pytest.fixture
async def pg(hub: str) -> AsyncIterator[PostgresStore]:
    store = PostgresStore(PG_URL, hub=hub)
    await store.open()
    try:
        yield store
    finally:
        await store.close()


# -- opening and migrating ----------------------------------------------------------------


def test_open_store_selects_postgres_for_both_schemes() -> None:
    assert isinstance(open_store(PG_URL), PostgresStore)
    assert isinstance(open_store(PG_URL.replace("postgresql://", "postgres://")), PostgresStore)


async def test_ten_concurrent_opens_migrate_exactly_once(schema: str) -> None:
    stores = [PostgresStore(PG_URL, hub=f"h{i}", schema=schema) for i in range(10)]
    try:
        await asyncio.gather(*(s.open() for s in stores))
        rows = await _admin(f'SELECT version, name FROM "{schema}".taskloom_migrations')
        expected = [(m.version, m.name) for m in load_migrations("postgres")]
        assert sorted(rows) == expected
        # Every store works on the migrated schema.
        await asyncio.gather(*(s.create_instance(_new("x")) for s in stores))
        assert all([await s.get_instance("x") for s in stores])
    finally:
        await asyncio.gather(*(s.close() for s in stores))


async def test_open_and_close_are_idempotent(hub: str) -> None:
    store = PostgresStore(PG_URL, hub=hub)
    await store.open()
    await store.open()
    assert await store.get_instance("nope") is None
    await store.close()
    await store.close()
    with pytest.raises(StoreError, match="not open"):
        await store.get_instance("nope")


async def test_schema_option_keeps_tables_in_that_schema(schema: str, hub: str) -> None:
    store = PostgresStore(PG_URL, hub=hub, schema=schema)
    await store.open()
    try:
        await store.create_instance(_new("a"))
        tables = {
            r[0]
            for r in await _admin(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
                schema,
            )
        }
        assert {"instances", "history", "messages", "work_items", "taskloom_migrations"} <= tables
        rows = await _admin(f'SELECT hub, instance_id FROM "{schema}".instances')
        assert rows == [(hub, "a")]
    finally:
        await store.close()
    # The same hub name in the default schema is a different hub.
    other = PostgresStore(PG_URL, hub=hub)
    await other.open()
    try:
        assert await other.get_instance("a") is None
    finally:
        await other.close()


async def test_hubs_side_by_side_do_not_see_each_other(hub: str) -> None:
    a, b = PostgresStore(PG_URL, hub=hub + "a"), PostgresStore(PG_URL, hub=hub + "b")
    await a.open()
    await b.open()
    try:
        await a.create_instance(_new("same"))
        await b.create_instance(_new("same"))  # no InstanceExistsError across hubs
        leased = await a.lease_episodes(T0, 10, 30, "w")
        assert [e.instance.instance_id for e in leased] == ["same"]
        assert await b.has_runnable(T0)  # b's copy is untouched by a's lease
        assert len(await b.lease_episodes(T0, 10, 30, "w")) == 1
        assert not await a.has_runnable(T0)
    finally:
        await a.close()
        await b.close()


@pytest.mark.parametrize("schema_name", ["Bad", "1x", "a;drop", "", "x" * 64])
def test_invalid_schema_is_a_configuration_error(schema_name: str) -> None:
    with pytest.raises(ConfigurationError, match="schema"):
        PostgresStore(PG_URL, schema=schema_name)


# -- clear errors for wrong URLs ----------------------------------------------------------


def _with(user: str | None = None, db: str | None = None, port: int | None = None) -> str:
    params = psycopg.conninfo.conninfo_to_dict(PG_URL)
    host = params.get("host", "127.0.0.1")
    return (
        f"postgresql://{user or params.get('user', 'postgres')}:s3cr3t-pw@{host}:"
        f"{port or params.get('port', 5432)}/{db or params.get('dbname', 'test')}"
    )


async def test_unknown_user_fails_fast_naming_target_not_password() -> None:
    store = PostgresStore(_with(user="no_such_role_tl"), hub="h")
    started = time.monotonic()
    with pytest.raises(ConfigurationError) as info:
        await store.open()
    message = str(info.value)
    assert time.monotonic() - started < 5
    assert "no_such_role_tl" in message and "does not exist" in message
    assert "test" in message and "5432" in message
    assert "s3cr3t-pw" not in message
    assert "s3cr3t-pw" not in repr(store)


async def test_unknown_database_fails_fast() -> None:
    with pytest.raises(ConfigurationError, match="no_such_db_tl"):
        await PostgresStore(_with(db="no_such_db_tl"), hub="h").open()


async def test_unreachable_server_fails_fast() -> None:
    started = time.monotonic()
    with pytest.raises(StoreError, match="1") as info:
        await PostgresStore(_with(port=1), hub="h").open()
    assert time.monotonic() - started < 6
    assert "s3cr3t-pw" not in str(info.value)


def test_malformed_url_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="malformed PostgreSQL URL"):
        PostgresStore("postgresql://u@[::1/db")
    with pytest.raises(TaskloomError):
        open_store("postgresql://u@[::1/db")


# -- values round-trip --------------------------------------------------------------------


async def test_times_round_trip_exactly(pg: PostgresStore) -> None:
    created = datetime(2031, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
    await pg.create_instance(_new("t", created))
    record = await pg.get_instance("t")
    assert record is not None
    assert record.created_at == created and record.created_at.utcoffset() == timedelta(0)
    leased = await pg.lease_episodes(created, 1, 30, "w")
    assert leased[0].messages[0].visible_at == created
    assert leased[0].messages[0].event.timestamp == created


# -- leasing under concurrency --------------------------------------------------------------


async def test_concurrent_workers_never_lease_the_same_instance(hub: str) -> None:
    stores = [PostgresStore(PG_URL, hub=hub, max_size=3) for _ in range(4)]
    await asyncio.gather(*(s.open() for s in stores))
    try:
        for n in range(60):
            await stores[0].create_instance(_new(f"i{n:03}"))

        async def drain(store: PostgresStore, owner: str) -> list[str]:
            got: list[str] = []
            while batch := await store.lease_episodes(T0, 3, 60, owner):
                got += [e.instance.instance_id for e in batch]
            return got

        results = await asyncio.gather(
            *(drain(s, f"w{k}") for k, s in enumerate(stores) for _ in range(2))
        )
        leased = [i for r in results for i in r]
        assert sorted(leased) == [f"i{n:03}" for n in range(60)]
    finally:
        await asyncio.gather(*(s.close() for s in stores))


async def test_repeated_commit_is_not_applied_twice(pg: PostgresStore) -> None:
    """The retry of a commit whose COMMIT reply was lost must be a no-op."""
    await pg.create_instance(_new("r"))
    [episode] = await pg.lease_episodes(T0, 1, 30, "w")
    record = episode.instance
    work = NewWorkItem("r", record.execution_id, 0, "act", None, T0)
    commit = EpisodeCommit(
        instance=dataclasses.replace(record, status=Status.RUNNING, history_len=2),
        lease_token=episode.lease_token,
        consumed=[m.id for m in episode.messages],
        history=[OrchestratorStarted(timestamp=T0), episode.messages[0].event],
        work_items=[work],
    )
    assert await pg.complete_episodes([commit], T0) == [True]
    assert await pg.complete_episodes([commit], T0) == [False]
    assert len(await pg.get_history("r")) == 2
    [item] = await pg.lease_activities(T0, 10, 30, "w")
    assert await pg.lease_activities(T0, 10, 30, "w") == []
    done = Message("r", TaskCompleted(timestamp=T0, task_scheduled_id=0, result="1"), T0)
    result = ActivityResult(item.id, item.lease_token, done)
    assert await pg.complete_activities([result], T0) == [True]
    assert await pg.complete_activities([result], T0) == [False]
    [again] = await pg.lease_episodes(T0, 1, 30, "w")
    assert [type(m.event) for m in again.messages] == [TaskCompleted]


# -- LISTEN/NOTIFY ----------------------------------------------------------------------


async def test_notify_wakes_a_store_object_elsewhere(hub: str) -> None:
    producer, consumer = PostgresStore(PG_URL, hub=hub), PostgresStore(PG_URL, hub=hub)
    bystander = PostgresStore(PG_URL, hub=hub + "other")
    for s in (producer, consumer, bystander):
        await s.open()
    try:
        woken, disturbed = asyncio.Event(), asyncio.Event()
        consumer.add_listener(woken.set)
        bystander.add_listener(disturbed.set)
        started = time.monotonic()
        await producer.create_instance(_new("n"))
        await asyncio.wait_for(woken.wait(), timeout=2)
        assert time.monotonic() - started < 2
        assert await consumer.has_runnable(T0)
        # A new timer far ahead also wakes others: their next_wakeup changed.
        woken.clear()
        await producer.enqueue_messages(
            [Message("n", OrchestratorStarted(T0), T0 + timedelta(hours=1))]
        )
        await asyncio.wait_for(woken.wait(), timeout=2)
        await asyncio.sleep(0.2)
        assert not disturbed.is_set()  # another hub's channel
    finally:
        for s in (producer, consumer, bystander):
            await s.close()


# -- surviving a server restart ---------------------------------------------------------


async def _kill_backends(hub: str) -> int:
    rows = await _admin(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE application_name = %s AND pid <> pg_backend_pid()",
        f"taskloom:{hub}",
    )
    return len(rows)


async def test_reconnects_after_all_connections_are_killed(
    hub: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="taskloom.storage.postgres")
    store = PostgresStore(PG_URL, hub=hub, min_size=2, max_size=4)
    await store.open()
    try:
        await store.create_instance(_new("before"))
        listener = store.listener
        assert listener is not None
        old_pid = listener.backend_pid
        assert await _kill_backends(hub) >= 2  # pool connections + the LISTEN connection

        # Pool operations carry on (the first one meets a dead connection and retries).
        await store.create_instance(_new("after"))
        assert {e.instance.instance_id for e in await store.lease_episodes(T0, 10, 30, "w")} == {
            "before",
            "after",
        }
        # The listener noticed, logged, reconnected and woke local workers.
        deadline = time.monotonic() + 10
        while listener.reconnects == 0 or not listener.connected.is_set():
            assert time.monotonic() < deadline, "listener did not reconnect"
            await asyncio.sleep(0.05)
        assert listener.backend_pid != old_pid
        assert any("LISTEN connection" in r.getMessage() for r in caplog.records)

        # Notifications from elsewhere reach the store again.
        woken = asyncio.Event()
        store.add_listener(woken.set)
        other = PostgresStore(PG_URL, hub=hub)
        other._kwargs = {**other._kwargs, "application_name": "taskloom-test-producer"}
        await other.open()
        try:
            await other.create_instance(_new("third"))
            await asyncio.wait_for(woken.wait(), timeout=3)
        finally:
            await other.close()
    finally:
        await store.close()


async def test_prefix_query_treats_like_wildcards_literally(pg: PostgresStore) -> None:
    for instance_id in ("a_1", "ab1", "a%2", "a\\3", "b_1"):
        await pg.create_instance(_new(instance_id))

    async def ids(prefix: str) -> list[str]:
        page = await pg.query_instances(InstanceQuery(instance_id_prefix=prefix), 10, None)
        return [r.instance_id for r in page.records]

    assert await ids("a_") == ["a_1"]
    assert await ids("a%") == ["a%2"]
    assert await ids("a\\") == ["a\\3"]
    assert await ids("a") == ["a%2", "a\\3", "a_1", "ab1"]  # byte order, as on SQLite


async def test_store_closed_during_call_fails_without_retrying(hub: str) -> None:
    store = PostgresStore(PG_URL, hub=hub)
    await store.open()
    await store.close()
    started = time.monotonic()
    with pytest.raises(StoreError):
        await store.has_runnable(T0)
    assert time.monotonic() - started < 1
