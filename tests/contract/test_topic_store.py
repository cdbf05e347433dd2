"""The topics' storage contract: subscriptions, fan-out into delivery rows, leases with
fencing, retries, dead letters and redrive. Every backend passes these through
:class:`TopicStore` and :class:`EventLogStore` only."""

from __future__ import annotations

from datetime import datetime

import pytest
from event_builders import app, event_log, ids
from store_builders import T0, at

from taskloom.events.records import StreamState
from taskloom.storage import Store
from taskloom.storage.events_base import EventLogStore, EventTx
from taskloom.storage.topics_base import (
    Delivery,
    SubscriptionRecord,
    TopicStore,
    fanout_consumer,
    topic_stream,
)

SUB = "orders-audit"
TOPIC = "orders"


@pytest.fixture
def topics(store: Store) -> TopicStore:
    assert isinstance(store, TopicStore), f"{type(store).__name__} has no topics"
    return store


@pytest.fixture
def log(store: Store) -> EventLogStore:
    return event_log(store)


async def publish(log: EventLogStore, *event_ids: str, now: datetime = T0) -> None:
    await log.append_events([app(topic_stream(TOPIC), *event_ids)], now)


async def fan_out(log: EventLogStore, subscription: str = SUB, due: datetime = T0) -> int:
    """Run the fan-out consumer once over everything new: every event becomes a row."""
    consumer = fanout_consumer(subscription)
    await log.consumer_ensure(consumer, 1, 0, T0)
    (lease,) = await log.consumer_lease(consumer, "A", T0, 30, 1)
    events = await log.read_log(lease.position, 100, stream=topic_stream(TOPIC))

    def hook(tx: EventTx) -> int:
        tx.schedule_deliveries(subscription, TOPIC, events, due)
        return events[-1].position if events else lease.position

    position = await log.consumer_apply(lease, T0, hook)
    await log.consumer_release(consumer, [lease])
    assert position is not None
    return len(events)


async def test_subscriptions_are_created_replaced_listed_and_deleted(topics: TopicStore) -> None:
    record = SubscriptionRecord(SUB, TOPIC, "webhook", '{"endpoint": "a"}', T0, T0)
    assert await topics.subscription_put(record) is True
    changed = SubscriptionRecord(SUB, TOPIC, "webhook", '{"endpoint": "b"}', at(5), at(5))
    assert await topics.subscription_put(changed) is False
    got = await topics.subscription_get(SUB)
    assert got is not None
    assert (got.spec, got.created_at, got.updated_at) == ('{"endpoint": "b"}', T0, at(5))
    other = SubscriptionRecord("x", "other", "trigger", "{}", T0, T0)
    await topics.subscription_put(other)
    assert [r.name for r in await topics.subscription_list()] == [SUB, "x"]
    assert [r.name for r in await topics.subscription_list(TOPIC)] == [SUB]
    assert await topics.subscription_delete(SUB) is True
    assert await topics.subscription_delete(SUB) is False
    assert await topics.subscription_get(SUB) is None


async def test_read_log_follows_one_stream(log: EventLogStore) -> None:
    await log.append_events([app("other", "o1")], T0)
    await publish(log, "a", "b")
    await log.append_events([app("other", "o2")], T0)
    await publish(log, "c")
    got = await log.read_log(0, 10, stream=topic_stream(TOPIC))
    assert ids(got) == ["a", "b", "c"]
    assert ids(await log.read_log(got[1].position, 10, stream=topic_stream(TOPIC))) == ["c"]


async def same_as_filtering_the_log(log: EventLogStore, stream: str) -> list[int]:
    """Reads of ``stream`` after every position give what a filter of the whole log does;
    the stream's versions."""
    head = await log.log_head()
    whole = [e for e in await log.read_log(0, head + 10) if e.stream_id == stream]
    for after in range(head + 2):
        for limit in (1, 3, 100):
            want = [e.position for e in whole if e.position > after][:limit]
            got = await log.read_log(after, limit, stream=stream)
            assert [e.position for e in got] == want, (after, limit)
    return [e.version for e in whole]


