"""Eager dispatch in the storage contract: work leased in the commit that creates it."""

from __future__ import annotations

from datetime import timedelta

from store_builders import T0, at, commit, event, lease_all, new_instance
from test_store import result_for, work

from taskloom.storage import Store
from taskloom.storage.base import ActivityResult, EagerActivities, EagerEpisodes, Message


async def _running(store: Store, iid: str) -> None:
    await store.create_instance(new_instance(iid))
    episode = (await lease_all(store))[iid]
    assert await store.complete_episodes([commit(episode)], T0) == [True]


async def test_eager_activities_are_leased_to_the_committer(store: Store) -> None:
    await store.create_instance(new_instance("e1"))
    episode = (await lease_all(store))["e1"]
    eager = EagerActivities("me", at(30), limit=2)
    items = [work("e1", 1), work("e1", 2), work("e1", 3)]
    done = await store.complete_episodes([commit(episode, work_items=items)], T0, eager)
    assert done == [True]
    assert [(w.task_id, w.lease_token, w.attempt) for w in eager.leased] == [(1, 1, 1), (2, 1, 1)]
    # Only the item beyond the limit is left for other workers.
    others = await store.lease_activities(at(1), 10, 30, "other")
    assert [w.task_id for w in others] == [3]
    # A leased item completes with its token and its result reaches the inbox.
    first = eager.leased[0]
    result = ActivityResult(first.id, first.lease_token, result_for("e1", 1))
    assert await store.complete_activities([result], at(2)) == [True]
    assert [m.event for m in (await lease_all(store, at(3)))["e1"].messages] == [
        result.message.event
    ]


async def test_eager_activity_lease_lapses_like_any_other(store: Store) -> None:
    await store.create_instance(new_instance("e2"))
    episode = (await lease_all(store))["e2"]
    eager = EagerActivities("dead", at(10), limit=5)
    await store.complete_episodes([commit(episode, work_items=[work("e2")])], T0, eager)
    assert await store.lease_activities(at(9), 10, 30, "other") == []
    taken = await store.lease_activities(at(11), 10, 30, "other")
    assert [(w.task_id, w.attempt) for w in taken] == [(1, 2)]
    assert taken[0].lease_token != eager.leased[0].lease_token
    stale = ActivityResult(eager.leased[0].id, eager.leased[0].lease_token, result_for("e2"))
    assert await store.complete_activities([stale], at(12)) == [False]


async def test_a_stale_commit_leases_nothing(store: Store) -> None:
    await store.create_instance(new_instance("e3"))
    episode = (await lease_all(store, lease_for=1))["e3"]
    (await lease_all(store, at(2)))["e3"]  # taken over
    eager = EagerActivities("me", at(30), limit=5)
    assert await store.complete_episodes([commit(episode, work_items=[work("e3")])], T0, eager) == [
        False
    ]
    assert eager.leased == []
    assert await store.lease_activities(at(3), 10, 30, "other") == []


async def test_eager_episode_leases_the_receiving_instance(store: Store) -> None:
    await store.create_instance(new_instance("r1"))
    episode = (await lease_all(store))["r1"]
    await store.complete_episodes([commit(episode, work_items=[work("r1")])], T0)
    item = (await store.lease_activities(at(1), 10, 30, "me"))[0]
    await store.enqueue_messages([event("r1", "also")])
    eager = EagerEpisodes("me", at(2), 30)
    result = ActivityResult(item.id, item.lease_token, result_for("r1"))
    assert await store.complete_activities([result], at(2), eager) == [True]
    assert [e.instance.instance_id for e in eager.leased] == ["r1"]
    kinds = [m.event.kind for m in eager.leased[0].messages]
    assert kinds == ["EventRaised", "TaskCompleted"]  # every visible message, oldest first
    # It is a real lease: nobody else gets the instance until it is committed.
    assert await lease_all(store, at(3)) == {}
    leased = eager.leased[0]
    assert await store.complete_episodes([commit(leased, now=at(3))], at(3)) == [True]
    assert await lease_all(store, at(4)) == {}


async def test_eager_episode_skips_an_instance_someone_holds(store: Store) -> None:
    await store.create_instance(new_instance("r2"))
    episode = (await lease_all(store))["r2"]
    await store.complete_episodes([commit(episode, work_items=[work("r2")])], T0)
    item = (await store.lease_activities(at(1), 10, 30, "me"))[0]
    await store.enqueue_messages([event("r2")])
    held = (await lease_all(store, at(2)))["r2"]
    eager = EagerEpisodes("me", at(3), 30)
    result = ActivityResult(item.id, item.lease_token, result_for("r2"))
    assert await store.complete_activities([result], at(3), eager) == [True]
    assert eager.leased == []
    # The holder commits; the result is still in the inbox for the next episode.
    assert await store.complete_episodes([commit(held, now=at(4))], at(4)) == [True]
    later = (await lease_all(store, at(5)))["r2"]
    assert [m.event.kind for m in later.messages] == ["TaskCompleted"]


async def test_a_stale_result_leases_nothing_new(store: Store) -> None:
    await _running(store, "r3")
    stale = ActivityResult(999_999, 1, result_for("r3"))
    eager = EagerEpisodes("me", at(1), 30)
    assert await store.complete_activities([stale], at(1), eager) == [False]
    assert eager.leased == []
    assert await lease_all(store, at(2)) == {}


async def test_at_once_messages_ignore_the_readers_clock(store: Store) -> None:
    from taskloom.storage.base import AT_ONCE

    await _running(store, "c1")
    later = event("c1", "from-the-future", T0 + timedelta(hours=1))
    await store.enqueue_messages([Message(later.instance_id, later.event, AT_ONCE)])
    leased = (await lease_all(store, T0 - timedelta(hours=1)))["c1"]
    assert [m.event.name for m in leased.messages] == ["from-the-future"]  # type: ignore[attr-defined]
