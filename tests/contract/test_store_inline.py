"""Inline episodes in the storage contract: an activity result and the episode planned
from it commit together, only when the instance is as the planner's last commit left it."""

from __future__ import annotations

import dataclasses
from collections.abc import Collection

from store_builders import T0, at, commit, event, lease_all, new_instance
from test_store import result_for, work

from taskloom.history import ExecutionCompleted, OrchestratorStarted
from taskloom.models import Status
from taskloom.storage import Store
from taskloom.storage.base import (
    ActivityResult,
    EagerActivities,
    EpisodeCommit,
    InlineEpisodes,
    LeasedEpisode,
    Message,
)


async def _waiting(store: Store, iid: str, tasks: int = 1) -> tuple[EpisodeCommit, list[int]]:
    """An instance whose last episode scheduled ``tasks`` activities, leased to "me":
    the commit that left it so, and the items' ids."""
    await store.create_instance(new_instance(iid))
    episode = (await lease_all(store))[iid]
    eager = EagerActivities("me", at(30), limit=tasks)
    items = [work(iid, n) for n in range(1, tasks + 1)]
    last = commit(episode, work_items=items)
    assert await store.complete_episodes([last], T0, eager) == [True]
    return last, [w.id for w in eager.leased]


def _next(last: EpisodeCommit, results: list[Message], *, done: bool = False) -> EpisodeCommit:
    """The episode the worker would plan from ``last`` with ``results`` as its inbox."""
    episode = LeasedEpisode(last.instance, results, last.lease_token)
    history = [OrchestratorStarted(timestamp=at(1)), *(m.event for m in results)]
    status = Status.RUNNING
    if done:
        history.append(ExecutionCompleted(timestamp=at(1), status=Status.COMPLETED, result="1"))
        status = Status.COMPLETED
    planned = commit(episode, status=status, now=at(1), history=history)
    return dataclasses.replace(planned, consumed=(), prior_status=last.instance.status)


def _results(iid: str, ids: list[int], tokens: int = 1) -> list[ActivityResult]:
    return [ActivityResult(i, tokens, result_for(iid, n + 1)) for n, i in enumerate(ids)]


async def test_an_inline_episode_commits_with_its_result(store: Store) -> None:
    last, ids = await _waiting(store, "i1")
    results = _results("i1", ids)
    planned = dataclasses.replace(
        _next(last, [r.message for r in results]), work_items=[work("i1", 2)]
    )
    activities = EagerActivities("me", at(40), limit=5)
    inline = InlineEpisodes({"i1": planned}, {"i1": 1}, activities)
    assert await store.complete_activities(results, at(1), inline=inline) == [True]
    assert inline.applied == {"i1"}
    assert [w.task_id for w in activities.leased] == [2]
    # Nothing waits in the inbox; the history holds both episodes.
    assert await lease_all(store, at(2)) == {}
    history = await store.get_history("i1")
    assert len(history) == planned.instance.history_len
    assert history[-1] == results[0].message.event
    record = await store.get_instance("i1")
    assert record is not None and record.history_len == planned.instance.history_len
    # A second inline episode chains on the first: same token, the new length.
    second = _results("i1", [activities.leased[0].id])
    done = _next(planned, [second[0].message], done=True)
    again = InlineEpisodes({"i1": done}, {"i1": 1})
    assert await store.complete_activities(second, at(3), inline=again) == [True]
    assert again.applied == {"i1"}
    finished = await store.get_instance("i1")
    assert finished is not None and finished.status is Status.COMPLETED


async def test_another_message_in_the_inbox_sends_the_result_as_usual(store: Store) -> None:
    last, ids = await _waiting(store, "i2")
    await store.enqueue_messages([event("i2", when=T0)])
    results = _results("i2", ids)
    inline = InlineEpisodes({"i2": _next(last, [r.message for r in results])}, {"i2": 1})
    assert await store.complete_activities(results, at(1), inline=inline) == [True]
    assert inline.applied == set()
    inbox = (await lease_all(store, at(2)))["i2"].messages
    assert [type(m.event).__name__ for m in inbox] == ["EventRaised", "TaskCompleted"]
    record = await store.get_instance("i2")
    assert record is not None and record.history_len == last.instance.history_len