async def test_read_log_of_a_stream_after_any_position(log: EventLogStore) -> None:
    """After the stream's own positions, others', below its first and past the head;
    with other streams between its events, and across a truncation, a soft delete and
    recreation (versions go on), and a purge and recreation (versions start again)."""
    for k in range(30):
        await log.append_events([app("s", f"a{k}")] + [app(f"o{k % 3}", f"o{k}")] * (k % 4), T0)
    assert await same_as_filtering_the_log(log, "s") == list(range(1, 31))
    assert await log.truncate_stream("s", 6) == 5
    await log.delete_stream("s", StreamState.ANY, purge=False)
    for k in range(5):
        await log.append_events([app("o0", f"p{k}"), app("s", f"b{k}")], T0)
    assert await same_as_filtering_the_log(log, "s") == list(range(6, 36))
    await log.delete_stream("s", StreamState.ANY, purge=True)
    for k in range(7):
        await log.append_events([app("s", f"c{k}"), app("o1", f"q{k}")], T0)
    assert await same_as_filtering_the_log(log, "s") == list(range(1, 8))


async def test_fan_out_rows_are_leased_oldest_first_with_their_events(
    log: EventLogStore, topics: TopicStore
) -> None:
    await publish(log, "a", "b", "c")
    assert await fan_out(log) == 3
    assert await fan_out(log) == 0  # the checkpoint moved with the rows
    first = await topics.delivery_lease(SUB, "A", T0, 30, 2)
    assert [d.event.id for d in first if d.event] == ["a", "b"]
    assert all(d.attempts == 1 and d.topic == TOPIC for d in first)
    assert first[0].published_at == first[0].event.recorded_at if first[0].event else False
    # Leased rows are hidden until the lease lapses; the third is still due.
    rest = await topics.delivery_lease(SUB, "B", T0, 30, 10)
    assert [d.event.id for d in rest if d.event] == ["c"]
    assert await topics.delivery_lease(SUB, "B", at(10), 30, 10) == []
    lapsed = await topics.delivery_lease(SUB, "B", at(31), 30, 10)
    assert sorted(d.attempts for d in lapsed) == [2, 2, 2]


async def test_a_lost_lease_cannot_settle_retry_or_dead_letter(
    log: EventLogStore, topics: TopicStore
) -> None:
    await publish(log, "a")
    await fan_out(log)
    (old,) = await topics.delivery_lease(SUB, "A", T0, 1, 1)
    (new,) = await topics.delivery_lease(SUB, "B", at(2), 30, 1)
    assert new.lease_token > old.lease_token
    assert await topics.delivery_settle(old, at(3)) is False
    assert await topics.delivery_retry(old, at(60), "boom", at(3)) is False
    assert await topics.delivery_dead_letter(old, "x", "boom", at(3)) is False
    assert await topics.delivery_settle(new, at(3)) is True
    assert await topics.delivery_stats() == []


async def test_settling_commits_the_hooks_effects_or_nothing(
    log: EventLogStore, topics: TopicStore
) -> None:
    await publish(log, "a", "b")
    await fan_out(log)
    a, b = await topics.delivery_lease(SUB, "A", T0, 30, 2)

    def effects(tx: EventTx) -> None:
        tx.append([app("audit", "seen-a")])

    assert await topics.delivery_settle(a, at(1), effects) is True
    assert ids(await log.read_stream("audit", None, False, None)) == ["seen-a"]

    def failing(tx: EventTx) -> None:
        tx.append([app("audit", "seen-b")])
        raise RuntimeError("handler effects refused")

    with pytest.raises(RuntimeError):
        await topics.delivery_settle(b, at(1), failing)
    assert ids(await log.read_stream("audit", None, False, None)) == ["seen-a"]
    (stats,) = await topics.delivery_stats()
    assert stats.pending == 1  # b was not acknowledged


async def test_retry_sets_the_next_due_time(log: EventLogStore, topics: TopicStore) -> None:
    await publish(log, "a")
    await fan_out(log)
    (d,) = await topics.delivery_lease(SUB, "A", T0, 30, 1)
    assert await topics.delivery_retry(d, at(10), "HandlerError: boom", at(1)) is True
    assert await topics.delivery_next_due([SUB]) == at(10)
    assert await topics.delivery_lease(SUB, "A", at(9), 30, 1) == []
    (again,) = await topics.delivery_lease(SUB, "A", at(10), 30, 1)
    assert (again.attempts, again.last_outcome) == (2, "HandlerError: boom")


