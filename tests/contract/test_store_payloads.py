"""Large payloads (storage/large.py): values above the threshold live once, compressed, in
the payload table; rows hold a small marker; reads resolve it; purge removes them; values
above the hard limit are refused with nothing written. Both backends."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from store_builders import T0, commit, lease_all, new_instance

from taskloom.errors import PayloadTooLargeError, SerializationError
from taskloom.history import (
    EventRaised,
    ExecutionCompleted,
    OrchestratorStarted,
    TaskCompleted,
    TaskScheduled,
)
from taskloom.models import Status
from taskloom.storage import Store, open_store
from taskloom.storage.base import (
    ActivityResult,
    InstanceQuery,
    Message,
    NewInstance,
    NewWorkItem,
)
from taskloom.storage.large import MARKER

THRESHOLD = 4096
LIMIT = 1_000_000


def big(tag: str, size: int = 200_000) -> str:
    """Converter-style JSON text of about ``size`` bytes, distinct per ``tag``."""
    return json.dumps({"tag": tag, "rows": [f"{tag}-{n}" for n in range(size // 12)]})


@pytest.fixture
async def pstore(store_url: str, hub: str) -> AsyncIterator[Store]:
    s = open_store(store_url, hub=hub, payload_threshold=THRESHOLD, payload_limit=LIMIT)
    await s.open()
    try:
        yield s
    finally:
        await s.close()


async def raw(store: Store, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    """Rows of a raw query; ``{s}`` is the table prefix, ``?`` the placeholder."""
    if type(store).__name__ == "SqliteStore":
        conn = store._connection()  # type: ignore[attr-defined]
        return [tuple(r) for r in conn.execute(sql.replace("{s}", ""), params).fetchall()]

    async def op(conn: Any) -> list[tuple[Any, ...]]:
        text = sql.replace("{s}", f"{store._s}.").replace("?", "%s")  # type: ignore[attr-defined]
        cur = await conn.execute(text, list(params))
        return list(await cur.fetchall())

    return await store._run(op)  # type: ignore[attr-defined,no-any-return]


async def longest(store: Store, table: str, column: str) -> int:
    rows = await raw(
        store, f"SELECT MAX(LENGTH({column})) FROM {{s}}{table} WHERE hub = ?", store.hub
    )
    return int(rows[0][0] or 0)


async def payload_rows(store: Store, instance_id: str) -> list[tuple[Any, ...]]:
    return await raw(
        store,
        "SELECT id, size, LENGTH(data) FROM {s}payloads WHERE hub = ? AND instance_id = ?",
        store.hub,
        instance_id,
    )


def large_start(instance_id: str, value: str) -> NewInstance:
    new = new_instance(instance_id)
    started = dataclasses.replace(new.start.event, input=value)
    return NewInstance(
        dataclasses.replace(new.record, input=value), dataclasses.replace(new.start, event=started)
    )


async def test_every_large_value_round_trips_and_rows_stay_small(pstore: Store) -> None:
    store = pstore
    start, event, output, status, arg, result = (
        big(t) for t in ("start", "event", "output", "status", "arg", "result")
    )
    await store.create_instance(large_start("i", start))
    await store.enqueue_messages([Message("i", EventRaised(T0, name="e", input=event), T0)])
    episode = (await lease_all(store))["i"]
    assert episode.instance.input == start
    assert [m.event.input for m in episode.messages] == [start, event]  # type: ignore[attr-defined]

    history = [
        OrchestratorStarted(T0),
        *(m.event for m in episode.messages),
        TaskScheduled(T0, event_id=0, name="act", input=arg),
    ]
    work = NewWorkItem("i", "i:1", 0, "act", arg, T0)
    c = commit(episode, history=history, work_items=[work])
    c = dataclasses.replace(c, instance=dataclasses.replace(c.instance, custom_status=status))
    assert await store.complete_episodes([c], T0) == [True]

    (item,) = await store.lease_activities(T0, 10, 30, "w")
    assert item.input == arg
    done = Message("i", TaskCompleted(T0, task_scheduled_id=0, result=result), T0, "i:1")
    assert await store.complete_activities([ActivityResult(item.id, item.lease_token, done)], T0)

    episode = (await lease_all(store))["i"]
    assert episode.instance.custom_status == status
    assert [m.event.result for m in episode.messages] == [result]  # type: ignore[attr-defined]
    final = [
        OrchestratorStarted(T0),
        episode.messages[0].event,
        ExecutionCompleted(T0, status=Status.COMPLETED, result=output),
    ]
    c = commit(episode, status=Status.COMPLETED, history=final)
    c = dataclasses.replace(c, instance=dataclasses.replace(c.instance, output=output))
    assert await store.complete_episodes([c], T0) == [True]

    record = await store.get_instance("i")
    assert record is not None
    assert (record.input, record.output, record.custom_status) == (start, output, status)
    (listed,) = (await store.query_instances(InstanceQuery(), 10, None)).records
    assert listed == record
    stored = await store.get_history("i")
    values = [getattr(e, "input", None) or getattr(e, "result", None) for e in stored]
    assert [v for v in values if v] == [start, event, arg, result, output]
    assert (await store.load_histories(["i"]))["i"] == stored

    # Rows hold markers only; each value is stored once, compressed.
    assert await longest(store, "history", "event") < 400
    for column in ("input", "output", "custom_status"):
        assert await longest(store, "instances", column) == len(MARKER) + 64
    rows = await payload_rows(store, "i")
    assert sorted(size for _, size, _ in rows) == sorted(
        len(v) for v in (start, event, output, status, arg, result)
    )
    assert all(packed * 3 < size for _, size, packed in rows)


async def test_small_values_stay_inline(pstore: Store) -> None:
    value = json.dumps("x" * (THRESHOLD - 2))
    assert len(value) == THRESHOLD
    await pstore.create_instance(large_start("s", value))
    assert await payload_rows(pstore, "s") == []
    record = await pstore.get_instance("s")
    assert record is not None and record.input == value


async def test_purge_removes_the_payloads_of_purged_instances_only(pstore: Store) -> None:
    shared = big("same")  # the same content in two instances: each keeps its own copy
    for iid in ("a", "b"):
        await pstore.create_instance(large_start(iid, shared))
    episodes = await lease_all(pstore)
    done = commit(
        episodes["a"],
        status=Status.COMPLETED,
        history=[OrchestratorStarted(T0), episodes["a"].messages[0].event],
    )
    assert await pstore.complete_episodes([done], T0) == [True]
    await pstore.abandon_episode("b", episodes["b"].lease_token)
    assert len(await payload_rows(pstore, "a")) == len(await payload_rows(pstore, "b")) == 1

    assert await pstore.purge_instances(InstanceQuery(), ["a", "b"]) == 1  # b still runs
    assert await payload_rows(pstore, "a") == []
    record = await pstore.get_instance("b")
    assert record is not None and record.input == shared
    assert (await lease_all(pstore))["b"].messages[0].event.input == shared  # type: ignore[attr-defined]


async def test_over_the_limit_is_refused_naming_size_and_limit(pstore: Store) -> None:
    huge = json.dumps("y" * LIMIT)
    with pytest.raises(PayloadTooLargeError) as caught:
        await pstore.create_instance(large_start("x", huge))
    assert isinstance(caught.value, SerializationError) and isinstance(caught.value, ValueError)
    assert caught.value.size == len(huge) and caught.value.limit == LIMIT
    assert f"{len(huge):,} bytes" in str(caught.value) and f"{LIMIT:,}" in str(caught.value)
    assert await pstore.get_instance("x") is None
    assert await payload_rows(pstore, "x") == []

    await pstore.create_instance(large_start("y", big("fine")))
    with pytest.raises(PayloadTooLargeError):
        await pstore.enqueue_messages([Message("y", EventRaised(T0, name="e", input=huge), T0)])
    episode = (await lease_all(pstore))["y"]
    assert len(episode.messages) == 1  # the refused event was not enqueued

    c = commit(episode, status=Status.COMPLETED)
    c = dataclasses.replace(c, instance=dataclasses.replace(c.instance, output=huge))
    with pytest.raises(PayloadTooLargeError, match="output of the instance"):
        await pstore.complete_episodes([c], T0)
    record = await pstore.get_instance("y")
    assert record is not None and record.status is Status.PENDING and record.output is None
    assert await pstore.get_history("y") == []
    assert len(await payload_rows(pstore, "y")) == 1


async def test_default_threshold_is_64_kib(store: Store) -> None:
    await store.create_instance(large_start("d1", json.dumps("z" * 60_000)))
    await store.create_instance(large_start("d2", json.dumps("z" * 70_000)))
    assert await payload_rows(store, "d1") == []
    assert len(await payload_rows(store, "d2")) == 1
