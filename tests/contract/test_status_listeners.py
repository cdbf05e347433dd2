"""Status listeners: a store names the instances whose status its own writes changed, and
says None for a change it heard of from elsewhere (waiting clients rely on both)."""

from __future__ import annotations

import asyncio
from collections.abc import Collection

from store_builders import T0, commit, event, lease_all, new_instance

from taskloom.models import Status
from taskloom.storage import Store, open_store


class Heard:
    def __init__(self) -> None:
        self.calls: list[set[str] | None] = []
        self.any = asyncio.Event()

    def __call__(self, changed: Collection[str] | None) -> None:
        self.calls.append(None if changed is None else set(changed))
        self.any.set()

    async def wait_for(self, wanted: set[str] | None, timeout: float = 10.0) -> None:
        async def until() -> None:
            while wanted not in self.calls:
                self.any.clear()
                await self.any.wait()

        await asyncio.wait_for(until(), timeout)


async def test_own_writes_name_the_instances_whose_status_changed(store: Store) -> None:
    heard = Heard()
    store.add_status_listener(heard)
    await store.create_instance(new_instance("a"))
    assert heard.calls == [{"a"}]

    # An event changes no status; the episode that runs it does.
    await store.enqueue_messages([event("a")])
    assert heard.calls == [{"a"}]
    episodes = await lease_all(store)
    running = commit(episodes["a"], status=Status.RUNNING, now=T0)
    assert await store.complete_episodes([running], T0) == [True]
    assert heard.calls == [{"a"}, {"a"}]

    store.remove_status_listener(heard)
    await store.create_instance(new_instance("b"))
    assert heard.calls == [{"a"}, {"a"}]


async def test_an_episode_that_keeps_the_status_names_nobody(store: Store) -> None:
    await store.create_instance(new_instance("a"))
    episodes = await lease_all(store)
    assert await store.complete_episodes([commit(episodes["a"])], T0) == [True]
    heard = Heard()
    store.add_status_listener(heard)
    await store.enqueue_messages([event("a")])
    episodes = await lease_all(store)
    same = commit(episodes["a"], prior_status=Status.RUNNING)  # as the worker says it
    assert await store.complete_episodes([same], T0) == [True]
    assert heard.calls == []


async def test_a_write_through_another_store_object_is_heard_as_unknown(
    store: Store, store_url: str, hub: str
) -> None:
    heard = Heard()
    store.add_status_listener(heard)
    other = open_store(store_url, hub=hub)
    await other.open()
    try:
        await other.create_instance(new_instance("elsewhere"))
        await heard.wait_for(None)
    finally:
        await other.close()
    assert {"elsewhere"} not in heard.calls
