"""The event log's storage contract: appends, stream and log reads, deletes and purges.

Every backend must pass these through :class:`EventLogStore` only.
"""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from event_builders import app, doc, ev, event_log, ids, positions, versions
from store_builders import T0, at

from taskloom.errors import WrongExpectedVersionError
from taskloom.events.records import StreamState
from taskloom.storage import Store
from taskloom.storage.events_base import (
    EventLogStore,
    EventTx,
    StoredEvent,
    StreamAppend,
    stream_bucket,
)

ANY = StreamState.ANY
NO_STREAM = StreamState.NO_STREAM
STREAM_EXISTS = StreamState.STREAM_EXISTS


@pytest.fixture
def log(store: Store) -> EventLogStore:
    return event_log(store)


# -- append_events ----------------------------------------------------------------------


async def test_append_numbers_versions_and_positions(log: EventLogStore) -> None:
    assert await log.log_head() == 0
    first = await log.append_events([app("s", "a", "b", "c", expected=NO_STREAM)], T0)
    second = await log.append_events([app("s", "d", expected=3)], at(1))
    assert first[0][0] == 3 and second[0][0] == 4
    events = await log.read_stream("s", None, False, None)
    assert versions(events) == [1, 2, 3, 4]
    assert ids(events) == ["a", "b", "c", "d"]
    assert all(x < y for x, y in zip(positions(events), positions(events)[1:], strict=False))
    assert first[0][1] == events[2].position and second[0][1] == events[3].position
    assert await log.log_head() == events[-1].position
    assert await log.stream_version("s") == 4


async def test_stored_event_round_trips_every_field(log: EventLogStore) -> None:
    data = {"name": "é", "items": [1, 2.5, None, True]}
    event = ev("e1", "order.placed", data, {"by": "me"})
    (result,) = await log.append_events([StreamAppend("order-1", NO_STREAM, (event,))], T0)
    (got,) = await log.read_stream("order-1", None, False, None)
    assert (got.stream_id, got.version, got.id, got.type) == ("order-1", 1, "e1", "order.placed")
    assert got.position == result[1]
    assert doc(got.data) == data and doc(got.metadata) == {"by": "me"}
    assert got.recorded_at == T0 and got.recorded_at.utcoffset() == timedelta(0)
    (no_meta,) = await log.append_events([app("plain", "p")], at(1))
    (plain,) = await log.read_stream("plain", None, False, None)
    assert plain.metadata is None and plain.recorded_at == at(1)
    assert no_meta == (1, plain.position)


async def test_several_appends_are_atomic(log: EventLogStore) -> None:
    await log.append_events([app("b", "b1")], T0)
    head = await log.log_head()
    with pytest.raises(WrongExpectedVersionError) as info:
        await log.append_events(
            [app("a", "a1", "a2"), app("b", "b2", expected=5), app("c", "c1")], at(1)
        )
    assert (info.value.stream_id, info.value.expected, info.value.actual) == ("b", 5, 1)
    assert await log.stream_version("a") == 0
    assert await log.read_stream("a", None, False, None) == []
    assert await log.stream_version("b") == 1
    assert await log.log_head() == head
    assert ids(await log.read_log(0, 100)) == ["b1"]
    # The same batch with the right version writes everything.
    results = await log.append_events(
        [app("a", "a1", "a2"), app("b", "b2", expected=1), app("c", "c1")], at(2)
    )
    assert [r[0] for r in results] == [2, 2, 1]
    assert results[0][1] < results[1][1] < results[2][1]
    assert ids(await log.read_log(0, 100)) == ["b1", "a1", "a2", "b2", "c1"]


@pytest.mark.parametrize(
    ("expected", "current", "ok"),
    [
        (ANY, 0, True),
        (ANY, 2, True),
        (NO_STREAM, 0, True),
        (NO_STREAM, 2, False),
        (STREAM_EXISTS, 0, False),
        (STREAM_EXISTS, 2, True),
        (0, 0, True),
        (0, 2, False),
        (2, 2, True),
        (1, 2, False),
        (3, 2, False),
        (1, 0, False),
    ],
)
async def test_expected_version_rules(
    log: EventLogStore, expected: StreamState | int, current: int, ok: bool
) -> None:
    if current:
        await log.append_events([app("s", *(f"old{i}" for i in range(current)))], T0)
    head = await log.log_head()
    if ok:
        result = await log.append_events([app("s", "new", expected=expected)], at(1))
        assert result[0][0] == current + 1
        assert await log.stream_version("s") == current + 1
        return
    with pytest.raises(WrongExpectedVersionError) as info:
        await log.append_events([app("s", "new", expected=expected)], at(1))
    assert info.value.stream_id == "s"
    assert info.value.expected == expected
    assert info.value.actual == current
    assert await log.stream_version("s") == current
    assert await log.log_head() == head
    assert "new" not in ids(await log.read_log(0, 100))