async def dead_letter_one(log: EventLogStore, topics: TopicStore) -> Delivery:
    await publish(log, "a", "b")
    await fan_out(log)
    d, _ = await topics.delivery_lease(SUB, "A", at(1), 30, 2)
    assert await topics.delivery_dead_letter(d, "MaxDeliveryAttemptsExceeded", "500", at(2))
    return d


async def test_dead_letters_keep_event_grids_fields(log: EventLogStore, topics: TopicStore) -> None:
    d = await dead_letter_one(log, topics)
    (letter,) = await topics.dead_letters(TOPIC, None, 10)
    assert letter.event is not None and letter.event.id == "a"
    assert (letter.subscription, letter.position, letter.topic) == (SUB, d.position, TOPIC)
    assert (letter.reason, letter.delivery_attempts) == ("MaxDeliveryAttemptsExceeded", 1)
    assert letter.last_delivery_outcome == "500"
    assert (letter.last_attempt_at, letter.dead_lettered_at) == (at(1), at(2))
    assert letter.published_at == d.published_at
    assert await topics.dead_letters("other", None, 10) == []
    assert await topics.dead_letters(None, "other", 10) == []
    (stats,) = await topics.delivery_stats()
    assert (stats.pending, stats.dead_letters) == (1, 1)


async def test_redrive_moves_dead_letters_back_with_a_fresh_start(
    log: EventLogStore, topics: TopicStore
) -> None:
    d = await dead_letter_one(log, topics)
    assert await topics.redrive(TOPIC, SUB, [d.position + 1000], at(5)) == 0
    assert await topics.redrive(TOPIC, SUB, [], at(5)) == 0
    assert await topics.redrive(TOPIC, SUB, None, at(5)) == 1
    assert await topics.dead_letters(None, None, 10) == []
    leased = await topics.delivery_lease(SUB, "A", at(5), 30, 10)
    redriven = next(x for x in leased if x.position == d.position)
    assert (redriven.attempts, redriven.published_at) == (1, at(5))


async def test_a_purged_event_is_delivered_as_none(log: EventLogStore, topics: TopicStore) -> None:
    await publish(log, "a")
    await fan_out(log)
    await log.delete_stream(topic_stream(TOPIC), StreamState.ANY, purge=True)
    (d,) = await topics.delivery_lease(SUB, "A", T0, 30, 1)
    assert d.event is None


async def test_deleting_a_subscription_drops_its_rows_and_consumer(
    log: EventLogStore, topics: TopicStore
) -> None:
    await topics.subscription_put(SubscriptionRecord(SUB, TOPIC, "trigger", "{}", T0, T0))
    await dead_letter_one(log, topics)
    assert await topics.subscription_delete(SUB)
    assert await topics.delivery_stats() == []
    assert await log.consumer_states(fanout_consumer(SUB)) == []


async def test_position_at_finds_the_first_event_at_or_after_a_time(
    log: EventLogStore, topics: TopicStore
) -> None:
    await publish(log, "a", now=at(0))
    await publish(log, "b", now=at(10))
    await publish(log, "c", now=at(20))
    events = await log.read_log(0, 10, stream=topic_stream(TOPIC))
    stream = topic_stream(TOPIC)
    assert await topics.position_at(stream, at(5)) == events[1].position - 1
    assert await topics.position_at(stream, at(-5)) == events[0].position - 1
    assert await topics.position_at(stream, at(30)) == await log.log_head()


async def test_ack_deletes_the_rows_still_leased(log: EventLogStore, topics: TopicStore) -> None:
    await publish(log, "a", "b", "c")
    await fan_out(log)
    a, b = await topics.delivery_lease(SUB, "A", T0, 30, 2)
    (c,) = await topics.delivery_lease(SUB, "A", T0, 1, 1)
    (c2,) = await topics.delivery_lease(SUB, "B", at(2), 30, 3)  # A's lease of c lapsed
    assert c2.position == c.position
    assert await topics.delivery_ack([]) == 0
    assert await topics.delivery_ack([a, b, c]) == 2
    (stats,) = await topics.delivery_stats()
    assert stats.pending == 1
    assert await topics.delivery_ack([c2]) == 1
    assert await topics.delivery_stats() == []