async def test_a_lease_taken_since_defeats_the_inline_episode(store: Store) -> None:
    last, ids = await _waiting(store, "i3")
    await store.enqueue_messages([event("i3")])
    taken = (await lease_all(store))["i3"]  # someone holds it now
    results = _results("i3", ids)
    inline = InlineEpisodes({"i3": _next(last, [r.message for r in results])}, {"i3": 1})
    assert await store.complete_activities(results, at(1), inline=inline) == [True]
    assert inline.applied == set()
    # Released again (no commit): its token moved on, so the old plan still cannot apply.
    await store.abandon_episode("i3", taken.lease_token)
    inbox = (await lease_all(store, at(2)))["i3"].messages
    assert [type(m.event).__name__ for m in inbox] == ["EventRaised", "TaskCompleted"]


async def test_a_history_changed_since_defeats_the_inline_episode(store: Store) -> None:
    last, ids = await _waiting(store, "i4")
    await store.enqueue_messages([event("i4")])
    episode = (await lease_all(store))["i4"]
    assert await store.complete_episodes([commit(episode)], T0) == [True]
    # The planner's view is one episode old (its token is also stale).
    results = _results("i4", ids)
    inline = InlineEpisodes({"i4": _next(last, [r.message for r in results])}, {"i4": 1})
    assert await store.complete_activities(results, at(1), inline=inline) == [True]
    assert inline.applied == set()
    inbox = (await lease_all(store, at(2)))["i4"].messages
    assert [type(m.event).__name__ for m in inbox] == ["TaskCompleted"]


async def test_a_lost_result_defeats_the_episode_planned_with_it(store: Store) -> None:
    last, ids = await _waiting(store, "i5", tasks=2)
    good, stale = _results("i5", ids)
    stale = dataclasses.replace(stale, lease_token=99)
    inline = InlineEpisodes({"i5": _next(last, [good.message, stale.message])}, {"i5": 2})
    assert await store.complete_activities([good, stale], at(1), inline=inline) == [True, False]
    assert inline.applied == set()
    inbox = (await lease_all(store, at(2)))["i5"].messages
    assert [m.event for m in inbox] == [good.message.event]


async def test_results_counted_wrong_defeat_the_inline_episode(store: Store) -> None:
    last, ids = await _waiting(store, "i6", tasks=2)
    first, _ = _results("i6", ids)
    inline = InlineEpisodes({"i6": _next(last, [first.message])}, {"i6": 2})
    assert await store.complete_activities([first], at(1), inline=inline) == [True]
    assert inline.applied == set()
    assert len((await lease_all(store, at(2)))["i6"].messages) == 1


async def test_two_results_and_their_episode_commit_together(store: Store) -> None:
    last, ids = await _waiting(store, "i7", tasks=2)
    results = _results("i7", ids)
    planned = _next(last, [r.message for r in results], done=True)
    inline = InlineEpisodes({"i7": planned}, {"i7": 2})
    assert await store.complete_activities(results, at(1), inline=inline) == [True, True]
    assert inline.applied == {"i7"}
    assert await lease_all(store, at(2)) == {}
    history = await store.get_history("i7")
    assert [type(e).__name__ for e in history[-4:]] == [
        "OrchestratorStarted",
        "TaskCompleted",
        "TaskCompleted",
        "ExecutionCompleted",
    ]


async def test_inline_completion_is_heard_by_status_listeners(store: Store) -> None:
    last, ids = await _waiting(store, "i8")
    heard: list[set[str] | None] = []

    def listener(changed: Collection[str] | None) -> None:
        heard.append(None if changed is None else set(changed))

    store.add_status_listener(listener)
    results = _results("i8", ids)
    inline = InlineEpisodes({"i8": _next(last, [r.message for r in results], done=True)}, {"i8": 1})
    assert await store.complete_activities(results, at(1), inline=inline) == [True]
    assert heard == [{"i8"}]


async def test_other_results_of_the_call_go_to_their_inboxes(store: Store) -> None:
    last, ids = await _waiting(store, "i9")
    _, other_ids = await _waiting(store, "i10")
    mine = _results("i9", ids)
    other = _results("i10", other_ids)
    inline = InlineEpisodes({"i9": _next(last, [mine[0].message])}, {"i9": 1})
    assert await store.complete_activities([*mine, *other], at(1), inline=inline) == [True, True]
    assert inline.applied == {"i9"}
    leased = await lease_all(store, at(2))
    assert set(leased) == {"i10"}
    assert [m.event for m in leased["i10"].messages] == [other[0].message.event]