async def test_repeated_append_returns_the_original_result(log: EventLogStore) -> None:
    (original,) = await log.append_events([app("s", "a", "b", expected=NO_STREAM)], T0)
    await log.append_events([app("s", "c")], at(1))
    head = await log.log_head()
    for expected in (NO_STREAM, STREAM_EXISTS, ANY, 0, 2, 7):
        assert await log.append_events([app("s", "a", "b", expected=expected)], at(2)) == [original]
    assert await log.log_head() == head
    assert versions(await log.read_stream("s", None, False, None)) == [1, 2, 3]
    # A repeat beside a new append: the repeat is a no-op, the other is written.
    results = await log.append_events([app("s", "a", "b"), app("t", "x")], at(3))
    assert results[0] == original and results[1][0] == 1 and results[1][1] > head
    assert ids(await log.read_log(head, 100)) == ["x"]


@pytest.mark.parametrize("repeat", [["a", "z"], ["b", "a"], ["z", "a", "b"]])
async def test_partial_or_reordered_repeat_raises(log: EventLogStore, repeat: list[str]) -> None:
    await log.append_events([app("s", "a", "b")], T0)
    head = await log.log_head()
    with pytest.raises(WrongExpectedVersionError) as info:
        await log.append_events([app("s", *repeat)], at(1))
    assert info.value.stream_id == "s" and info.value.actual == 2
    assert await log.log_head() == head
    assert ids(await log.read_stream("s", None, False, None)) == ["a", "b"]


async def test_event_ids_are_per_stream(log: EventLogStore) -> None:
    await log.append_events([app("s", "a")], T0)
    assert (await log.append_events([app("t", "a")], T0))[0][0] == 1
    assert ids(await log.read_log(0, 10)) == ["a", "a"]


async def test_same_stream_twice_in_one_call(log: EventLogStore) -> None:
    results = await log.append_events(
        [app("s", "a", expected=NO_STREAM), app("s", "b", "c", expected=1)], T0
    )
    assert [r[0] for r in results] == [1, 3]
    assert results[0][1] < results[1][1]
    assert ids(await log.read_stream("s", None, False, None)) == ["a", "b", "c"]
    with pytest.raises(WrongExpectedVersionError) as info:
        await log.append_events(
            [app("u", "a", expected=NO_STREAM), app("u", "b", expected=NO_STREAM)], T0
        )
    assert info.value.stream_id == "u" and info.value.actual == 1
    assert await log.stream_version("u") == 0


async def test_hook_sees_written_events_and_writes_in_the_transaction(log: EventLogStore) -> None:
    await log.append_events([app("pre", "p")], T0)
    seen: list[list[StoredEvent]] = []
    logged: list[list[str]] = []

    def hook(tx: EventTx, written: list[StoredEvent]) -> None:
        seen.append(written)
        logged.append(ids(tx.read_log(0, 100)))
        for e in written:
            tx.view_put("v#1", e.id, json.dumps({"stream": e.stream_id, "version": e.version}))

    results = await log.append_events([app("a", "a1", "a2"), app("b", "b1")], at(1), hook)
    (written,) = seen
    assert ids(written) == ["a1", "a2", "b1"]
    assert [(e.stream_id, e.version) for e in written] == [("a", 1), ("a", 2), ("b", 1)]
    assert positions(written) == sorted(positions(written))
    assert len(set(positions(written))) == 3
    assert (written[1].position, written[2].position) == (results[0][1], results[1][1])
    assert all(e.recorded_at == at(1) for e in written)
    assert written == (await log.read_log(written[0].position - 1, 100))
    assert logged == [["p", "a1", "a2", "b1"]]
    assert doc(await log.view_get("v#1", "a2")) == {"stream": "a", "version": 2}
    assert await log.view_count("v#1") == 3


