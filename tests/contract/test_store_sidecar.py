"""Store operations the gRPC sidecar relies on: ``load_start_events`` (each instance's
``ExecutionStarted``, its tags, version and trace context, without loading its history:
from history once an episode ran, from the inbox before; large inputs resolved) and
``renew_episodes`` (a lease held by an SDK worker's open stream is extended, fenced on
its token)."""

from __future__ import annotations

import dataclasses

from store_builders import T0, at, commit, event, lease_all, new_instance
from test_store_payloads import big, large_start, pstore  # noqa: F401 (a fixture)

from taskloom import history as h
from taskloom.storage import Store
from taskloom.storage.base import NewInstance


def tagged(instance_id: str, tags: dict[str, str]) -> NewInstance:
    new = new_instance(instance_id)
    started = dataclasses.replace(new.start.event, tags=tags)
    return dataclasses.replace(new, start=dataclasses.replace(new.start, event=started))


async def test_starts_come_from_history_or_the_inbox(store: Store) -> None:
    await store.create_instance(tagged("ran", {"team": "a"}))
    await store.enqueue_messages([event("ran", "early")])
    episode = (await lease_all(store))["ran"]
    # A long history: the start is found among its rows, the others are not decoded.
    extra = [h.EventRaised(at(n), name=f"e{n}") for n in range(50)]
    history = [h.OrchestratorStarted(T0), *(m.event for m in episode.messages), *extra]
    assert await store.complete_episodes([commit(episode, history=history)], T0)
    await store.create_instance(tagged("waits", {"team": "b"}))
    found = await store.load_start_events(["ran", "waits", "unknown", "ran"])
    assert sorted(found) == ["ran", "waits"]
    assert found["ran"].tags == {"team": "a"} and found["ran"].instance_id == "ran"
    assert found["waits"].tags == {"team": "b"}
    assert await store.load_start_events([]) == {}


async def test_a_large_start_input_is_resolved(pstore: Store) -> None:  # noqa: F811
    value = big("start")
    await pstore.create_instance(large_start("big", value))
    assert (await pstore.load_start_events(["big"]))["big"].input == value
    episode = (await lease_all(pstore))["big"]
    assert await pstore.complete_episodes([commit(episode)], T0)
    assert (await pstore.load_start_events(["big"]))["big"].input == value


async def test_renewed_episode_leases_last_and_lost_ones_are_refused(store: Store) -> None:
    await store.create_instance(new_instance("held"))
    episode = (await lease_all(store, T0, lease_for=30))["held"]
    token = episode.lease_token
    assert await store.renew_episodes([("held", token), ("held", token + 1)], at(20), 30) == [
        True,
        False,
    ]
    assert await store.renew_episodes([], at(20), 30) == []
    # Past the first lease's end (30 s) but within the renewed one (50 s): still held.
    assert await store.lease_episodes(at(40), 10, 30, "other") == []
    assert await store.next_wakeup(at(40)) == at(50)
    assert list(await lease_all(store, at(51))) == ["held"]  # lapsed: another takes it
    # The first holder's lease is gone: renewing and committing are refused.
    assert await store.renew_episodes([("held", token)], at(52), 30) == [False]
    assert await store.complete_episodes([commit(episode)], at(52)) == [False]


async def test_a_committed_episode_is_not_renewed(store: Store) -> None:
    await store.create_instance(new_instance("done"))
    episode = (await lease_all(store))["done"]
    assert await store.complete_episodes([commit(episode)], T0) == [True]
    assert await store.renew_episodes([("done", episode.lease_token)], at(1), 30) == [False]
