"""The PostgreSQL store's hot statements keep index-driven plans whatever the statistics.

A worker's connections cache one generic plan per statement, built after a few runs on
whatever the tables held then and kept until the tables are next analysed. Built on an
empty hub, such a plan once scanned the whole instances table per commit (and history
per start), which made a burst on a grown hub up to ten times slower. Small batches now
run under ``plan_setting``: no sequential scans of the store's tables, so the cached
plan looks rows up by index however the hub grows.
The test builds the generic plans on freshly vacuumed empty tables, where the statistics
make a scan look cheapest, and looks for scans in them. Reads by id are never prepared,
so they have no cached plan to go stale.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from backends import PG_URL, require_postgres
from psycopg._queries import PostgresQuery
from psycopg.adapt import Transformer

from taskloom.history import ExecutionStarted, OrchestratorStarted, TaskCompleted
from taskloom.models import Status
from taskloom.storage.base import (
    ActivityResult,
    EpisodeCommit,
    InstanceRecord,
    Message,
    NewInstance,
    NewWorkItem,
)
from taskloom.storage.postgres import PostgresStore
from taskloom.storage.postgres_batch import (
    activity_params,
    activity_sql,
    commit_params,
    commit_sql,
    eager_lease_sql,
    lease_activities_sql,
    lease_episodes_sql,
    leased_inboxes_sql,
    version_params,
)
from taskloom.storage.postgres_inline import inline_params, inline_sql
from taskloom.storage.postgres_plans import GENERIC_UP_TO, plan_setting
from taskloom.storage.postgres_starts import starts_params, starts_sql

pytestmark = pytest.mark.postgres

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
HUB = "plans"
HOT = {"instances", "messages", "history", "work_items"}


@pytest.fixture(autouse=True)
def _needs_postgres() -> None:
    require_postgres()


@pytest.fixture
async def schema() -> AsyncIterator[str]:
    """A migrated schema whose hot tables were vacuumed and analysed while empty."""
    name = "tl_" + uuid.uuid4().hex[:10]
    store = PostgresStore(PG_URL, hub=HUB, schema=name)
    await store.open()
    await store.close()
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        for table in sorted(HOT):
            conn.execute(f'VACUUM ANALYZE "{name}".{table}')
    yield name
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


def record(iid: str) -> InstanceRecord:
    return InstanceRecord(
        instance_id=iid,
        execution_id=f"{iid}:1",
        name="orch",
        status=Status.RUNNING,
        created_at=NOW,
        updated_at=NOW,
        history_len=2,
    )


def episode_commit(iid: str) -> EpisodeCommit:
    work = NewWorkItem(iid, f"{iid}:1", 0, "act", '"x"', NOW)
    return EpisodeCommit(
        instance=record(iid),
        lease_token=1,
        consumed=[1],
        history=[OrchestratorStarted(timestamp=NOW)],
        work_items=[work],
        messages=[Message(f"{iid}-child", OrchestratorStarted(timestamp=NOW), NOW)],
    )


def result(iid: str) -> ActivityResult:
    done = TaskCompleted(timestamp=NOW, task_scheduled_id=0, result='"y"')
    return ActivityResult(7, 1, Message(iid, done, NOW, f"{iid}:1"))


def start(iid: str) -> NewInstance:
    started = ExecutionStarted(timestamp=NOW, name="orch", instance_id=iid, execution_id="e")
    pending = InstanceRecord(iid, "e", "orch", Status.PENDING, NOW, NOW, input='"in"')
    return NewInstance(pending, Message(iid, started, NOW, "e"))


def lease_params(ids: list[str]) -> dict[str, Any]:
    return {
        "hub": HUB,
        "now": NOW,
        "limit": 1,
        "scan": 1000,
        "owner": "w",
        "expires": NOW + timedelta(seconds=30),
        "ids": ids,
        **version_params(None),
    }


STATEMENTS: dict[str, tuple[Callable[[str], str], Callable[[], dict[str, Any]]]] = {
    "start": (starts_sql, lambda: starts_params(HUB, [start("a")])),
    "lease": (lease_episodes_sql, lambda: lease_params([])),
    "inboxes": (leased_inboxes_sql, lambda: lease_params([])),
    "activity lease": (lease_activities_sql, lambda: {**lease_params([]), "names": None}),
    "commit": (commit_sql, lambda: commit_params(HUB, [episode_commit("a")])),
    "result": (activity_sql, lambda: activity_params(HUB, [result("a")])),
    "eager lease": (eager_lease_sql, lambda: lease_params(["a"])),
    "inline": (
        inline_sql,
        lambda: inline_params(HUB, [episode_commit("a")], {"a": 1}, [result("a")], None, NOW),
    ),
}


def scans(plan: dict[str, Any]) -> Iterator[str]:
    """The hot tables that ``plan`` (an EXPLAIN JSON node) reads by sequential scan."""
    if plan.get("Node Type") == "Seq Scan" and plan.get("Relation Name") in HOT:
        yield plan["Relation Name"]
    for child in plan.get("Plans", []):
        yield from scans(child)


def generic_plan(
    conn: psycopg.Connection[Any], sql: str, params: dict[str, Any], *, settings: bool = True
) -> Any:
    """The generic plan of ``sql`` (under the settings of a one-row batch, unless not
    ``settings``), as a worker's connection caches it after a few runs (forced here)."""
    if settings:
        conn.execute(*plan_setting(1))
    conn.execute("SET LOCAL plan_cache_mode = force_generic_plan")
    query = PostgresQuery(Transformer(conn))
    query.convert(sql, params)  # the statement as the store sends it, with its types
    name = "probe_" + uuid.uuid4().hex[:8]
    prepared = conn.pgconn.prepare(name.encode(), query.query, query.types)
    assert prepared.error_message == b"", prepared.error_message
    # A generic plan does not look at the values: NULLs of the prepared types do.
    nulls = ", ".join(["NULL"] * len(query.types))
    res = conn.pgconn.exec_(f"EXPLAIN (FORMAT JSON) EXECUTE {name}({nulls})".encode())
    assert res.error_message == b"", res.error_message
    plan = json.loads(res.get_value(0, 0) or b"null")[0]["Plan"]
    conn.rollback()
    return plan


