"""The host's storage contract (queues, schedules, keys, secrets) on every backend."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from store_builders import T0, at

from taskloom.errors import StoreError
from taskloom.storage import Store, open_store
from taskloom.storage.host_base import SCHEDULE_QUEUE, HostStore, KeyRecord


@pytest.fixture
def host(store: Store) -> HostStore:
    assert isinstance(store, HostStore), f"{store!r} does not implement HostStore"
    return store


@asynccontextmanager
async def other_store(url: str, hub: str) -> AsyncIterator[HostStore]:
    """A second store object (as another host would have) on ``url`` and ``hub``."""
    store = open_store(url, hub=hub)
    await store.open()
    try:
        assert isinstance(store, HostStore)
        yield store
    finally:
        await store.close()


def key(key_id: str, key_hash: str, role: str = "admin", created: float = 0) -> KeyRecord:
    return KeyRecord(key_id, f"name-{key_id}", role, key_hash, at(created))


# -- queues ---------------------------------------------------------------------------


async def test_put_lease_ack(host: HostStore) -> None:
    message_id = await host.queue_put("orders", '{"n": 1}', T0, T0)
    [message] = await host.queue_lease(["orders"], T0, 10, 30, "host-a")
    assert message.id == message_id
    assert (message.queue, message.body, message.dequeue_count) == ("orders", '{"n": 1}', 1)
    assert message.inserted_at == T0 and message.error is None and message.lease_token > 0
    assert await host.queue_lease(["orders"], T0, 10, 30, "host-b") == []
    assert await host.queue_ack(message.id, message.lease_token)
    assert not await host.queue_ack(message.id, message.lease_token)
    assert await host.queue_peek("orders") == []
    assert await host.queue_lease(["orders"], at(60), 10, 30, "host-a") == []


async def test_lease_takes_oldest_first_up_to_limit(host: HostStore) -> None:
    late = await host.queue_put("q", "late", at(2), T0)
    first = await host.queue_put("q", "first", T0, T0)
    second = await host.queue_put("q", "second", at(1), T0)
    assert [m.id for m in await host.queue_lease(["q"], at(5), 2, 30, "h")] == [first, second]
    assert [m.id for m in await host.queue_lease(["q"], at(5), 2, 30, "h")] == [late]
    assert await host.queue_lease(["q"], at(5), 0, 30, "h") == []
    assert await host.queue_lease([], at(5), 10, 30, "h") == []


async def test_lapsed_visibility_timeout_redelivers(host: HostStore) -> None:
    await host.queue_put("q", "body", T0, T0)
    [first] = await host.queue_lease(["q"], T0, 10, 30, "dies")
    assert await host.queue_lease(["q"], at(29.9), 10, 30, "other") == []
    [again] = await host.queue_lease(["q"], at(30), 10, 30, "other")
    assert again.id == first.id and again.dequeue_count == 2
    assert again.lease_token > first.lease_token
    assert await host.queue_fail(first.id, first.lease_token, "late", at(31), 5, at(31)) == "lost"
    assert not await host.queue_ack(first.id, first.lease_token)
    assert await host.queue_ack(again.id, again.lease_token)


async def test_fail_retries_then_poisons(host: HostStore) -> None:
    await host.queue_put("jobs", "payload", T0, T0)
    [m] = await host.queue_lease(["jobs"], T0, 10, 30, "h")
    assert await host.queue_fail(m.id, m.lease_token, "boom 1", at(10), 2, at(1)) == "retry"
    [waiting] = await host.queue_peek("jobs")
    assert (waiting.error, waiting.dequeue_count) == ("boom 1", 1)
    assert await host.queue_lease(["jobs"], at(9), 10, 30, "h") == []
    [m] = await host.queue_lease(["jobs"], at(10), 10, 30, "h")
    assert m.dequeue_count == 2 and m.error == "boom 1"
    assert await host.queue_fail(m.id, m.lease_token, "boom 2", at(99), 2, at(11)) == "poisoned"
    assert await host.queue_peek("jobs") == []
    assert await host.queue_lease(["jobs"], at(99), 10, 30, "h") == []
    [poison] = await host.queue_peek("jobs-poison")
    assert (poison.queue, poison.body, poison.error) == ("jobs-poison", "payload", "boom 2")
    assert poison.dequeue_count == 2 and poison.inserted_at == T0
    [leased] = await host.queue_lease(["jobs-poison"], at(11), 10, 30, "h")
    assert leased.body == "payload" and leased.dequeue_count == 3


async def test_stale_tokens_cannot_ack_or_fail(host: HostStore) -> None:
    await host.queue_put("q", "x", T0, T0)
    [m] = await host.queue_lease(["q"], T0, 10, 30, "h")
    assert not await host.queue_ack(m.id, m.lease_token + 1)
    assert await host.queue_fail(m.id, m.lease_token - 1, "e", at(1), 5, T0) == "lost"
    assert not await host.queue_ack(m.id + 1000, m.lease_token)
    assert await host.queue_fail(m.id, m.lease_token, "e", at(1), 5, T0) == "retry"
    # The failed delivery released the lease: its token applies no more.
    assert not await host.queue_ack(m.id, m.lease_token)
    assert await host.queue_fail(m.id, m.lease_token, "e", at(1), 5, T0) == "lost"
    [again] = await host.queue_lease(["q"], at(1), 10, 30, "h")
    assert again.dequeue_count == 2 and await host.queue_ack(again.id, again.lease_token)


async def test_delayed_put_is_invisible_until_visible_at(host: HostStore) -> None:
    message_id = await host.queue_put("later", "x", at(60), T0)
    assert await host.queue_lease(["later"], at(59), 10, 30, "h") == []
    [peeked] = await host.queue_peek("later")
    assert peeked.id == message_id and peeked.dequeue_count == 0 and peeked.inserted_at == T0
    [m] = await host.queue_lease(["later"], at(60), 10, 30, "h")
    assert m.id == message_id


async def test_queues_are_isolated_by_name(host: HostStore) -> None:
    a = await host.queue_put("a", "for a", T0, T0)
    b = await host.queue_put("b", "for b", T0, T0)
    assert [m.id for m in await host.queue_lease(["a"], T0, 10, 30, "h")] == [a]
    assert [m.id for m in await host.queue_lease(["a", "b", "c"], T0, 10, 30, "h")] == [b]
    assert await host.queue_lease(["c"], T0, 10, 30, "h") == []


async def test_queues_are_isolated_by_hub(host: HostStore, store_url: str, hub: str) -> None:
    async with other_store(store_url, hub + "x") as other:
        await other.queue_put("q", "theirs", T0, T0)
        assert await host.queue_peek("q") == []
        assert await host.queue_lease(["q"], T0, 10, 30, "h") == []
        mine = await host.queue_put("q", "mine", T0, T0)
        [theirs] = await other.queue_lease(["q"], T0, 10, 30, "h")
        assert theirs.body == "theirs"
        assert [m.id for m in await host.queue_lease(["q"], T0, 10, 30, "h")] == [mine]


async def test_peek_lists_without_leasing(host: HostStore) -> None:
    ids = [await host.queue_put("p", f"m{n}", at(10 - n), T0) for n in range(3)]
    peeked = await host.queue_peek("p")
    assert [m.id for m in peeked] == ids and {m.dequeue_count for m in peeked} == {0}
    assert [m.id for m in await host.queue_peek("p", limit=2)] == ids[:2]
    await host.queue_lease(["p"], at(10), 1, 30, "h")
    assert [m.dequeue_count for m in await host.queue_peek("p")] == [0, 0, 1]
    assert await host.queue_peek("nothing") == []


async def test_puts_and_claims_wake_listeners(store: Store, host: HostStore) -> None:
    calls: list[int] = []
    store.add_listener(lambda: calls.append(1))
    await host.queue_put("q", "x", T0, T0)
    assert calls
    calls.clear()
    await host.schedule_upsert("tick", "every 60s", at(60))
    assert await host.schedule_claim("tick", at(60), at(120), "{}", at(60))
    assert calls


# -- schedules ------------------------------------------------------------------------


async def test_schedule_upsert_keeps_or_resets(host: HostStore) -> None:
    created = await host.schedule_upsert("nightly", "0 0 * * *", at(100))
    assert (created.name, created.spec, created.next_tick) == ("nightly", "0 0 * * *", at(100))
    assert not created.paused and created.last_tick is None
    assert await host.schedule_claim("nightly", at(100), at(200), "{}", at(100))
    kept = await host.schedule_upsert("nightly", "0 0 * * *", at(999))
    assert (kept.next_tick, kept.last_tick) == (at(200), at(100))
    changed = await host.schedule_upsert("nightly", "0 12 * * *", at(500))
    assert (changed.spec, changed.next_tick, changed.last_tick) == ("0 12 * * *", at(500), at(100))
    await host.schedule_upsert("alpha", "every 5s", at(5))
    assert [s.name for s in await host.schedule_list()] == ["alpha", "nightly"]


async def test_schedule_claim_is_a_compare_and_set(host: HostStore) -> None:
    await host.schedule_upsert("s", "every 10s", at(10))
    assert not await host.schedule_claim("s", at(5), at(15), "wrong tick", at(10))
    assert await host.schedule_claim("s", at(10), at(20), "tick 10", at(10))
    assert not await host.schedule_claim("s", at(10), at(20), "again", at(11))
    assert not await host.schedule_claim("unknown", at(10), at(20), "x", at(10))
    [record] = await host.schedule_list()
    assert (record.next_tick, record.last_tick) == (at(20), at(10))
    [message] = await host.queue_peek(SCHEDULE_QUEUE)
    assert message.body == "tick 10" and message.inserted_at == at(10)
    [leased] = await host.queue_lease([SCHEDULE_QUEUE], at(10), 10, 30, "h")
    assert leased.id == message.id


async def test_concurrent_claims_of_one_tick_have_one_winner(
    host: HostStore, store_url: str, hub: str
) -> None:
    await host.schedule_upsert("s", "every 10s", at(10))
    async with other_store(store_url, hub) as a, other_store(store_url, hub) as b:
        for n in range(5):
            tick, following = at(10 * (n + 1)), at(10 * (n + 2))
            results = await asyncio.gather(
                *(s.schedule_claim("s", tick, following, f"t{n}", tick) for s in (a, b, host))
            )
            assert sorted(results) == [False, False, True]
    bodies = [m.body for m in await host.queue_peek(SCHEDULE_QUEUE)]
    assert bodies == [f"t{n}" for n in range(5)]


async def test_paused_schedules_do_not_claim(host: HostStore) -> None:
    await host.schedule_upsert("s", "every 10s", at(10))
    assert await host.schedule_set_paused("s", True, None)
    [paused] = await host.schedule_list()
    assert paused.paused and paused.next_tick == at(10)
    assert not await host.schedule_claim("s", at(10), at(20), "x", at(10))
    assert await host.queue_peek(SCHEDULE_QUEUE) == []
    # Paused schedules stay paused when re-registered with the same spec.
    assert (await host.schedule_upsert("s", "every 10s", at(10))).paused
    assert await host.schedule_set_paused("s", False, at(70))
    [resumed] = await host.schedule_list()
    assert not resumed.paused and resumed.next_tick == at(70)
    assert await host.schedule_claim("s", at(70), at(80), "x", at(70))
    assert not await host.schedule_set_paused("unknown", True, None)


# -- keys and secrets -----------------------------------------------------------------


async def test_keys_create_list_lookup_revoke(host: HostStore) -> None:
    assert await host.key_list() == []
    first, second = key("k1", "hash-1", "admin", 1), key("k2", "hash-2", "reader", 2)
    await host.key_create(second)
    await host.key_create(first)
    assert await host.key_list() == [first, second]
    assert await host.key_lookup("hash-2") == second
    assert await host.key_lookup("nope") is None
    assert await host.key_revoke("k2", at(5))
    assert await host.key_lookup("hash-2") is None
    assert await host.key_revoke("k2", at(9))  # idempotent, keeps the first time
    assert not await host.key_revoke("unknown", at(5))
    listed = await host.key_list()
    assert [(k.id, k.revoked_at) for k in listed] == [("k1", None), ("k2", at(5))]
    assert await host.key_lookup("hash-1") == first


async def test_key_hashes_are_unique_per_hub(host: HostStore, store_url: str, hub: str) -> None:
    await host.key_create(key("k1", "same-hash"))
    with pytest.raises(StoreError):
        await host.key_create(key("k2", "same-hash"))
    async with other_store(store_url, hub + "x") as other:
        assert await other.key_lookup("same-hash") is None
        await other.key_create(key("k1", "same-hash", "reader"))
        found = await other.key_lookup("same-hash")
        assert found is not None and found.role == "reader"
    found = await host.key_lookup("same-hash")
    assert found is not None and found.role == "admin"


async def test_secret_first_writer_wins(host: HostStore, store_url: str, hub: str) -> None:
    assert await host.secret("links", "first") == "first"
    assert await host.secret("links", "second") == "first"
    assert await host.secret("other", "own") == "own"
    async with other_store(store_url, hub) as same, other_store(store_url, hub + "x") as elsewhere:
        assert await same.secret("links", "third") == "first"
        assert await elsewhere.secret("links", "theirs") == "theirs"
        found = await asyncio.gather(
            *(s.secret("race", f"c{n}") for n, s in enumerate([same, host]))
        )
        assert found[0] == found[1] in {"c0", "c1"}


async def test_concurrent_leases_never_share_a_message(
    host: HostStore, store_url: str, hub: str
) -> None:
    ids = {await host.queue_put("busy", f"m{n}", T0, T0) for n in range(40)}
    async with other_store(store_url, hub) as a, other_store(store_url, hub) as b:
        leased: list[int] = []
        for _ in range(4):
            batches = await asyncio.gather(
                *(s.queue_lease(["busy"], T0, 4, 30, f"h{n}") for n, s in enumerate((a, b, host)))
            )
            leased += [m.id for batch in batches for m in batch]
    assert len(leased) == len(set(leased)) == 40 and set(leased) == ids
