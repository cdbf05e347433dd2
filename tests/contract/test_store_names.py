"""Name filters in the storage contract: a worker that serves a shared hub leases only
the orchestrations, entities (``@name``) and activities it registered."""

from __future__ import annotations

from store_builders import T0, at, commit, event, lease_all, new_instance
from test_store import result_for, work

from taskloom.storage import Store
from taskloom.storage.base import ActivityResult, EagerEpisodes, NewWorkItem


def _ids(episodes: list[object]) -> list[str]:
    return sorted(e.instance.instance_id for e in episodes)  # type: ignore[attr-defined]


async def test_lease_episodes_takes_only_the_named_orchestrations(store: Store) -> None:
    await store.create_instance(new_instance("a1", name="alpha"))
    await store.create_instance(new_instance("b1", name="beta"))
    assert await store.has_runnable(T0, episode_names={"alpha"})
    leased = await store.lease_episodes(T0, 10, 30, "w", names={"alpha"})
    assert _ids(leased) == ["a1"]
    # beta stays pending for a worker that runs it; nothing left for this one.
    assert await store.lease_episodes(T0, 10, 30, "w", names={"alpha"}) == []
    assert not await store.has_runnable(T0, episode_names={"alpha", "gamma"})
    assert await store.has_runnable(T0)
    assert _ids(await store.lease_episodes(T0, 10, 30, "w2", names=["beta"])) == ["b1"]


async def test_no_names_means_every_name_and_empty_means_none(store: Store) -> None:
    await store.create_instance(new_instance("n1", name="alpha"))
    assert await store.lease_episodes(T0, 10, 30, "w", names=()) == []
    assert not await store.has_runnable(T0, episode_names=(), activity_names=())
    assert _ids(await store.lease_episodes(T0, 10, 30, "w", names=None)) == ["n1"]


async def test_entities_are_named_with_an_at_sign(store: Store) -> None:
    await store.create_instance(new_instance("counter", name="counter"))
    await store.enqueue_messages([event("@counter@k1", "op")])
    entity = await store.lease_episodes(T0, 10, 30, "w", names={"@counter"})
    assert _ids(entity) == ["@counter@k1"]
    orchestration = await store.lease_episodes(T0, 10, 30, "w", names={"counter"})
    assert _ids(orchestration) == ["counter"]


async def test_lease_activities_takes_only_the_named_activities(store: Store) -> None:
    await store.create_instance(new_instance("acts"))
    episode = (await lease_all(store))["acts"]
    other = NewWorkItem("acts", "acts:1", 2, "other", None, T0)
    assert await store.complete_episodes([commit(episode, work_items=[work("acts"), other])], T0)
    assert await store.has_runnable(T0, episode_names=(), activity_names={"act"})
    items = await store.lease_activities(T0, 10, 30, "w", names={"act"})
    assert [(w.name, w.task_id) for w in items] == [("act", 1)]
    assert await store.lease_activities(T0, 10, 30, "w", names={"act"}) == []
    assert not await store.has_runnable(T0, episode_names=(), activity_names={"act"})
    rest = await store.lease_activities(T0, 10, 30, "w2", names={"other", "more"})
    assert [w.name for w in rest] == ["other"]


async def test_eager_episodes_respect_names(store: Store) -> None:
    await store.create_instance(new_instance("eager", name="alpha"))
    episode = (await lease_all(store))["eager"]
    assert await store.complete_episodes([commit(episode, work_items=[work("eager")])], T0)
    [item] = await store.lease_activities(at(1), 10, 30, "w")
    result = ActivityResult(item.id, item.lease_token, result_for("eager"))
    eager = EagerEpisodes("w", at(2), 30, names={"beta"})
    assert await store.complete_activities([result], at(2), eager) == [True]
    assert eager.leased == []  # not ours to run: left for the worker of "alpha"
    assert _ids(await store.lease_episodes(at(3), 10, 30, "w2", names={"alpha"})) == ["eager"]
