"""Messages nobody can consume never block the hub: events for unknown instances are
dropped, and one busy leased instance does not crowd the others out of leasing."""

from __future__ import annotations

from dataclasses import replace

from store_builders import T0, at, event, new_instance

from taskloom.storage.base import Store


async def test_events_for_unknown_instances_are_dropped(store: Store) -> None:
    await store.enqueue_messages([event("ghost", f"e{n}") for n in range(1200)])
    assert not await store.has_runnable(at(1))
    assert await store.next_wakeup(T0) is None
    await store.create_instance(new_instance("real"))
    leased = await store.lease_episodes(at(1), 10, 30.0, "w")
    assert [e.instance.instance_id for e in leased] == ["real"]
    # Created later, "ghost" starts clean: nothing sent before it existed waits for it.
    await store.create_instance(new_instance("ghost", created=at(2)))
    ghost = await store.lease_episodes(at(3), 10, 30.0, "w")
    assert [len(e.messages) for e in ghost] == [1]


async def test_a_busy_leased_instance_does_not_starve_the_others(store: Store) -> None:
    await store.create_instance(new_instance("busy"))
    await store.enqueue_messages([event("busy", f"e{n}") for n in range(1500)])
    first = await store.lease_episodes(at(1), 1, 30.0, "w")
    assert [e.instance.instance_id for e in first] == ["busy"]
    await store.create_instance(new_instance("quiet", created=at(2)))
    # "busy" is leased and holds the 1,500 oldest visible messages.
    second = await store.lease_episodes(at(3), 10, 30.0, "w")
    assert [e.instance.instance_id for e in second] == ["quiet"]


async def test_a_keyed_message_enqueued_twice_is_delivered_once(store: Store) -> None:
    await store.create_instance(new_instance("once"))
    retried = replace(event("once", "approve"), key="client-call-1")
    await store.enqueue_messages([retried])
    await store.enqueue_messages([retried])  # the same call, retried after a lost reply
    await store.enqueue_messages([replace(retried, key=None)])  # unkeyed: always added
    [episode] = await store.lease_episodes(at(1), 10, 30.0, "w")
    raised = [m for m in episode.messages if m.event.kind == "EventRaised"]
    assert len(raised) == 2