async def test_raising_hook_rolls_back_everything(log: EventLogStore) -> None:
    await log.append_events([app("s", "a")], T0)
    head = await log.log_head()

    def hook(tx: EventTx, written: list[StoredEvent]) -> None:
        tx.view_put("v#1", "k", "{}")
        tx.append([app("side", "x")])
        raise RuntimeError("projection broke")

    with pytest.raises(RuntimeError, match="projection broke"):
        await log.append_events([app("s", "b", expected=1), app("t", "c")], at(1), hook)
    assert await log.stream_version("s") == 1
    assert await log.stream_version("t") == 0
    assert await log.stream_version("side") == 0
    assert await log.log_head() == head
    assert await log.view_get("v#1", "k") is None
    assert ids(await log.read_log(0, 100)) == ["a"]
    # And the store still works afterwards.
    assert (await log.append_events([app("s", "b", expected=1)], at(2)))[0][0] == 2


async def test_hook_appends_in_the_same_transaction(log: EventLogStore) -> None:
    inner: list[list[tuple[int, int]]] = []

    def hook(tx: EventTx, written: list[StoredEvent]) -> None:
        inner.append(tx.append([app("derived", *(f"d-{e.id}" for e in written))]))

    (outer,) = await log.append_events([app("s", "a", "b")], T0, hook)
    ((result,),) = inner
    assert result[0] == 2 and result[1] > outer[1]
    assert ids(await log.read_log(0, 10)) == ["a", "b", "d-a", "d-b"]
    assert await log.log_head() == result[1]


async def test_hook_failed_append_leaves_nothing_of_itself(log: EventLogStore) -> None:
    """A hook may catch a refused append and go on: none of that call's appends stays."""
    outcome: list[str] = []

    def hook(tx: EventTx, written: list[StoredEvent]) -> None:
        try:
            tx.append([app("x", "x1"), app("y", "y1", expected=STREAM_EXISTS)])
        except WrongExpectedVersionError as exc:
            outcome.append(exc.stream_id)
        tx.view_put("v#1", "k", '{"ok": true}')

    await log.append_events([app("s", "a")], T0, hook)
    assert outcome == ["y"]
    assert await log.stream_version("x") == 0
    assert ids(await log.read_log(0, 10)) == ["a"]
    assert doc(await log.view_get("v#1", "k")) == {"ok": True}


# -- reads --------------------------------------------------------------------------------


async def test_read_stream_directions_and_limits(log: EventLogStore) -> None:
    await log.append_events([app("s", "e1", "e2", "e3", "e4", "e5")], T0)
    await log.append_events([app("other", "o1")], T0)

    async def read(from_version: int | None, backwards: bool, limit: int | None) -> list[int]:
        return versions(await log.read_stream("s", from_version, backwards, limit))

    assert await read(None, False, None) == [1, 2, 3, 4, 5]
    assert await read(3, False, None) == [3, 4, 5]
    assert await read(None, False, 2) == [1, 2]
    assert await read(2, False, 2) == [2, 3]
    assert await read(6, False, None) == []
    assert await read(None, True, None) == [5, 4, 3, 2, 1]
    assert await read(3, True, None) == [3, 2, 1]
    assert await read(None, True, 2) == [5, 4]
    assert await read(4, True, 2) == [4, 3]
    assert await read(1, True, None) == [1]
    assert await log.read_stream("missing", None, False, None) == []
    assert await log.read_stream("missing", None, True, 5) == []
    assert await log.stream_version("missing") == 0


async def test_read_log_after_limit_and_types(log: EventLogStore) -> None:
    await log.append_events([app("a", "a1", "a2", type="x"), app("b", "b1", type="y")], T0)
    await log.append_events([app("c", "c1", type="z"), app("a", "a3", type="y")], T0)
    everything = await log.read_log(0, 100)
    assert ids(everything) == ["a1", "a2", "b1", "c1", "a3"]
    assert positions(everything) == sorted(set(positions(everything)))
    assert await log.log_head() == everything[-1].position
    assert ids(await log.read_log(0, 2)) == ["a1", "a2"]
    assert ids(await log.read_log(everything[1].position, 2)) == ["b1", "c1"]
    assert await log.read_log(everything[-1].position, 10) == []
    assert ids(await log.read_log(0, 100, ["y"])) == ["b1", "a3"]
    assert ids(await log.read_log(0, 100, ["x", "z"])) == ["a1", "a2", "c1"]
    assert ids(await log.read_log(everything[0].position, 1, ["x", "z"])) == ["a2"]
    assert ids(await log.read_log(0, 2, ["z", "x"])) == ["a1", "a2"]
    assert ids(await log.read_log(0, 3, ["y", "y", "z"])) == ["b1", "c1", "a3"]
    assert await log.read_log(0, 100, []) == []
    assert await log.read_log(0, 100, ["nothing"]) == []


