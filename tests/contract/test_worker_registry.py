"""The worker registry (heartbeat, remove, list live ones) on every backend."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from store_builders import T0, at

from taskloom.storage import Store, open_store
from taskloom.storage.host_base import HostStore, WorkerRecord


@pytest.fixture
def host(store: Store) -> HostStore:
    assert isinstance(store, HostStore), f"{store!r} does not implement HostStore"
    return store


def worker(worker_id: str, *, seen: float = 0, ttl: float = 15, **changes: object) -> WorkerRecord:
    record = WorkerRecord(
        worker_id=worker_id,
        host="host-a",
        pid=4242,
        kind="native",
        orchestrations=("order", "Ship it"),
        activities=("charge",),
        entities=(),
        slots=100,
        busy=0,
        started_at=T0,
        last_seen=at(seen),
        expires_at=at(seen + ttl),
        version="1.2",
    )
    return dataclasses.replace(record, **changes)  # type: ignore[arg-type]


async def test_heartbeat_then_list_round_trips_every_field(host: HostStore) -> None:
    record = worker("w1")
    await host.heartbeat_worker(record)
    assert await host.list_workers(at(1)) == [record]


async def test_heartbeat_replaces_the_row(host: HostStore) -> None:
    await host.heartbeat_worker(worker("w1"))
    later = worker("w1", seen=5, busy=7, activities=("charge", "refund"), version=None)
    await host.heartbeat_worker(later)
    assert await host.list_workers(at(6)) == [later]


async def test_list_is_ordered_by_start_then_id(host: HostStore) -> None:
    await host.heartbeat_worker(worker("b", started_at=at(1)))
    await host.heartbeat_worker(worker("c", started_at=T0))
    await host.heartbeat_worker(worker("a", started_at=at(1)))
    assert [w.worker_id for w in await host.list_workers(at(2))] == ["c", "a", "b"]


async def test_remove_deletes_the_row(host: HostStore) -> None:
    await host.heartbeat_worker(worker("w1"))
    await host.heartbeat_worker(worker("w2"))
    assert await host.remove_worker("w1")
    assert not await host.remove_worker("w1")
    assert [w.worker_id for w in await host.list_workers(at(1))] == ["w2"]


async def test_expired_rows_are_left_out_and_deleted(host: HostStore) -> None:
    await host.heartbeat_worker(worker("killed", ttl=10))
    await host.heartbeat_worker(worker("alive", seen=9, ttl=10))
    assert [w.worker_id for w in await host.list_workers(at(9.9))] == ["alive", "killed"]
    # At its expiry the killed worker is gone; its row is deleted, not only hidden.
    assert [w.worker_id for w in await host.list_workers(at(10))] == ["alive"]
    assert not await host.remove_worker("killed")
    # A heartbeat after all (a worker that was only slow) brings it back.
    await host.heartbeat_worker(worker("killed", seen=11, ttl=10))
    assert [w.worker_id for w in await host.list_workers(at(12))] == ["alive", "killed"]


async def test_hubs_do_not_see_each_other(host: HostStore, store_url: str, hub: str) -> None:
    other = open_store(store_url, hub=hub + "x")
    await other.open()
    try:
        assert isinstance(other, HostStore)
        await host.heartbeat_worker(worker("w1"))
        await other.heartbeat_worker(worker("w1", host="host-b"))
        assert [w.host for w in await host.list_workers(at(1))] == ["host-a"]
        assert [w.host for w in await other.list_workers(at(1))] == ["host-b"]
        assert await other.remove_worker("w1")
        assert len(await host.list_workers(at(1))) == 1
    finally:
        await other.close()


async def test_hostile_names_are_stored_as_given(host: HostStore) -> None:
    names = ("<script>alert(1)</script>", "a'b\"c", "ünï ⚙", "")
    record = worker("w'1", orchestrations=names, entities=("@counter",))
    await host.heartbeat_worker(record)
    assert await host.list_workers(at(1)) == [record]


# -- backlog --------------------------------------------------------------------------


async def test_backlog_counts_what_waits_and_its_oldest(host: HostStore, store: Store) -> None:
    from store_builders import commit, event, lease_all, new_instance
    from test_store import work

    def figures(found: list[Any]) -> dict[str, tuple[int, object]]:
        return {f.kind: (f.depth, f.oldest_at) for f in found}

    assert figures(await host.backlog(T0)) == {"orchestration": (0, None), "activity": (0, None)}
    await store.create_instance(new_instance("b1", created=at(1)))
    await store.create_instance(new_instance("b2", created=at(2)))
    assert figures(await host.backlog(at(5)))["orchestration"] == (2, at(1))
    episodes = await lease_all(store, at(5))
    items = [dataclasses.replace(work("b1", k), scheduled_at=at(6)) for k in (1, 2)]
    timer = dataclasses.replace(event("b1", "late", at(3)), visible_at=at(100))
    done = await store.complete_episodes(
        [commit(episodes["b1"], work_items=items, messages=[timer])], at(6)
    )
    assert done == [True]
    found = figures(await host.backlog(at(7)))
    assert found == {"orchestration": (1, at(2)), "activity": (2, at(6))}
    # Leased work is not backlog; a timer counts once due, from its due time.
    await store.lease_activities(at(7), 1, 30, "w")
    await store.lease_episodes(at(7), 10, 30, "w")
    assert figures(await host.backlog(at(8)))["activity"][0] == 1
    assert figures(await host.backlog(at(101)))["orchestration"] == (2, at(2))