@pytest.mark.parametrize("statement", sorted(STATEMENTS))
def test_small_batches_plan_no_scan_of_a_hot_table(schema: str, statement: str) -> None:
    sql, params = STATEMENTS[statement]
    with psycopg.connect(PG_URL, options="-c TimeZone=UTC") as conn:
        plan = generic_plan(conn, sql(f'"{schema}"'), params())
    assert list(scans(plan)) == [], json.dumps(plan, indent=1)


def test_left_to_the_statistics_a_start_would_scan_history(schema: str) -> None:
    """What the settings prevent (and that the check above can see it)."""
    with psycopg.connect(PG_URL, options="-c TimeZone=UTC") as conn:
        sql, params = STATEMENTS["start"]
        plan = generic_plan(conn, sql(f'"{schema}"'), params(), settings=False)
    assert "history" in set(scans(plan))


def test_large_batches_get_custom_plans_and_may_scan() -> None:
    assert plan_setting(GENERIC_UP_TO)[1] == ["off", "auto"]
    assert plan_setting(GENERIC_UP_TO + 1)[1] == ["on", "force_custom_plan"]


async def test_reads_by_id_are_never_prepared(schema: str) -> None:
    """A waiting client's reads are planned per call: after many more calls than
    psycopg's threshold, its one connection holds no prepared read of a hot table."""
    store = PostgresStore(PG_URL, hub=HUB, schema=schema, min_size=1, max_size=1)
    await store.open()
    try:
        for _ in range(12):
            await store.get_instance("a")
            await store.get_statuses(["a", "b"])
            await store.load_histories(["a"])
            await store.load_start_events(["a"])
        assert store._pool is not None
        async with store._pool.connection() as conn:
            cur = await conn.execute("SELECT statement FROM pg_prepared_statements")
            prepared = [row[0] for row in await cur.fetchall()]
    finally:
        await store.close()
    assert not [p for p in prepared if any(f".{table}" in p for table in HOT)], prepared
