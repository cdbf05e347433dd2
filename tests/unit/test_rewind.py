"""Rewind: ``rewind_history`` drops a failure and what led to it; replaying the rewound
history runs the failed work again and keeps what succeeded."""

from __future__ import annotations

from collections.abc import Generator
from datetime import timedelta
from typing import Any

from history_builders import (
    T0,
    Driver,
    at,
    completed,
    dumps,
    episode,
    execution_completed,
    failed,
    failure,
    loads,
    resolver,
    rewound,
    scheduled,
    started,
    sub_completed,
    sub_created,
    sub_failed,
    timer_created,
    timer_fired,
)

import taskloom as tl
from taskloom import history as h
from taskloom.core.actions import CreateTimer, ScheduleTask
from taskloom.core.executor import execute
from taskloom.core.rewind import rewind_history
from taskloom.models import Status

Gen = Generator[Any, Any, Any]
FAILED_END = execution_completed(status=Status.FAILED, failure=failure(), t=at(9))


def chain(ctx: tl.OrchestrationContext) -> Gen:
    a = yield ctx.call_activity("a", 1)
    b = yield ctx.call_activity("b", a)
    return [a, b]


def failed_chain() -> list[h.HistoryEvent]:
    return [
        *episode(T0, started("chain")),
        scheduled(0, "a", 1),
        *episode(at(1), completed(0, "A")),
        scheduled(1, "b", "A"),
        *episode(at(2), failed(1, "OSError", "down")),
        FAILED_END,
    ]


def test_rewind_removes_the_completion_and_the_failed_task() -> None:
    history = failed_chain()
    out = rewind_history(history)
    kinds = [e.kind for e in out.history]
    assert "ExecutionCompleted" not in kinds
    assert "TaskFailed" not in kinds
    assert [e.event_id for e in out.history if isinstance(e, h.TaskScheduled)] == [0]
    assert out.failed_children == []


def test_rewind_keeps_successful_work_and_its_order() -> None:
    history = failed_chain()
    out = rewind_history(history)
    removed = {id(e) for e in history} - {id(e) for e in out.history}
    assert len(removed) == 3
    assert [e for e in history if id(e) not in removed] == out.history


def test_replaying_the_rewound_history_reschedules_the_failed_activity() -> None:
    out = rewind_history(failed_chain())
    result = execute("i", resolver(chain=chain), out.history, episode(at(10), rewound("retry")))
    assert result.status is Status.RUNNING
    assert result.actions == [ScheduleTask(1, "b", dumps("A"))]
    assert result.applied[-1].kind == "ExecutionRewound"


def test_rewound_run_completes_when_the_activity_succeeds() -> None:
    d = Driver(resolver(chain=chain))
    d.history = rewind_history(failed_chain()).history
    d.step(at(10), rewound())
    done = d.step(at(11), completed(1, "B"))
    assert done.status is Status.COMPLETED
    assert loads(done.output) == ["A", "B"]


def test_rewind_removes_retry_timers_so_the_policy_starts_over() -> None:
    policy = tl.RetryPolicy(timedelta(seconds=5), 2)

    def main(ctx: tl.OrchestrationContext) -> Gen:
        return (yield ctx.call_activity("flaky", retry_policy=policy))

    history = [
        *episode(T0, started("main")),
        scheduled(0, "flaky"),
        *episode(at(1), failed(0)),
        timer_created(1, at(6), purpose="retry"),
        *episode(at(6), timer_fired(1, at(6))),
        scheduled(2, "flaky"),
        *episode(at(7), failed(2)),
        FAILED_END,
    ]
    out = rewind_history(history)
    assert not any(isinstance(e, h.TimerCreated | h.TimerFired) for e in out.history)
    assert not any(isinstance(e, h.TaskScheduled | h.TaskFailed) for e in out.history)

    result = execute("i", resolver(main=main), out.history, episode(at(10), rewound()))
    assert result.actions == [ScheduleTask(0, "flaky")]

    again = execute(
        "i",
        resolver(main=main),
        [*out.history, *result.applied, scheduled(0, "flaky")],
        episode(at(11), failed(0)),
    )
    assert again.actions == [CreateTimer(1, at(16), purpose="retry", retry_of=0)]


def test_rewind_keeps_ordinary_timers() -> None:
    def main(ctx: tl.OrchestrationContext) -> Gen:
        yield ctx.create_timer(at(5))
        return (yield ctx.call_activity("a"))

    history = [
        *episode(T0, started("main")),
        timer_created(0, at(5)),
        *episode(at(5), timer_fired(0, at(5))),
        scheduled(1, "a"),
        *episode(at(6), failed(1)),
        FAILED_END,
    ]
    out = rewind_history(history)
    assert [e.kind for e in out.history if "Timer" in e.kind] == ["TimerCreated", "TimerFired"]
    result = execute("i", resolver(main=main), out.history, episode(at(10), rewound()))
    assert result.actions == [ScheduleTask(1, "a")]