async def test_read_log_partitions_follow_stream_buckets(log: EventLogStore) -> None:
    streams = [f"stream-{i}" for i in range(24)]
    await log.append_events([app(s, f"{s}/1", f"{s}/2") for s in streams], T0)
    everything = await log.read_log(0, 1000)
    assert len(everything) == 48
    for count in (1, 2, 4, 8):
        seen: list[StoredEvent] = []
        for index in range(count):
            part = await log.read_log(0, 1000, partition=(index, count))
            assert all(stream_bucket(e.stream_id) % count == index for e in part)
            assert positions(part) == sorted(positions(part))
            seen += part
        assert sorted(seen, key=lambda e: e.position) == everything
    # Several partitions are non-empty for four-way (the test streams spread out).
    assert len({stream_bucket(s) % 4 for s in streams}) > 1
    # Types and partition combine.
    index = stream_bucket("stream-3") % 4
    part = await log.read_log(0, 1000, ["t"], partition=(index, 4))
    assert "stream-3/1" in ids(part)


async def test_read_partitions_reads_each_after_its_own_position(log: EventLogStore) -> None:
    streams = [f"stream-{i}" for i in range(24)]
    for k in range(3):
        await log.append_events([app(s, f"{s}/{k}") for s in streams], T0)
    count = 4
    everything = await log.read_log(0, 1000)
    after = {0: 0, 1: everything[30].position, 3: everything[-1].position}
    for limit in (1, 5, 1000):
        got = await log.read_partitions(after, count, limit)
        assert set(got) == set(after)
        for index, position in after.items():
            want = await log.read_log(position, limit, partition=(index, count))
            assert got[index] == want, (index, limit)
    assert (await log.read_partitions(after, count, 1000))[3] == []
    assert await log.read_partitions({}, count, 10) == {}


async def test_stream_bucket_is_stable() -> None:
    # Hosts must agree: the bucket is a fixed function of the stream id.
    assert stream_bucket("order-1") == stream_bucket("order-1")
    assert 0 <= stream_bucket("x") < 256
    assert stream_bucket("") == 0


# -- delete, purge, truncate --------------------------------------------------------------


async def test_soft_delete_and_recreate(log: EventLogStore) -> None:
    await log.append_events([app("s", "a", "b"), app("t", "x")], T0)
    assert await log.delete_stream("s", 2, False) is True
    assert await log.read_stream("s", None, False, None) == []
    assert await log.read_stream("s", None, True, None) == []
    assert await log.stream_version("s") == 0
    assert ids(await log.read_log(0, 100)) == ["a", "b", "x"]
    assert await log.delete_stream("s", ANY, False) is False
    with pytest.raises(WrongExpectedVersionError) as info:
        await log.append_events([app("s", "c", expected=STREAM_EXISTS)], at(1))
    assert info.value.actual == 0
    (result,) = await log.append_events([app("s", "c", expected=NO_STREAM)], at(1))
    assert result[0] == 3
    assert versions(await log.read_stream("s", None, False, None)) == [3]
    assert versions(await log.read_stream("s", None, True, None)) == [3]
    assert await log.stream_version("s") == 3
    assert (await log.append_events([app("s", "d", expected=3)], at(2)))[0][0] == 4
    assert ids(await log.read_stream("s", None, False, None)) == ["c", "d"]
    assert ids(await log.read_log(0, 100)) == ["a", "b", "x", "c", "d"]


