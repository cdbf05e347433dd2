"""Work items carry the traceparent their scheduler gave them, leased or eager."""

from __future__ import annotations

import dataclasses

from store_builders import T0, at, commit, lease_all, new_instance
from test_store import work

from taskloom.storage import Store
from taskloom.storage.base import EagerActivities

PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


async def test_trace_parent_reaches_the_leased_item(store: Store) -> None:
    await store.create_instance(new_instance("t1"))
    episode = (await lease_all(store))["t1"]
    traced = dataclasses.replace(work("t1", 1), trace_parent=PARENT)
    items = [traced, work("t1", 2)]
    assert await store.complete_episodes([commit(episode, work_items=items)], T0) == [True]
    leased = await store.lease_activities(at(1), 10, 30, "w")
    assert {w.task_id: w.trace_parent for w in leased} == {1: PARENT, 2: None}


async def test_trace_parent_reaches_the_eager_item(store: Store) -> None:
    await store.create_instance(new_instance("t2"))
    episode = (await lease_all(store))["t2"]
    eager = EagerActivities("me", at(30), limit=1)
    items = [dataclasses.replace(work("t2", k), trace_parent=PARENT) for k in (1, 2)]
    assert await store.complete_episodes([commit(episode, work_items=items)], T0, eager) == [True]
    assert [w.trace_parent for w in eager.leased] == [PARENT]
    [other] = await store.lease_activities(at(1), 10, 30, "other")
    assert other.trace_parent == PARENT


async def test_scheduled_at_reaches_the_leased_and_the_eager_item(store: Store) -> None:
    await store.create_instance(new_instance("t3"))
    episode = (await lease_all(store))["t3"]
    eager = EagerActivities("me", at(30), limit=1)
    items = [dataclasses.replace(work("t3", k), scheduled_at=at(k)) for k in (1, 2)]
    assert await store.complete_episodes([commit(episode, work_items=items)], T0, eager) == [True]
    assert [w.scheduled_at for w in eager.leased] == [at(1)]
    [other] = await store.lease_activities(at(3), 10, 30, "other")
    assert other.scheduled_at == at(2)