def test_rewind_removes_sub_orchestration_failures_and_lists_the_children() -> None:
    def parent(ctx: tl.OrchestrationContext) -> Gen:
        ok = ctx.call_sub_orchestrator("child", 1)
        bad = ctx.call_sub_orchestrator("child", 2)
        return (yield ctx.task_all([ok, bad]))

    history = [
        *episode(T0, started("parent", iid="p")),
        sub_created(0, "child", "p:0000", 1),
        sub_created(1, "child", "p:0001", 2),
        *episode(at(1), sub_completed(0, "one"), sub_failed(1)),
        FAILED_END,
    ]
    out = rewind_history(history)
    assert out.failed_children == ["p:0001"]
    assert not any(isinstance(e, h.SubOrchestrationInstanceFailed) for e in out.history)
    created = [e for e in out.history if isinstance(e, h.SubOrchestrationInstanceCreated)]
    assert [e.instance_id for e in created] == ["p:0000", "p:0001"]

    result = execute("p", resolver(parent=parent), out.history, episode(at(10), rewound()))
    assert result.status is Status.RUNNING
    assert result.actions == []  # the rewound child reports back to task #1

    done = execute(
        "p",
        resolver(parent=parent),
        [*out.history, *result.applied],
        episode(at(12), sub_completed(1, "two")),
    )
    assert loads(done.output) == ["one", "two"]


def test_rewind_of_an_orchestrator_error_replays_to_the_same_error() -> None:
    def main(ctx: tl.OrchestrationContext) -> Gen:
        yield ctx.call_activity("a")
        raise RuntimeError("code bug")

    history = [
        *episode(T0, started("main")),
        scheduled(0, "a"),
        *episode(at(1), completed(0)),
        FAILED_END,
    ]
    out = rewind_history(history)
    result = execute("i", resolver(main=main), out.history, episode(at(10), rewound()))
    assert result.status is Status.FAILED
    assert result.failure is not None and result.failure.message == "code bug"


def test_rewind_of_an_empty_or_healthy_history_changes_nothing() -> None:
    assert rewind_history([]).history == []
    healthy = [*episode(T0, started("chain")), scheduled(0, "a", 1), *episode(T0, completed(0))]
    assert rewind_history(healthy).history == healthy


def test_rewind_keeps_a_retry_chain_that_ended_in_success() -> None:
    policy = tl.RetryPolicy(timedelta(seconds=5), 3)

    def main(ctx: tl.OrchestrationContext) -> Gen:
        a = yield ctx.call_activity("flaky", retry_policy=policy)
        b = yield ctx.call_activity("b", a)
        return b

    history = [
        *episode(T0, started("main")),
        scheduled(0, "flaky"),
        *episode(at(1), failed(0)),
        timer_created(1, at(6), purpose="retry"),
        *episode(at(6), timer_fired(1, at(6))),
        scheduled(2, "flaky", retry_of=0),
        *episode(at(7), completed(2, "A")),
        scheduled(3, "b", "A"),
        *episode(at(8), failed(3, "OSError", "down")),
        FAILED_END,
    ]
    out = rewind_history(history)
    result = execute("i", resolver(main=main), out.history, episode(at(10), rewound()))
    assert result.status is Status.RUNNING
    assert result.actions == [ScheduleTask(3, "b", dumps("A"))]


def test_rewind_reschedules_activities_that_were_in_flight_at_the_failure() -> None:
    def fan(ctx: tl.OrchestrationContext) -> Gen:
        return (yield ctx.task_all([ctx.call_activity("w", n) for n in range(3)]))

    history = [
        *episode(T0, started("fan")),
        *(scheduled(n, "w", n) for n in range(3)),
        *episode(at(1), completed(0, "zero"), failed(1)),
        FAILED_END,
    ]
    out = rewind_history(history)
    result = execute("i", resolver(fan=fan), out.history, episode(at(10), rewound()))
    assert sorted(a.id for a in result.actions) == [1, 2]


def test_rewind_of_a_retried_sub_orchestration_replays_cleanly() -> None:
    policy = tl.RetryPolicy(timedelta(seconds=5), 2)

    def main(ctx: tl.OrchestrationContext) -> Gen:
        return (yield ctx.call_sub_orchestrator("child", 1, retry_policy=policy))

    history = [
        *episode(T0, started("main", iid="p")),
        sub_created(0, "child", "p:0000", 1),
        *episode(at(1), sub_failed(0)),
        timer_created(1, at(6), purpose="retry"),
        *episode(at(6), timer_fired(1, at(6))),
        sub_created(2, "child", "p:0002", 1, retry_of=0),
        *episode(at(7), sub_failed(2)),
        FAILED_END,
    ]
    out = rewind_history(history)
    result = execute("p", resolver(main=main), out.history, episode(at(10), rewound()))
    assert result.status is Status.RUNNING