async def test_delete_checks_the_expected_version(log: EventLogStore) -> None:
    await log.append_events([app("s", "a", "b")], T0)
    for expected in (1, 3, NO_STREAM):
        with pytest.raises(WrongExpectedVersionError) as info:
            await log.delete_stream("s", expected, False)
        assert (info.value.stream_id, info.value.actual) == ("s", 2)
        with pytest.raises(WrongExpectedVersionError):
            await log.delete_stream("s", expected, True)
    assert versions(await log.read_stream("s", None, False, None)) == [1, 2]
    assert await log.delete_stream("s", STREAM_EXISTS, False) is True


async def test_delete_missing_stream(log: EventLogStore) -> None:
    assert await log.delete_stream("nope", ANY, False) is False
    assert await log.delete_stream("nope", NO_STREAM, False) is False
    assert await log.delete_stream("nope", ANY, True) is False
    with pytest.raises(WrongExpectedVersionError):
        await log.delete_stream("nope", STREAM_EXISTS, False)
    assert await log.stream_version("nope") == 0


async def test_purge_removes_the_stream_everywhere(log: EventLogStore) -> None:
    await log.append_events([app("s", "a", "b"), app("t", "x")], T0)
    await log.append_events([app("s", "c")], T0)
    assert await log.delete_stream("s", 3, True) is True
    assert await log.read_stream("s", None, False, None) == []
    assert await log.stream_version("s") == 0
    assert ids(await log.read_log(0, 100)) == ["x"]
    assert await log.delete_stream("s", ANY, True) is False
    # Recreated from version 1, and the purged event ids are free again.
    (result,) = await log.append_events([app("s", "a", expected=NO_STREAM)], at(1))
    assert result[0] == 1
    assert versions(await log.read_stream("s", None, False, None)) == [1]


async def test_purge_after_soft_delete(log: EventLogStore) -> None:
    await log.append_events([app("s", "a", "b")], T0)
    assert await log.delete_stream("s", ANY, False) is True
    assert await log.delete_stream("s", NO_STREAM, True) is True
    assert await log.read_log(0, 100) == []
    assert (await log.append_events([app("s", "c")], at(1)))[0][0] == 1


async def test_positions_are_never_reused_after_purging_the_tail(log: EventLogStore) -> None:
    await log.append_events([app("keep", "k")], T0)
    (tail,) = await log.append_events([app("s", "a", "b")], T0)
    assert await log.delete_stream("s", ANY, True) is True
    assert await log.log_head() == tail[1]
    (after,) = await log.append_events([app("u", "c")], at(1))
    assert after[1] > tail[1]
    assert [e.position for e in await log.read_log(0, 10)][-1] == after[1]
    assert await log.log_head() == after[1]


async def test_positions_are_never_reused_after_truncating_or_purging_everything(
    log: EventLogStore,
) -> None:
    (first,) = await log.append_events([app("s", "a", "b", "c")], T0)
    assert await log.truncate_stream("s", 10) == 3
    assert await log.log_head() == first[1]
    _, second = await log.append_events([app("s", "d"), app("t", "e")], T0)
    assert second[1] == first[1] + 2
    await log.delete_stream("s", ANY, True)
    await log.delete_stream("t", ANY, True)
    assert await log.read_log(0, 10) == []
    assert await log.log_head() == second[1]
    (third,) = await log.append_events([app("s", "f")], at(1))
    assert third == (1, second[1] + 1)
    assert await log.log_head() == third[1]


async def test_truncate_stream(log: EventLogStore) -> None:
    await log.append_events([app("s", "e1", "e2", "e3", "e4", "e5"), app("t", "x")], T0)
    assert await log.truncate_stream("s", 3) == 2
    assert versions(await log.read_stream("s", None, False, None)) == [3, 4, 5]
    assert versions(await log.read_stream("s", 1, False, None)) == [3, 4, 5]
    assert versions(await log.read_stream("s", None, True, None)) == [5, 4, 3]
    assert versions(await log.read_stream("s", 4, True, None)) == [4, 3]
    assert await log.stream_version("s") == 5
    assert ids(await log.read_log(0, 100)) == ["e3", "e4", "e5", "x"]
    assert await log.truncate_stream("s", 3) == 0
    assert await log.truncate_stream("s", 2) == 0
    assert versions(await log.read_stream("s", None, False, None)) == [3, 4, 5]
    assert (await log.append_events([app("s", "e6", expected=5)], at(1)))[0][0] == 6
    assert versions(await log.read_stream("s", None, False, None)) == [3, 4, 5, 6]
    assert await log.truncate_stream("missing", 10) == 0
