"""The storage contract: every backend must pass these, through the public protocol only."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta, timezone

import pytest
from store_builders import T0, at, commit, event, lease_all, new_instance, settle

from taskloom.errors import InstanceExistsError
from taskloom.history import (
    EventRaised,
    ExecutionStarted,
    OrchestratorStarted,
    ParentInstance,
    SubOrchestrationInstanceFailed,
    TaskCompleted,
    TimerFired,
)
from taskloom.models import FailureDetails, Status
from taskloom.storage import Store, open_store
from taskloom.storage.base import (
    ActivityResult,
    InstanceQuery,
    InstanceRecord,
    Message,
    NewInstance,
    NewWorkItem,
)


def work(instance_id: str, task_id: int = 1, when: datetime = T0) -> NewWorkItem:
    return NewWorkItem(instance_id, f"{instance_id}:1", task_id, "act", '"arg"', when)


def result_for(instance_id: str, task_id: int = 1) -> Message:
    done = TaskCompleted(timestamp=T0, task_scheduled_id=task_id, result='"ok"')
    return Message(instance_id, done, T0, f"{instance_id}:1")


# -- instances ------------------------------------------------------------------------


async def test_create_and_get_round_trips_every_field(store: Store) -> None:
    record = InstanceRecord(
        instance_id="full",
        execution_id="exec-1",
        name="orch",
        status=Status.PENDING,
        created_at=datetime(2024, 2, 29, 23, 59, 59, 999999, tzinfo=UTC),
        updated_at=datetime(2024, 3, 1, 0, 0, 0, 1, tzinfo=UTC),
        version="1.2",
        input='{"a": [1, "é"]}',
        output='"out"',
        custom_status='{"step": 3}',
        failure=FailureDetails("ValueError", "bad", "trace", FailureDetails("KeyError", "k")),
        completed_at=datetime(2024, 3, 1, 0, 0, 1, 500000, tzinfo=UTC),
        parent_instance_id="parent",
        scheduled_start_at=datetime(2024, 3, 2, 0, 0, 0, 42, tzinfo=UTC),
        history_len=0,
    )
    start = new_instance("full").start
    await store.create_instance(dataclasses.replace(new_instance("full"), record=record))
    got = await store.get_instance("full")
    assert got == record
    assert got is not None and got.created_at.utcoffset() == timedelta(0)
    episode = (await lease_all(store, at(1)))["full"]
    assert [m.event for m in episode.messages] == [start.event]
    assert episode.messages[0].execution_id == start.execution_id


async def test_unknown_instance(store: Store) -> None:
    assert await store.get_instance("nope") is None
    assert await store.get_history("nope") == []
    assert await store.load_histories(["nope"]) == {"nope": []}


async def test_datetimes_keep_microseconds_and_become_utc(store: Store) -> None:
    plus2 = timezone(timedelta(hours=2))
    created = datetime(2024, 7, 1, 14, 30, 15, 654321, tzinfo=plus2)
    await store.create_instance(new_instance("tz", created=created))
    got = await store.get_instance("tz")
    assert got is not None
    assert got.created_at == created
    assert got.created_at.utcoffset() == timedelta(0)
    assert got.created_at.microsecond == 654321
    episode = (await lease_all(store, created))["tz"]
    assert episode.messages[0].visible_at == created
    assert episode.messages[0].event.timestamp == created
    assert await store.complete_episodes([commit(episode, now=created)], created) == [True]
    history = await store.get_history("tz")
    assert history[1].timestamp == created


async def test_create_duplicate_of_running_instance_raises(store: Store) -> None:
    await store.create_instance(new_instance("dup"))
    with pytest.raises(InstanceExistsError, match="dup"):
        await store.create_instance(new_instance("dup", name="other"))
    await settle(store, {"dup": Status.RUNNING})
    with pytest.raises(InstanceExistsError, match="dup"):
        await store.create_instance(new_instance("dup"))
    got = await store.get_instance("dup")
    assert got is not None and got.name == "orch" and got.status is Status.RUNNING


@pytest.mark.parametrize("status", [Status.COMPLETED, Status.FAILED, Status.TERMINATED])
async def test_create_replaces_terminal_instance(store: Store, status: Status) -> None:
    await store.create_instance(new_instance("again"))
    episode = (await lease_all(store))["again"]
    done = commit(episode, status=status, work_items=[work("again")])
    assert await store.complete_episodes([done], T0) == [True]
    await store.enqueue_messages([event("again", "late")])
    assert await store.get_history("again")

    await store.create_instance(new_instance("again", name="second", created=at(5)))
    got = await store.get_instance("again")
    assert got is not None
    assert (got.name, got.status, got.created_at, got.history_len) == (
        "second",
        Status.PENDING,
        at(5),
        0,
    )
    assert await store.get_history("again") == []
    assert await store.lease_activities(at(10), 10, 30, "w") == []
    episode = (await lease_all(store, at(10)))["again"]
    assert [type(m.event) for m in episode.messages] == [ExecutionStarted]


async def test_replaced_instance_rejects_commits_of_old_lease(store: Store) -> None:
    await store.create_instance(new_instance("old"))
    await settle(store, {"old": Status.COMPLETED})
    await store.enqueue_messages([event("old")])
    stale = (await lease_all(store))["old"]
    await store.create_instance(new_instance("old", name="fresh"))
    assert await store.complete_episodes([commit(stale, status=Status.FAILED)], T0) == [False]
    got = await store.get_instance("old")
    assert got is not None and (got.name, got.status) == ("fresh", Status.PENDING)


# -- episodes ---------------------------------------------------------------------------


async def test_message_visible_in_future_is_leased_only_then(store: Store) -> None:
    await store.create_instance(new_instance("later", start_at=at(60)))
    assert await store.lease_episodes(T0, 10, 30, "w") == []
    assert await store.lease_episodes(at(59.999999), 10, 30, "w") == []
    assert not await store.has_runnable(T0)
    assert await store.next_wakeup(T0) == at(60)
    episodes = await store.lease_episodes(at(60), 10, 30, "w")
    assert [e.instance.instance_id for e in episodes] == ["later"]


async def test_leased_instance_is_not_leased_again_until_expiry(store: Store) -> None:
    await store.create_instance(new_instance("busy"))
    first = (await lease_all(store, T0, lease_for=30))["busy"]
    assert await store.lease_episodes(at(29), 10, 30, "w2") == []
    second = (await lease_all(store, at(30)))["busy"]
    assert second.lease_token > first.lease_token
    assert [m.id for m in second.messages] == [m.id for m in first.messages]


async def test_stale_commit_is_refused_and_changes_nothing(store: Store) -> None:
    await store.create_instance(new_instance("fenced"))
    await store.create_instance(new_instance("bystander"))
    await settle(store, {"bystander": Status.RUNNING})
    stale = (await lease_all(store, T0, lease_for=10))["fenced"]
    fresh = (await lease_all(store, at(10)))["fenced"]
    before = await store.get_instance("fenced")

    refused = commit(
        stale,
        status=Status.COMPLETED,
        work_items=[work("fenced")],
        messages=[event("bystander")],
        new_instances=[new_instance("child-of-stale")],
    )
    assert await store.complete_episodes([refused], at(11)) == [False]
    assert await store.get_instance("fenced") == before
    assert await store.get_history("fenced") == []
    assert await store.get_instance("child-of-stale") is None
    assert await store.lease_activities(at(11), 10, 30, "w") == []
    assert "bystander" not in await lease_all(store, at(11))

    assert await store.complete_episodes([commit(fresh, now=at(11))], at(11)) == [True]
    assert len(await store.get_history("fenced")) == 2


async def test_one_stale_commit_does_not_discard_the_others(store: Store) -> None:
    await store.create_instance(new_instance("a"))
    episodes = await lease_all(store, T0, lease_for=5)
    await store.create_instance(new_instance("b"))
    episodes |= await lease_all(store, at(1), lease_for=30)
    retaken = (await lease_all(store, at(5)))["a"]
    results = await store.complete_episodes(
        [commit(episodes["a"], now=at(6)), commit(episodes["b"], now=at(6))], at(6)
    )
    assert results == [False, True]
    assert len(await store.get_history("b")) == 2
    assert await store.complete_episodes([commit(retaken, now=at(6))], at(6)) == [True]


async def test_commit_appends_then_replaces_history(store: Store) -> None:
    await store.create_instance(new_instance("hist"))
    first = (await lease_all(store))["hist"]
    assert await store.complete_episodes([commit(first)], T0) == [True]
    await store.enqueue_messages([event("hist", "one", at(1))])
    second = (await lease_all(store, at(1)))["hist"]
    assert second.instance.history_len == 2
    assert await store.complete_episodes([commit(second, now=at(1))], at(1)) == [True]
    history = await store.get_history("hist")
    assert [type(e) for e in history] == [
        OrchestratorStarted,
        ExecutionStarted,
        OrchestratorStarted,
        EventRaised,
    ]
    got = await store.get_instance("hist")
    assert got is not None and got.history_len == 4

    await store.enqueue_messages([event("hist", "two", at(2))])
    third = (await lease_all(store, at(2)))["hist"]
    restart = [OrchestratorStarted(timestamp=at(2)), new_instance("hist").start.event]
    replaced = commit(third, now=at(2), history=restart, replace_history=True)
    assert await store.complete_episodes([replaced], at(2)) == [True]
    assert await store.get_history("hist") == restart
    got = await store.get_instance("hist")
    assert got is not None and got.history_len == 2

    await store.enqueue_messages([event("hist", "three", at(3))])
    fourth = (await lease_all(store, at(3)))["hist"]
    assert await store.complete_episodes([commit(fourth, now=at(3))], at(3)) == [True]
    assert len(await store.get_history("hist")) == 4


async def test_consumed_messages_are_deleted_and_others_remain(store: Store) -> None:
    await store.create_instance(new_instance("inbox"))
    await store.enqueue_messages([event("inbox", n) for n in ("a", "b", "c")])
    episode = (await lease_all(store))["inbox"]
    names = [getattr(m.event, "name", None) for m in episode.messages]
    assert names == ["orch", "a", "b", "c"]
    ids = [m.id for m in episode.messages]
    assert ids == sorted(ids)
    done = commit(episode, consume=episode.messages[:3])
    assert await store.complete_episodes([done], T0) == [True]
    again = (await lease_all(store))["inbox"]
    assert [m.id for m in again.messages] == [ids[3]]


async def test_messages_arriving_during_an_episode_wait_for_the_next(store: Store) -> None:
    await store.create_instance(new_instance("mid"))
    episode = (await lease_all(store))["mid"]
    await store.enqueue_messages([event("mid", "during")])
    assert not await store.has_runnable(T0)
    assert await store.complete_episodes([commit(episode)], T0) == [True]
    assert await store.has_runnable(T0)
    again = (await lease_all(store))["mid"]
    assert [getattr(m.event, "name", None) for m in again.messages] == ["during"]


async def test_commit_enqueues_messages_for_self_and_others(store: Store) -> None:
    for name in ("sender", "receiver"):
        await store.create_instance(new_instance(name))
    episodes = await lease_all(store)
    timer = Message("sender", TimerFired(timestamp=at(30), timer_id=1, fire_at=at(30)), at(30))
    sent = commit(episodes["sender"], messages=[timer, event("receiver", "hello")])
    assert await store.complete_episodes([sent], T0) == [True]
    assert await store.complete_episodes([commit(episodes["receiver"])], T0) == [True]
    assert list(await lease_all(store, at(1))) == ["receiver"]
    assert await store.next_wakeup(at(1)) == at(30)
    fired = (await lease_all(store, at(30)))["sender"]
    assert fired.messages[0].event == timer.event


async def test_abandon_releases_at_once(store: Store) -> None:
    await store.create_instance(new_instance("drop"))
    episode = (await lease_all(store))["drop"]
    await store.abandon_episode("drop", episode.lease_token + 1000)
    assert await store.lease_episodes(T0, 10, 30, "w") == []
    await store.abandon_episode("drop", episode.lease_token)
    again = (await lease_all(store))["drop"]
    assert again.lease_token > episode.lease_token
    assert await store.complete_episodes([commit(episode)], T0) == [False]


async def test_lease_respects_limit_and_oldest_message_first(store: Store) -> None:
    await store.create_instance(new_instance("newer", start_at=at(2)))
    await store.create_instance(new_instance("older", start_at=at(1)))
    await store.create_instance(new_instance("newest", start_at=at(3)))
    first = await store.lease_episodes(at(5), 2, 30, "w")
    assert [e.instance.instance_id for e in first] == ["older", "newer"]
    rest = await store.lease_episodes(at(5), 2, 30, "w")
    assert [e.instance.instance_id for e in rest] == ["newest"]


async def test_messages_for_unknown_instances_are_not_leased(store: Store) -> None:
    await store.enqueue_messages([event("ghost", when=T0), event("ghost", when=at(10))])
    assert await store.lease_episodes(at(20), 10, 30, "w") == []
    assert not await store.has_runnable(at(20))
    assert await store.next_wakeup(T0) is None
    # A later instance with that id does not inherit them.
    await store.create_instance(new_instance("ghost", created=at(20)))
    episode = (await lease_all(store, at(20)))["ghost"]
    assert [type(m.event) for m in episode.messages] == [ExecutionStarted]


async def test_load_histories_of_several_instances(store: Store) -> None:
    for name in ("h1", "h2", "h3"):
        await store.create_instance(new_instance(name))
    episodes = await lease_all(store)
    commits = [commit(episodes["h1"]), commit(episodes["h2"])]
    assert await store.complete_episodes(commits, T0) == [True, True]
    got = await store.load_histories(["h1", "h2", "h3", "unknown"])
    assert set(got) == {"h1", "h2", "h3", "unknown"}
    assert got["h1"] == await store.get_history("h1")
    assert len(got["h2"]) == 2
    assert got["h3"] == got["unknown"] == []


# -- sub-orchestrations -------------------------------------------------------------------


def child_of(parent: str, child: str, task_id: int = 7) -> NewInstance:
    return new_instance(child, parent=ParentInstance("orch", parent, task_id, f"{parent}:1"))


async def test_commit_creates_child_instance(store: Store) -> None:
    await store.create_instance(new_instance("parent"))
    episode = (await lease_all(store))["parent"]
    child = child_of("parent", "child")
    assert await store.complete_episodes([commit(episode, new_instances=[child])], T0) == [True]
    got = await store.get_instance("child")
    assert got is not None and got.parent_instance_id == "parent"
    assert (
        await store.query_instances(InstanceQuery(parent_instance_id="parent"), 10, None)
    ).records == [got]
    started = (await lease_all(store))["child"].messages[0].event
    assert isinstance(started, ExecutionStarted) and started.parent is not None


async def test_child_with_running_id_fails_the_parent_instead(store: Store) -> None:
    await store.create_instance(new_instance("taken"))
    await settle(store, {"taken": Status.RUNNING})
    await store.create_instance(new_instance("parent"))
    episode = (await lease_all(store))["parent"]
    child = child_of("parent", "taken", task_id=7)
    assert await store.complete_episodes([commit(episode, new_instances=[child])], at(1)) == [True]
    kept = await store.get_instance("taken")
    assert kept is not None and kept.status is Status.RUNNING and kept.parent_instance_id is None
    leased = await lease_all(store, at(1))
    assert list(leased) == ["parent"]
    failed = leased["parent"].messages[0]
    assert isinstance(failed.event, SubOrchestrationInstanceFailed)
    assert failed.event.task_scheduled_id == 7
    assert failed.event.failure is not None and "taken" in failed.event.failure.message
    assert failed.execution_id == "parent:1"


async def test_child_with_terminal_id_replaces_it(store: Store) -> None:
    await store.create_instance(new_instance("finished", name="old"))
    await settle(store, {"finished": Status.COMPLETED})
    await store.create_instance(new_instance("parent"))
    episode = (await lease_all(store))["parent"]
    child = child_of("parent", "finished")
    assert await store.complete_episodes([commit(episode, new_instances=[child])], T0) == [True]
    got = await store.get_instance("finished")
    assert got is not None and (got.name, got.status) == ("orch", Status.PENDING)
    assert await store.get_history("finished") == []


# -- activities ---------------------------------------------------------------------------


async def started_with_work(store: Store, instance_id: str, *items: NewWorkItem) -> None:
    await store.create_instance(new_instance(instance_id))
    episode = (await lease_all(store))[instance_id]
    assert await store.complete_episodes([commit(episode, work_items=list(items))], T0) == [True]


async def test_work_items_lease_and_complete(store: Store) -> None:
    await started_with_work(store, "acts", work("acts", 1), work("acts", 2, at(100)))
    items = await store.lease_activities(T0, 10, 30, "w")
    assert [(i.instance_id, i.task_id, i.name, i.input, i.attempt) for i in items] == [
        ("acts", 1, "act", '"arg"', 1)
    ]
    assert items[0].execution_id == "acts:1"
    assert await store.lease_activities(T0, 10, 30, "w") == []
    assert not await store.has_runnable(T0)

    assert await store.complete_activities(
        [ActivityResult(items[0].id, items[0].lease_token, result_for("acts", 1))], at(1)
    ) == [True]
    inbox = (await lease_all(store, at(1)))["acts"].messages
    assert [m.event for m in inbox] == [result_for("acts", 1).event]

    later = await store.lease_activities(at(100), 10, 30, "w")
    assert [i.task_id for i in later] == [2]


async def test_activity_lease_expiry_counts_attempts_and_fences(store: Store) -> None:
    await started_with_work(store, "retry", work("retry"))
    first = (await store.lease_activities(T0, 10, 10, "w1"))[0]
    assert await store.lease_activities(at(9), 10, 10, "w2") == []
    assert await store.next_wakeup(at(1)) == at(10)
    second = (await store.lease_activities(at(10), 10, 10, "w2"))[0]
    assert (second.id, second.attempt) == (first.id, 2)
    assert second.lease_token > first.lease_token

    stale = ActivityResult(first.id, first.lease_token, result_for("retry"))
    assert await store.complete_activities([stale], at(11)) == [False]
    assert await store.lease_episodes(at(11), 10, 30, "w") == []
    fresh = ActivityResult(second.id, second.lease_token, result_for("retry"))
    # The same item twice in one batch (a retry finishing next to the lost original):
    # only the current token counts, so exactly one result message is enqueued.
    assert await store.complete_activities([fresh, stale], at(11)) == [True, False]
    assert await store.complete_activities([fresh], at(12)) == [False]
    assert len((await lease_all(store, at(12)))["retry"].messages) == 1


async def test_renew_keeps_the_lease_and_fails_when_lost(store: Store) -> None:
    await started_with_work(store, "long", work("long", 1), work("long", 2))
    one, two = await store.lease_activities(T0, 10, 10, "w")
    assert await store.renew_activities(
        [(one.id, one.lease_token), (two.id, two.lease_token + 99)], at(8), 10
    ) == [True, False]
    retaken = await store.lease_activities(at(10), 10, 10, "w2")
    assert [i.id for i in retaken] == [two.id]
    assert await store.lease_activities(at(17.9), 10, 10, "w2") == []
    assert [i.id for i in await store.lease_activities(at(18), 10, 10, "w2")] == [one.id]
    assert await store.renew_activities([(one.id, one.lease_token)], at(19), 10) == [False]


async def test_lease_activities_respects_limit_oldest_first(store: Store) -> None:
    items = [work("many", n, at(n)) for n in range(5)]
    await started_with_work(store, "many", *items)
    first = await store.lease_activities(at(10), 3, 30, "w")
    assert [i.task_id for i in first] == [0, 1, 2]
    rest = await store.lease_activities(at(10), 3, 30, "w")
    assert [i.task_id for i in rest] == [3, 4]


# -- queries ------------------------------------------------------------------------------


async def ids(store: Store, query: InstanceQuery) -> list[str]:
    return [r.instance_id for r in (await store.query_instances(query, 1000, None)).records]


async def test_query_filters(store: Store) -> None:
    await store.create_instance(new_instance("a-1", name="alpha", created=at(1)))
    await store.create_instance(new_instance("a-2", name="alpha", created=at(2)))
    await store.create_instance(new_instance("A-3", name="beta", created=at(3)))
    await store.create_instance(new_instance("a_%4", name="beta", created=at(4)))
    await store.create_instance(new_instance("ax5", name="gamma", created=at(5)))
    await settle(
        store, {"a-1": Status.COMPLETED, "a-2": Status.FAILED, "A-3": Status.RUNNING}, at(10)
    )

    assert await ids(store, InstanceQuery()) == ["a-1", "a-2", "A-3", "a_%4", "ax5"]
    done = frozenset({Status.COMPLETED, Status.FAILED})
    assert await ids(store, InstanceQuery(statuses=done)) == ["a-1", "a-2"]
    assert await ids(store, InstanceQuery(statuses=frozenset({Status.PENDING}))) == ["a_%4", "ax5"]
    assert await ids(store, InstanceQuery(statuses=frozenset())) == []
    assert await ids(store, InstanceQuery(name="beta")) == ["A-3", "a_%4"]
    assert await ids(store, InstanceQuery(name="bet")) == []
    assert await ids(store, InstanceQuery(instance_id_prefix="a-")) == ["a-1", "a-2"]
    assert await ids(store, InstanceQuery(instance_id_prefix="a_")) == ["a_%4"]
    assert await ids(store, InstanceQuery(instance_id_prefix="a_%")) == ["a_%4"]
    assert await ids(store, InstanceQuery(instance_id_prefix="A")) == ["A-3"]
    assert await ids(store, InstanceQuery(instance_id_prefix="ax5")) == ["ax5"]
    assert await ids(store, InstanceQuery(created_from=at(2), created_to=at(4))) == [
        "a-2",
        "A-3",
        "a_%4",
    ]
    assert await ids(store, InstanceQuery(created_from=at(4.000001))) == ["ax5"]
    assert await ids(store, InstanceQuery(created_to=at(1))) == ["a-1"]
    assert await ids(store, InstanceQuery(parent_instance_id="a-1")) == []
    both = InstanceQuery(statuses=done, name="alpha", instance_id_prefix="a-2")
    assert await ids(store, both) == ["a-2"]


async def test_paging_visits_every_instance_once(store: Store) -> None:
    # Three instances per timestamp, so the page boundaries fall inside ties.
    expected = []
    for n in range(250):
        instance_id = f"p{(n * 7919) % 1000:04d}"
        await store.create_instance(new_instance(instance_id, created=at(n // 3)))
        expected.append((at(n // 3), instance_id))
    expected.sort()
    seen: list[tuple[datetime, str]] = []
    sizes = []
    token: str | None = None
    for _ in range(10):
        page = await store.query_instances(InstanceQuery(), 100, token)
        sizes.append(len(page.records))
        seen += [(r.created_at, r.instance_id) for r in page.records]
        token = page.continuation_token
        if token is None:
            break
    assert sizes == [100, 100, 50]
    assert seen == expected

    filtered = InstanceQuery(instance_id_prefix="p0")
    first = await store.query_instances(filtered, 40, None)
    assert first.continuation_token is not None
    second = await store.query_instances(filtered, 1000, first.continuation_token)
    assert second.continuation_token is None
    every = [r.instance_id for r in first.records + second.records]
    assert sorted(every) == sorted(i for _, i in expected if i.startswith("p0"))
    assert len(set(every)) == len(every)


async def test_exact_page_has_no_continuation(store: Store) -> None:
    for n in range(3):
        await store.create_instance(new_instance(f"e{n}", created=at(n)))
    page = await store.query_instances(InstanceQuery(), 3, None)
    assert len(page.records) == 3 and page.continuation_token is None


# -- purge ---------------------------------------------------------------------------------


async def test_purge_by_filter_only_touches_terminal(store: Store) -> None:
    statuses = {
        "done": Status.COMPLETED,
        "failed": Status.FAILED,
        "killed": Status.TERMINATED,
        "running": Status.RUNNING,
    }
    for instance_id in [*statuses, "pending"]:
        await store.create_instance(new_instance(instance_id))
    await settle(store, statuses)
    await store.enqueue_messages([event("done", "late")])

    assert await store.purge_instances(InstanceQuery(statuses=frozenset({Status.FAILED}))) == 1
    assert await store.get_instance("failed") is None
    assert await store.purge_instances(InstanceQuery()) == 2
    for gone in ("done", "killed"):
        assert await store.get_instance(gone) is None
        assert await store.get_history(gone) == []
    assert await ids(store, InstanceQuery()) == ["pending", "running"]
    assert await store.get_history("running") != []
    assert await store.purge_instances(InstanceQuery()) == 0
    # The purged instance's leftover message is gone too: a new "done" starts clean.
    await store.create_instance(new_instance("done", created=at(1)))
    episode = (await lease_all(store, at(1)))["done"]
    assert [type(m.event) for m in episode.messages] == [ExecutionStarted]


async def test_purge_by_ids(store: Store) -> None:
    for instance_id in ("x1", "x2", "x3", "run"):
        await store.create_instance(new_instance(instance_id))
    await settle(
        store,
        {
            "x1": Status.COMPLETED,
            "x2": Status.COMPLETED,
            "x3": Status.FAILED,
            "run": Status.RUNNING,
        },
    )
    count = await store.purge_instances(InstanceQuery(), ["x1", "run", "missing", "x1"])
    assert count == 1
    assert await ids(store, InstanceQuery()) == ["run", "x2", "x3"]
    only_completed = InstanceQuery(statuses=frozenset({Status.COMPLETED}))
    assert await store.purge_instances(only_completed, ["x2", "x3"]) == 1
    assert await ids(store, InstanceQuery()) == ["run", "x3"]
    assert await store.purge_instances(InstanceQuery(), []) == 0


async def test_purge_removes_work_items(store: Store) -> None:
    await started_with_work(store, "w")
    episode_work = work("w")
    await store.enqueue_messages([event("w")])
    episode = (await lease_all(store))["w"]
    ended = commit(episode, status=Status.TERMINATED, work_items=[episode_work])
    assert await store.complete_episodes([ended], T0) == [True]
    assert await store.purge_instances(InstanceQuery()) == 1
    assert await store.lease_activities(at(1), 10, 30, "w") == []
    assert await store.next_wakeup(T0) is None


# -- time and wake-ups ----------------------------------------------------------------------


async def test_next_wakeup_and_has_runnable(store: Store) -> None:
    assert await store.next_wakeup(T0) is None
    assert not await store.has_runnable(T0)

    await store.create_instance(new_instance("clock"))
    assert await store.has_runnable(T0)
    assert await store.next_wakeup(T0) is None
    episode = (await lease_all(store, T0, lease_for=20))["clock"]
    assert not await store.has_runnable(T0)
    assert await store.next_wakeup(T0) == at(20)
    assert await store.has_runnable(at(20))

    timer = Message("clock", TimerFired(timestamp=at(50), timer_id=1, fire_at=at(50)), at(50))
    ok = await store.complete_episodes(
        [commit(episode, messages=[timer], work_items=[work("clock", 2, at(40))])], at(1)
    )
    assert ok == [True]
    assert not await store.has_runnable(at(1))
    assert await store.next_wakeup(at(1)) == at(40)
    assert await store.has_runnable(at(40))
    item = (await store.lease_activities(at(40), 10, 5, "w"))[0]
    assert await store.next_wakeup(at(40)) == at(45)
    assert not await store.has_runnable(at(41))
    done = ActivityResult(item.id, item.lease_token, result_for("clock", 2))
    assert await store.complete_activities([done], at(41)) == [True]
    assert await store.has_runnable(at(41))
    assert await store.next_wakeup(at(41)) == at(50)


async def test_listeners_hear_about_new_work(store: Store) -> None:
    calls: list[str] = []

    def listener() -> None:
        calls.append("x")

    store.add_listener(listener)
    await store.create_instance(new_instance("loud"))
    assert calls
    calls.clear()
    await store.enqueue_messages([event("loud")])
    assert calls
    calls.clear()
    episode = (await lease_all(store))["loud"]
    assert await store.complete_episodes([commit(episode, work_items=[work("loud")])], T0) == [True]
    assert calls
    calls.clear()
    item = (await store.lease_activities(T0, 10, 30, "w"))[0]
    result = ActivityResult(item.id, item.lease_token, result_for("loud"))
    assert await store.complete_activities([result], T0) == [True]
    assert calls
    store.remove_listener(listener)
    store.remove_listener(listener)
    calls.clear()
    await store.enqueue_messages([event("loud")])
    assert calls == []


# -- hubs -----------------------------------------------------------------------------------


async def test_hubs_are_isolated(store: Store, store_url: str, hub: str) -> None:
    other = open_store(store_url, hub=hub + "x")
    await other.open()
    try:
        await store.create_instance(new_instance("same", name="mine"))
        await other.create_instance(new_instance("same", name="theirs"))
        await other.create_instance(new_instance("only-there"))
        mine = await store.get_instance("same")
        assert mine is not None and mine.name == "mine"
        assert await store.get_instance("only-there") is None
        assert await ids(store, InstanceQuery()) == ["same"]

        assert list(await lease_all(store)) == ["same"]
        assert not await store.has_runnable(T0)
        assert await other.has_runnable(T0)
        theirs = await lease_all(other)
        assert set(theirs) == {"same", "only-there"}
        await store.enqueue_messages([event("only-there")])
        done = [commit(e, status=Status.COMPLETED) for e in theirs.values()]
        assert await other.complete_episodes(done, T0) == [True, True]
        assert await store.get_history("same") == []
        assert await store.purge_instances(InstanceQuery()) == 0
        assert await other.purge_instances(InstanceQuery()) == 2
        assert await store.get_instance("same") is not None
    finally:
        await other.close()


async def test_open_and_close_are_idempotent(store: Store) -> None:
    await store.open()
    await store.create_instance(new_instance("idem"))
    await store.close()
    await store.close()
    await store.open()
    assert await store.get_instance("idem") is not None
