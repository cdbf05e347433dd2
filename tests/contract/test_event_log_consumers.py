"""The event log's storage contract: consumers (leases, fencing, failures, parked events),
the transaction a hook gets, and views.

Every backend must pass these through :class:`EventLogStore` only.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime

import pytest
from event_builders import app, doc, event_log, ids
from store_builders import T0, at, new_instance

from taskloom.errors import WrongExpectedVersionError
from taskloom.events.records import StreamState
from taskloom.models import Status
from taskloom.storage import Store
from taskloom.storage.events_base import (
    REPLAY,
    EventLogStore,
    EventTx,
    PartitionLease,
    StoredEvent,
    TxHook,
    ViewFilter,
    view_name,
)

C = "proj"


@pytest.fixture
def log(store: Store) -> EventLogStore:
    return event_log(store)


def returning(position: int, *puts: tuple[str, str, object]) -> TxHook:
    """A consumer hook that puts ``(view, key, doc)`` documents and returns ``position``."""

    def hook(tx: EventTx) -> int:
        for view, key, body in puts:
            tx.view_put(view, key, json.dumps(body))
        return position

    return hook


async def one_lease(
    log: EventLogStore, owner: str = "A", now: datetime = T0, ttl: float = 30.0
) -> PartitionLease:
    (lease,) = await log.consumer_lease(C, owner, now, ttl, 1)
    return lease


async def positions_of(log: EventLogStore, consumer: str = C) -> list[int]:
    return [s.position for s in await log.consumer_states(consumer)]


# -- registration -------------------------------------------------------------------------


async def test_consumer_ensure_is_idempotent(log: EventLogStore) -> None:
    await log.consumer_ensure(C, 2, 5, T0)
    await log.consumer_ensure(C, 2, 0, at(1))
    states = await log.consumer_states(C)
    assert [(s.partition, s.partitions, s.position) for s in states] == [(0, 2, 5), (1, 2, 5)]
    assert all(s.lease_owner is None and s.lease_expires_at is None for s in states)
    assert all(
        s.failed_position is None and s.attempts == 0 and s.last_error is None for s in states
    )
    assert all(s.updated_at == T0 for s in states)
    await log.consumer_ensure("other", 1, 0, T0)
    assert sorted(s.consumer for s in await log.consumer_states()) == ["other", C, C]
    assert await log.consumer_states("missing") == []


async def test_repartition_starts_at_the_minimum_checkpoint(log: EventLogStore) -> None:
    await log.consumer_ensure(C, 2, 0, T0)
    leases = sorted(await log.consumer_lease(C, "A", T0, 30, 10), key=lambda x: x.partition)
    assert [x.partition for x in leases] == [0, 1]
    assert await log.consumer_apply(leases[0], T0, returning(7)) == 7
    assert await log.consumer_apply(leases[1], T0, returning(4)) == 4
    await log.consumer_ensure(C, 4, 0, at(1))
    states = await log.consumer_states(C)
    assert [(s.partition, s.partitions, s.position) for s in states] == [
        (p, 4, 4) for p in range(4)
    ]
    # The old leases were for another partitioning: they are fenced off, even once the
    # new partitions are leased.
    new = await log.consumer_lease(C, "B", at(1), 30, 10)
    assert sorted(x.partition for x in new) == [0, 1, 2, 3]
    assert all(x.partitions == 4 and x.position == 4 for x in new)
    for old in leases:
        assert await log.consumer_apply(old, at(2), returning(99, ("v#1", "k", 1))) is None
    assert await log.view_get("v#1", "k") is None
    assert await positions_of(log) == [4, 4, 4, 4]
    assert {s.lease_owner for s in await log.consumer_states(C)} == {"B"}


# -- leases and fencing -------------------------------------------------------------------


async def test_lease_renew_release(log: EventLogStore) -> None:
    await log.consumer_ensure(C, 2, 3, T0)
    assert await log.consumer_lease(C, "A", T0, 30, 0) == []
    (first,) = await log.consumer_lease(C, "A", T0, 30, 1)
    assert (first.consumer, first.partitions, first.position) == (C, 2, 3)
    assert (first.failed_position, first.attempts) == (None, 0)
    (second,) = await log.consumer_lease(C, "A", T0, 30, 5)
    assert {first.partition, second.partition} == {0, 1}
    assert await log.consumer_lease(C, "B", at(10), 30, 5) == []
    states = await log.consumer_states(C)
    assert [s.lease_owner for s in states] == ["A", "A"]
    assert [s.lease_expires_at for s in states] == [at(30), at(30)]
    assert await log.consumer_renew(C, [first, second], at(20), 30) == {0, 1}
    assert [s.lease_expires_at for s in await log.consumer_states(C)] == [at(50), at(50)]
    assert await log.consumer_lease(C, "B", at(40), 30, 5) == []
    await log.consumer_release(C, [first])
    (taken,) = await log.consumer_lease(C, "B", at(41), 30, 5)
    assert taken.partition == first.partition
    assert taken.lease_token != first.lease_token
    assert await log.consumer_renew(C, [first], at(42), 30) == set()
    assert await log.consumer_renew(C, [], at(42), 30) == set()
    await log.consumer_release(C, [])
    owners = {s.partition: s.lease_owner for s in await log.consumer_states(C)}
    assert owners == {first.partition: "B", second.partition: "A"}


async def test_expired_lease_is_fenced_off(log: EventLogStore) -> None:
    await log.consumer_ensure(C, 1, 0, T0)
    old = await one_lease(log, "A", T0, 30)
    assert await log.consumer_lease(C, "B", at(29), 30, 1) == []
    new = await one_lease(log, "B", at(31), 30)
    assert new.lease_token != old.lease_token
    ran: list[str] = []

    def hook(tx: EventTx) -> int:
        ran.append("old")
        tx.view_put("v#1", "k", "{}")
        tx.append([app("out", "o")])
        return 50

    assert await log.consumer_apply(old, at(32), hook) is None
    assert await log.view_get("v#1", "k") is None
    assert await log.stream_version("out") == 0
    assert await positions_of(log) == [0]
    assert await log.consumer_fail(old, 1, 1, "late", at(32)) is False
    assert await log.consumer_renew(C, [old], at(32), 30) == set()
    await log.consumer_release(C, [old])
    (state,) = await log.consumer_states(C)
    assert (state.lease_owner, state.failed_position, state.last_error) == ("B", None, None)
    assert await log.consumer_apply(new, at(33), returning(5)) == 5
    assert await positions_of(log) == [5]


async def test_apply_writes_views_and_the_checkpoint(log: EventLogStore) -> None:
    await log.consumer_ensure(C, 1, 0, T0)
    lease = await one_lease(log)
    hook = returning(7, ("v#1", "a", {"n": 1}), ("v#1", "b", {"n": 2}))
    assert await log.consumer_apply(lease, at(1), hook) == 7
    (state,) = await log.consumer_states(C)
    assert (state.position, state.updated_at, state.lease_owner) == (7, at(1), "A")
    assert doc(await log.view_get("v#1", "b")) == {"n": 2}
    # The lease is still good for more applies.
    assert await log.consumer_apply(lease, at(2), returning(9)) == 9
    await log.consumer_release(C, [lease])
    assert (await one_lease(log, "B", at(3))).position == 9


async def test_raising_apply_hook_changes_nothing(store: Store, log: EventLogStore) -> None:
    await log.consumer_ensure(C, 1, 0, T0)
    lease = await one_lease(log)

    def hook(tx: EventTx) -> int:
        tx.view_put("v#1", "k", "{}")
        tx.append([app("out", "o")])
        tx.start([new_instance("started")], [])
        raise RuntimeError("handler broke")

    with pytest.raises(RuntimeError, match="handler broke"):
        await log.consumer_apply(lease, at(1), hook)
    assert await log.view_get("v#1", "k") is None
    assert await log.stream_version("out") == 0
    assert await log.log_head() == 0
    assert await positions_of(log) == [0]
    assert await store.get_instance("started") is None
    assert await log.consumer_apply(lease, at(2), returning(1)) == 1


async def test_failures_are_recorded_and_cleared(log: EventLogStore) -> None:
    await log.consumer_ensure(C, 1, 0, T0)
    lease = await one_lease(log)
    assert await log.consumer_fail(lease, 3, 1, "first", at(1)) is True
    assert await log.consumer_fail(lease, 3, 2, "boom", at(2)) is True
    (state,) = await log.consumer_states(C)
    assert (state.failed_position, state.attempts, state.last_error) == (3, 2, "boom")
    assert (state.position, state.updated_at) == (0, at(2))
    await log.consumer_release(C, [lease])
    again = await one_lease(log, "B", at(3))
    assert (again.failed_position, again.attempts, again.position) == (3, 2, 0)
    assert await log.consumer_apply(again, at(4), returning(3)) == 3
    (state,) = await log.consumer_states(C)
    assert (state.failed_position, state.attempts, state.last_error) == (None, 0, None)
    await log.consumer_release(C, [again])
    last = await one_lease(log, "C", at(5))
    assert (last.failed_position, last.attempts, last.position) == (None, 0, 3)


async def test_reset_moves_checkpoints_and_invalidates_leases(log: EventLogStore) -> None:
    await log.consumer_ensure(C, 2, 0, T0)
    leases = await log.consumer_lease(C, "A", T0, 30, 10)
    assert await log.consumer_fail(leases[0], 2, 3, "bad", T0) is True
    assert await log.consumer_reset(C, 10, at(1)) == 2
    states = await log.consumer_states(C)
    assert [s.position for s in states] == [10, 10]
    assert all(s.lease_owner is None and s.failed_position is None for s in states)
    assert all(s.attempts == 0 and s.updated_at == at(1) for s in states)
    for lease in leases:
        assert await log.consumer_apply(lease, at(2), returning(20)) is None
    assert await log.consumer_renew(C, leases, at(2), 30) == set()
    fresh = await log.consumer_lease(C, "B", at(2), 30, 10)
    assert sorted(x.position for x in fresh) == [10, 10]
    assert await log.consumer_reset("missing", 0, at(3)) == 0


# -- parked events ------------------------------------------------------------------------


async def test_park_unpark_and_replay(log: EventLogStore) -> None:
    await log.append_events([app("s", "a", "b", type="t1"), app("u", "c", type="t2")], T0)
    events = await log.read_log(0, 10)
    await log.consumer_ensure(C, 1, 0, T0)
    lease = await one_lease(log)

    def park_all(tx: EventTx) -> int:
        for e in tx.read_log(0, 10):
            tx.park(C, e, f"failed {e.id}", 5)
        return events[-1].position

    assert await log.consumer_apply(lease, at(1), park_all) == events[-1].position
    parked = await log.consumer_parked(C)
    assert [(p.position, p.stream_id, p.version, p.event_id, p.type) for p in parked] == [
        (e.position, e.stream_id, e.version, e.id, e.type) for e in events
    ]
    assert [(p.consumer, p.error, p.attempts, p.parked_at) for p in parked] == [
        (C, f"failed {e.id}", 5, at(1)) for e in events
    ]
    assert await log.consumer_parked("other") == []

    assert await log.consumer_replay(C, [events[1].position]) == 1
    assert [p.attempts for p in await log.consumer_parked(C)] == [5, REPLAY, 5]
    assert await log.consumer_replay(C, []) == 0
    assert await log.consumer_replay(C, None) == 3
    assert [p.attempts for p in await log.consumer_parked(C)] == [REPLAY] * 3

    # Parking again replaces the record; unparking removes it.
    def rework(tx: EventTx) -> int:
        tx.park(C, events[0], "still failing", 6)
        tx.unpark(C, events[1].position)
        tx.unpark(C, 12345)
        return events[-1].position

    assert await log.consumer_apply(lease, at(2), rework) is not None
    parked = await log.consumer_parked(C)
    assert [(p.event_id, p.error, p.attempts, p.parked_at) for p in parked] == [
        ("a", "still failing", 6, at(2)),
        ("c", "failed c", REPLAY, at(1)),
    ]


# -- what a hook may do --------------------------------------------------------------------


async def test_tx_append_commits_with_the_checkpoint(log: EventLogStore) -> None:
    await log.append_events([app("in", "i1")], T0)
    await log.consumer_ensure(C, 1, 0, T0)
    lease = await one_lease(log)
    results: list[list[tuple[int, int]]] = []

    def hook(tx: EventTx) -> int:
        (seen,) = tx.read_log(0, 10)
        results.append(tx.append([app("out", f"from-{seen.id}", expected=StreamState.NO_STREAM)]))
        try:
            tx.append([app("out", "dup", expected=StreamState.NO_STREAM)])
        except WrongExpectedVersionError as exc:
            results.append([(exc.actual, -1)])
        return seen.position

    assert await log.consumer_apply(lease, at(1), hook) == 1
    ((version, position),), ((actual, _),) = results
    assert (version, actual) == (1, 1)
    assert ids(await log.read_stream("out", None, False, None)) == ["from-i1"]
    assert await log.log_head() == position
    assert (await log.read_log(1, 10))[0].recorded_at == at(1)
    assert await positions_of(log) == [1]


async def test_tx_start_creates_an_instance(store: Store, log: EventLogStore) -> None:
    await log.consumer_ensure(C, 1, 0, T0)
    lease = await one_lease(log)

    def hook(tx: EventTx) -> int:
        tx.start([new_instance("by-consumer")], [])
        return 0

    assert await log.consumer_apply(lease, at(1), hook) == 0
    record = await store.get_instance("by-consumer")
    assert record is not None
    assert (record.name, record.status, record.input) == ("orch", Status.PENDING, '"input"')

    def from_append(tx: EventTx, written: list[StoredEvent]) -> None:
        tx.start([new_instance(f"for-{e.id}") for e in written], [])
        # A start of an id that is already there leaves it as it is.
        tx.start([new_instance("by-consumer", name="other")], [])

    await log.append_events([app("s", "e1")], at(2), from_append)
    assert await store.get_instance("for-e1") is not None
    again = await store.get_instance("by-consumer")
    assert again is not None and again.name == "orch"


async def test_tx_savepoint_undoes_only_its_inside(log: EventLogStore) -> None:
    await log.consumer_ensure(C, 1, 0, T0)
    lease = await one_lease(log)

    def hook(tx: EventTx) -> int:
        tx.view_put("v#1", "before", "{}")
        with tx.savepoint():
            tx.view_put("v#1", "outer", "{}")
            try:
                with tx.savepoint():
                    tx.view_put("v#1", "inner", "{}")
                    tx.view_delete("v#1", "before")
                    tx.append([app("inside", "x")])
                    raise ValueError("undo me")
            except ValueError:
                pass
        try:
            with tx.savepoint():
                tx.view_put("v#1", "second", "{}")
                raise KeyError("again")
        except KeyError:
            pass
        tx.view_put("v#1", "after", "{}")
        return 4

    assert await log.consumer_apply(lease, at(1), hook) == 4
    keys = [k for k, _ in await log.view_query("v#1", [], 100)]
    assert keys == ["after", "before", "outer"]
    assert await log.stream_version("inside") == 0
    assert await log.log_head() == 0
    assert await positions_of(log) == [4]


async def test_tx_generation_and_checkpoints(log: EventLogStore) -> None:
    await log.consumer_ensure("inline", 1, 4, T0)
    seen: list[object] = []

    def hook(tx: EventTx, written: list[StoredEvent]) -> None:
        seen.extend([tx.generation("p"), tx.checkpoint("inline"), tx.checkpoint("nobody")])
        tx.set_checkpoint("inline", written[-1].position)
        seen.append(tx.checkpoint("inline"))

    (result,) = await log.append_events([app("s", "a", "b")], at(1), hook)
    assert seen == [1, 4, None, result[1]]
    (state,) = await log.consumer_states("inline")
    assert (state.position, state.updated_at) == (result[1], at(1))

    def swap(tx: EventTx) -> int:
        return result[1]

    await log.view_swap("p", 3, "inline", at(2), swap)
    seen.clear()
    await log.append_events([app("s", "c")], at(3), hook)
    assert seen[0] == 3


# -- views --------------------------------------------------------------------------------


DOCS = {
    "k1": {"n": 2, "name": "cherry"},
    "k2": {"n": 9, "name": "apple"},
    "k3": {"n": 10, "name": "banana"},
    "k4": {"n": 2.5, "name": "date"},
    "k5": {"n": -1, "name": "apple"},
}


async def fill(log: EventLogStore, view: str = "v#1", docs: Mapping[str, object] = DOCS) -> None:
    def hook(tx: EventTx, written: list[StoredEvent]) -> None:
        for key, body in docs.items():
            tx.view_put(view, key, json.dumps(body))

    await log.append_events([app("fill", f"fill-{view}")], T0, hook)


async def test_view_get_put_delete(log: EventLogStore) -> None:
    await fill(log)
    assert doc(await log.view_get("v#1", "k3")) == DOCS["k3"]
    assert await log.view_get("v#1", "nope") is None
    assert await log.view_get("v#2", "k3") is None

    def hook(tx: EventTx, written: list[StoredEvent]) -> None:
        assert doc(tx.view_get("v#1", "k1")) == DOCS["k1"]
        tx.view_put("v#1", "k1", '{"n": 100}')
        assert doc(tx.view_get("v#1", "k1")) == {"n": 100}
        tx.view_delete("v#1", "k2")
        tx.view_delete("v#1", "never")
        assert tx.view_get("v#1", "k2") is None

    await log.append_events([app("s", "x")], at(1), hook)
    assert doc(await log.view_get("v#1", "k1")) == {"n": 100}
    assert await log.view_get("v#1", "k2") is None
    assert await log.view_count("v#1") == 4
    assert await log.view_count("v#9") == 0


@pytest.mark.parametrize(
    ("filters", "keys"),
    [
        ([], ["k1", "k2", "k3", "k4", "k5"]),
        ([("n", "=", "2")], ["k1"]),
        ([("n", "!=", "2")], ["k2", "k3", "k4", "k5"]),
        ([("n", ">", "2")], ["k2", "k3", "k4"]),
        ([("n", ">=", "2")], ["k1", "k2", "k3", "k4"]),
        ([("n", "<", "9")], ["k1", "k4", "k5"]),
        ([("n", "<=", "9")], ["k1", "k2", "k4", "k5"]),
        ([("n", ">", "2.25")], ["k2", "k3", "k4"]),
        ([("name", "=", '"apple"')], ["k2", "k5"]),
        ([("name", "!=", '"apple"')], ["k1", "k3", "k4"]),
        ([("name", ">", '"banana"')], ["k1", "k4"]),
        ([("name", "<=", '"banana"')], ["k2", "k3", "k5"]),
        ([("name", "=", '"apple"'), ("n", ">", "0")], ["k2"]),
        ([("n", ">=", "2"), ("n", "<", "10")], ["k1", "k2", "k4"]),
        ([("missing", "=", "1")], []),
        ([("name", "=", '"zzz"')], []),
    ],
)
async def test_view_query_filters(
    log: EventLogStore, filters: list[tuple[str, str, str]], keys: list[str]
) -> None:
    await fill(log)
    await fill(log, "v#2", {"k9": {"n": 2, "name": "apple"}})
    rows = await log.view_query("v#1", [ViewFilter(*f) for f in filters], 100)
    assert [k for k, _ in rows] == keys
    assert all(doc(text) == DOCS[key] for key, text in rows)
    await log.view_index("v#1", ["n", "name"])
    again = await log.view_query("v#1", [ViewFilter(*f) for f in filters], 100)
    assert [k for k, _ in again] == keys


async def test_view_query_pages_by_key(log: EventLogStore) -> None:
    await fill(log)
    assert [k for k, _ in await log.view_query("v#1", [], 2)] == ["k1", "k2"]
    assert [k for k, _ in await log.view_query("v#1", [], 2, "k2")] == ["k3", "k4"]
    assert [k for k, _ in await log.view_query("v#1", [], 2, "k4")] == ["k5"]
    assert await log.view_query("v#1", [], 2, "k5") == []
    assert [k for k, _ in await log.view_query("v#1", [], 10, "k")] == list(DOCS)
    gt = [ViewFilter("n", ">", "0")]
    assert [k for k, _ in await log.view_query("v#1", gt, 1, "k1")] == ["k2"]
    assert [k for k, _ in await log.view_query("v#1", gt, 5, "k2")] == ["k3", "k4"]


async def test_view_index_and_bad_fields(log: EventLogStore) -> None:
    await fill(log)
    await log.view_index("v#1", ["n", "name"])
    await log.view_index("v#1", ["n", "name"])
    await log.view_index("v#2", ["n"])
    assert await log.view_count("v#1") == 5
    for bad in ("a.b", "x'); DROP TABLE events; --", "", "1st", "a" * 41, "with space"):
        with pytest.raises(ValueError):
            await log.view_query("v#1", [ViewFilter(bad, "=", "1")], 10)
        with pytest.raises(ValueError):
            await log.view_index("v#1", [bad])
    with pytest.raises(ValueError):
        await log.view_query("v#1", [ViewFilter("n", "LIKE", "1")], 10)
    assert await log.view_count("v#1") == 5


async def test_view_swap(log: EventLogStore) -> None:
    assert await log.view_generation("p") == 1
    await log.consumer_ensure(C, 2, 0, T0)
    leases = await log.consumer_lease(C, "A", T0, 30, 10)
    assert await log.consumer_fail(leases[0], 3, 1, "x", T0)
    await fill(log, view_name("p", 1))
    await fill(log, "unrelated#1")
    ran: list[int] = []

    def hook(tx: EventTx) -> int:
        ran.append(tx.generation("p"))
        tx.view_put(view_name("p", 2), "new", '{"n": 1}')
        return 12

    assert await log.view_swap("p", 2, C, at(1), hook) == 12
    assert ran == [1]
    assert await log.view_generation("p") == 2
    assert await log.view_count(view_name("p", 1)) == 0
    assert [k for k, _ in await log.view_query(view_name("p", 2), [], 10)] == ["new"]
    assert await log.view_count("unrelated#1") == 5
    states = await log.consumer_states(C)
    assert [s.position for s in states] == [12, 12]
    assert all(s.lease_owner is None and s.failed_position is None for s in states)
    for lease in leases:
        assert await log.consumer_apply(lease, at(2), returning(20)) is None
    assert sorted(x.position for x in await log.consumer_lease(C, "B", at(2), 30, 10)) == [12, 12]
    assert await log.view_generation("other") == 1


async def test_raising_swap_hook_changes_nothing(log: EventLogStore) -> None:
    await log.consumer_ensure(C, 1, 0, T0)
    lease = await one_lease(log)
    await fill(log, view_name("p", 1))

    def hook(tx: EventTx) -> int:
        tx.view_put(view_name("p", 2), "new", "{}")
        raise RuntimeError("rebuild broke")

    with pytest.raises(RuntimeError, match="rebuild broke"):
        await log.view_swap("p", 2, C, at(1), hook)
    assert await log.view_generation("p") == 1
    assert await log.view_count(view_name("p", 1)) == 5
    assert await log.view_count(view_name("p", 2)) == 0
    assert await log.consumer_apply(lease, at(2), returning(1)) == 1


async def test_view_drop(log: EventLogStore) -> None:
    await fill(log, "a#1")
    await fill(log, "b#1")
    await log.view_drop("a#1")
    assert await log.view_count("a#1") == 0
    assert await log.view_get("a#1", "k1") is None
    assert await log.view_count("b#1") == 5
    await log.view_drop("never#1")
