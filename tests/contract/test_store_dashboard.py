"""The store queries the dashboard adds: per-status counts and the version filter."""

from __future__ import annotations

import dataclasses

from store_builders import at, new_instance

from taskloom.models import Status
from taskloom.storage.base import InstanceQuery, Store


async def _create(store: Store, iid: str, *, version: str | None, status: Status) -> None:
    new = new_instance(iid, created=at(len(iid)))
    record = dataclasses.replace(new.record, version=version, status=status)
    await store.create_instance(dataclasses.replace(new, record=record))


async def test_counts_per_status_leave_out_entities_and_empty_statuses(store: Store) -> None:
    assert await store.count_instances() == {}
    await _create(store, "a", version=None, status=Status.PENDING)
    await _create(store, "bb", version="1", status=Status.PENDING)
    await _create(store, "ccc", version="2", status=Status.COMPLETED)
    await _create(store, "@counter@x", version=None, status=Status.RUNNING)  # an entity
    assert await store.count_instances() == {Status.PENDING: 2, Status.COMPLETED: 1}


async def test_the_version_filter_and_empty_for_none(store: Store) -> None:
    await _create(store, "a", version=None, status=Status.PENDING)
    await _create(store, "bb", version="1.0", status=Status.PENDING)
    await _create(store, "ccc", version="2.0", status=Status.PENDING)

    async def ids(version: str | None) -> list[str]:
        page = await store.query_instances(InstanceQuery(version=version), 10, None)
        return [r.instance_id for r in page.records]

    assert await ids("1.0") == ["bb"]
    assert await ids("") == ["a"]
    assert await ids(None) == ["a", "bb", "ccc"]
    assert await ids("3") == []


async def test_inspect_names_the_lease_holder_and_the_inbox(store: Store) -> None:
    assert await store.inspect_instance("nobody") is None
    await _create(store, "a", version=None, status=Status.PENDING)
    free = await store.inspect_instance("a")
    assert free is not None
    assert free.lease_owner is None and free.messages == 1 and free.work == []
    leased = await store.lease_episodes(at(10), 1, 30.0, "worker-1")
    assert [e.instance.instance_id for e in leased] == ["a"]
    held = await store.inspect_instance("a")
    assert held is not None
    assert held.lease_owner == "worker-1"
    assert held.lease_expires == at(40)
    assert held.messages == 1 and held.next_message_at is not None


async def test_newest_first_pages_walk_back_through_ties(store: Store) -> None:
    for i in range(7):  # two instances per instant: ties broken by id, backwards too
        new = new_instance(f"n{i}", created=at(i // 2))
        await store.create_instance(new)
    query = InstanceQuery(newest_first=True)
    seen: list[str] = []
    token = None
    while True:
        page = await store.query_instances(query, 3, token)
        seen += [r.instance_id for r in page.records]
        token = page.continuation_token
        if token is None:
            break
    assert seen == ["n6", "n5", "n4", "n3", "n2", "n1", "n0"]
    oldest = await store.query_instances(InstanceQuery(), 3, None)
    assert [r.instance_id for r in oldest.records] == ["n0", "n1", "n2"]
