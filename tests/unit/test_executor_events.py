"""The replay executor: external events, fan-out/fan-in, sub-orchestrations, send_event,
continue_as_new, custom status and the deterministic context helpers."""

from __future__ import annotations

import uuid
from collections.abc import Generator
from datetime import datetime, timedelta
from typing import Any

import pytest
from history_builders import (
    T0,
    at,
    completed,
    dumps,
    episode,
    event_raised,
    event_sent,
    failed,
    loads,
    resolver,
    scheduled,
    started,
    sub_completed,
    sub_created,
    sub_failed,
    timer_created,
    timer_fired,
)

import taskloom as tl
from taskloom.core.actions import CreateSubOrchestration, CreateTimer, ScheduleTask, SendEvent
from taskloom.core.executor import execute
from taskloom.models import Status

Gen = Generator[Any, Any, Any]


# -- external events ------------------------------------------------------------------


def waiter(ctx: tl.OrchestrationContext) -> Gen:
    first = yield ctx.wait_for_external_event("Approval")
    second = yield ctx.wait_for_external_event("Approval")
    return [first, second]


def test_wait_then_event_completes() -> None:
    past = [*episode(T0, started("waiter"))]
    new = episode(at(1), event_raised("Approval", 1), event_raised("Approval", 2))
    result = execute("i", resolver(waiter=waiter), past, new)
    assert result.status is Status.COMPLETED
    assert loads(result.output) == [1, 2]


def test_waiting_for_an_event_produces_no_action() -> None:
    result = execute("i", resolver(waiter=waiter), [], episode(T0, started("waiter")))
    assert result.status is Status.RUNNING
    assert result.actions == []


def test_events_before_the_wait_are_buffered_first_in_first_out() -> None:
    def main(ctx: tl.OrchestrationContext) -> Gen:
        yield ctx.call_activity("slow")
        a = yield ctx.wait_for_external_event("Approval")
        b = yield ctx.wait_for_external_event("Approval")
        return [a, b]

    past = [
        *episode(T0, started("main")),
        scheduled(0, "slow"),
        *episode(at(1), event_raised("Approval", "first"), event_raised("Approval", "second")),
    ]
    result = execute("i", resolver(main=main), past, episode(at(2), completed(0)))
    assert result.status is Status.COMPLETED
    assert loads(result.output) == ["first", "second"]


def test_event_names_ignore_case() -> None:
    new = episode(at(1), event_raised("APPROVAL", "x"), event_raised("approval", "y"))
    result = execute("i", resolver(waiter=waiter), episode(T0, started("waiter")), new)
    assert loads(result.output) == ["x", "y"]


def test_buffered_event_names_ignore_case() -> None:
    def main(ctx: tl.OrchestrationContext) -> Gen:
        yield ctx.call_activity("slow")
        return (yield ctx.wait_for_external_event("approval"))

    past = [*episode(T0, started("main")), scheduled(0, "slow")]
    new = episode(at(1), event_raised("APPROVAL", {"ok": True}), completed(0))
    result = execute("i", resolver(main=main), past, new)
    assert loads(result.output) == {"ok": True}


def test_event_for_another_name_does_not_complete_the_wait() -> None:
    new = episode(at(1), event_raised("Other", 1))
    result = execute("i", resolver(waiter=waiter), episode(T0, started("waiter")), new)
    assert result.status is Status.RUNNING


def test_two_waiters_on_one_name_get_events_in_order() -> None:
    def main(ctx: tl.OrchestrationContext) -> Gen:
        a = ctx.wait_for_external_event("e")
        b = ctx.wait_for_external_event("e")
        return (yield ctx.task_all([a, b]))

    new = episode(at(1), event_raised("e", "one"), event_raised("e", "two"))
    result = execute("i", resolver(main=main), episode(T0, started("main")), new)
    assert loads(result.output) == ["one", "two"]


def timed(ctx: tl.OrchestrationContext) -> Gen:
    try:
        data = yield ctx.wait_for_external_event("Approval", timeout=timedelta(hours=1))
    except tl.TaskTimeoutError as exc:
        return {"timeout": exc.details.error_type}
    return {"data": data}


def test_wait_with_timeout_creates_a_timer() -> None:
    result = execute("i", resolver(timed=timed), [], episode(T0, started("timed")))
    assert result.actions == [CreateTimer(0, T0 + timedelta(hours=1))]


def test_wait_timeout_raises_task_timeout_error() -> None:
    fire = T0 + timedelta(hours=1)
    past = [*episode(T0, started("timed")), timer_created(0, fire)]
    result = execute("i", resolver(timed=timed), past, episode(fire, timer_fired(0, fire)))
    assert result.status is Status.COMPLETED
    assert loads(result.output) == {"timeout": "taskloom.errors.TaskTimeoutError"}


def test_uncaught_wait_timeout_fails_with_a_message_naming_the_event() -> None:
    def main(ctx: tl.OrchestrationContext) -> Gen:
        yield ctx.wait_for_external_event("Approval", timeout=timedelta(minutes=1))

    fire = T0 + timedelta(minutes=1)
    past = [*episode(T0, started("main")), timer_created(0, fire)]
    result = execute("i", resolver(main=main), past, episode(fire, timer_fired(0, fire)))
    assert result.status is Status.FAILED
    assert result.failure is not None
    assert result.failure.error_type == "taskloom.errors.TaskTimeoutError"
    assert "'Approval'" in result.failure.message


def test_event_before_timeout_cancels_the_timer() -> None:
    fire = T0 + timedelta(hours=1)
    past = [*episode(T0, started("timed")), timer_created(0, fire)]
    result = execute("i", resolver(timed=timed), past, episode(at(5), event_raised("Approval", 9)))
    assert result.status is Status.COMPLETED
    assert loads(result.output) == {"data": 9}


def test_timer_firing_after_the_event_arrived_is_dropped() -> None:
    def main(ctx: tl.OrchestrationContext) -> Gen:
        data = yield ctx.wait_for_external_event("Approval", timeout=timedelta(hours=1))
        yield ctx.call_activity("use", data)
        return data

    fire = T0 + timedelta(hours=1)
    past = [
        *episode(T0, started("main")),
        timer_created(0, fire),
        *episode(at(5), event_raised("Approval", 9)),
        scheduled(1, "use", 9),
    ]
    stale = timer_fired(0, fire)
    result = execute("i", resolver(main=main), past, episode(fire, stale))
    assert result.status is Status.RUNNING
    assert stale not in result.applied


def test_buffered_event_with_timeout_needs_no_timer() -> None:
    def main(ctx: tl.OrchestrationContext) -> Gen:
        yield ctx.call_activity("slow")
        return (yield ctx.wait_for_external_event("e", timeout=timedelta(hours=1)))

    past = [*episode(T0, started("main")), scheduled(0, "slow")]
    new = episode(at(1), event_raised("e", "early"), completed(0))
    result = execute("i", resolver(main=main), past, new)
    assert result.status is Status.COMPLETED
    assert result.actions == []
    assert loads(result.output) == "early"


# -- task_all / task_any --------------------------------------------------------------


def fan(ctx: tl.OrchestrationContext) -> Gen:
    tasks = [ctx.call_activity("work", n) for n in range(3)]
    return (yield ctx.task_all(tasks))


def test_task_all_schedules_every_task_in_one_episode() -> None:
    result = execute("i", resolver(fan=fan), [], episode(T0, started("fan")))
    assert result.actions == [ScheduleTask(n, "work", dumps(n)) for n in range(3)]


def test_task_all_returns_results_in_task_order() -> None:
    past = [*episode(T0, started("fan")), *(scheduled(n, "work", n) for n in range(3))]
    new = episode(at(1), completed(2, "c"), completed(0, "a"), completed(1, "b"))
    result = execute("i", resolver(fan=fan), past, new)
    assert loads(result.output) == ["a", "b", "c"]


def test_task_all_waits_for_every_task() -> None:
    past = [*episode(T0, started("fan")), *(scheduled(n, "work", n) for n in range(3))]
    new = episode(at(1), completed(2, "c"), completed(0, "a"))
    result = execute("i", resolver(fan=fan), past, new)
    assert result.status is Status.RUNNING


def test_task_all_fails_with_the_first_failure() -> None:
    past = [*episode(T0, started("fan")), *(scheduled(n, "work", n) for n in range(3))]
    new = episode(at(1), completed(0, "a"), failed(2, "OSError", "disk"), failed(1, "KeyError"))
    result = execute("i", resolver(fan=fan), past, new)
    assert result.status is Status.FAILED
    assert result.failure is not None and result.failure.inner is not None
    assert result.failure.inner.error_type == "OSError"


def test_task_all_of_nothing_is_an_empty_list() -> None:
    def main(ctx: tl.OrchestrationContext) -> Gen:
        return (yield ctx.task_all([]))

    result = execute("i", resolver(main=main), [], episode(T0, started("main")))
    assert result.status is Status.COMPLETED
    assert loads(result.output) == []


def test_task_any_returns_the_winner_itself() -> None:
    def main(ctx: tl.OrchestrationContext) -> Gen:
        a, b = ctx.call_activity("a"), ctx.call_activity("b")
        winner = yield ctx.task_any([a, b])
        return {"a": winner is a, "b": winner is b, "result": winner.result}

    past = [*episode(T0, started("main")), scheduled(0, "a"), scheduled(1, "b")]
    result = execute("i", resolver(main=main), past, episode(at(1), completed(1, "B")))
    assert loads(result.output) == {"a": False, "b": True, "result": "B"}


def test_task_any_with_a_failed_winner_completes_and_the_result_raises() -> None:
    def main(ctx: tl.OrchestrationContext) -> Gen:
        a, b = ctx.call_activity("a"), ctx.call_activity("b")
        winner = yield ctx.task_any([a, b])
        return {"failed": winner.is_failed, "is_a": winner is a}

    past = [*episode(T0, started("main")), scheduled(0, "a"), scheduled(1, "b")]
    result = execute("i", resolver(main=main), past, episode(at(1), failed(0)))
    assert loads(result.output) == {"failed": True, "is_a": True}


def test_task_any_of_nothing_fails_the_orchestration() -> None:
    def main(ctx: tl.OrchestrationContext) -> Gen:
        yield ctx.task_any([])

    result = execute("i", resolver(main=main), [], episode(T0, started("main")))
    assert result.status is Status.FAILED
    assert result.failure is not None and result.failure.error_type == "ValueError"


def approval(ctx: tl.OrchestrationContext) -> Gen:
    event = ctx.wait_for_external_event("Approval")
    timeout = ctx.create_timer(ctx.current_utc_datetime + timedelta(hours=72))
    winner = yield ctx.task_any([event, timeout])
    if winner is timeout:
        return "TimedOut"
    timeout.cancel()
    return "Approved" if event.result["approved"] else "Rejected"


def test_task_any_timer_vs_event_event_wins() -> None:
    past = [*episode(T0, started("approval")), timer_created(0, at(72 * 3600))]
    new = episode(at(60), event_raised("Approval", {"approved": True}))
    result = execute("i", resolver(approval=approval), past, new)
    assert loads(result.output) == "Approved"


def test_task_any_timer_vs_event_timer_wins() -> None:
    fire = at(72 * 3600)
    past = [*episode(T0, started("approval")), timer_created(0, fire)]
    result = execute("i", resolver(approval=approval), past, episode(fire, timer_fired(0, fire)))
    assert loads(result.output) == "TimedOut"


# -- sub-orchestrations ---------------------------------------------------------------


def parent(ctx: tl.OrchestrationContext) -> Gen:
    return (yield ctx.call_sub_orchestrator("child", {"n": 1}))


def test_sub_orchestration_gets_a_default_id_from_parent_and_task_id() -> None:
    def main(ctx: tl.OrchestrationContext) -> Gen:
        yield ctx.call_activity("first")
        return (yield ctx.call_sub_orchestrator("child", 5))

    past = [*episode(T0, started("main", iid="order-7")), scheduled(0, "first")]
    result = execute("order-7", resolver(main=main), past, episode(at(1), completed(0)))
    assert result.actions == [CreateSubOrchestration(1, "child", "order-7:0001", "5")]


def test_sub_orchestration_with_explicit_id() -> None:
    def main(ctx: tl.OrchestrationContext) -> Gen:
        return (yield ctx.call_sub_orchestrator("child", None, "my-child"))

    result = execute("p", resolver(main=main), [], episode(T0, started("main")))
    assert result.actions == [CreateSubOrchestration(0, "child", "my-child", None)]


def test_sub_orchestration_completed_returns_its_output() -> None:
    past = [*episode(T0, started("parent", iid="p")), sub_created(0, "child", "p:0000", {"n": 1})]
    result = execute("p", resolver(parent=parent), past, episode(at(1), sub_completed(0, [1, 2])))
    assert result.status is Status.COMPLETED
    assert loads(result.output) == [1, 2]


def test_sub_orchestration_failed_raises_task_failed_error() -> None:
    def main(ctx: tl.OrchestrationContext) -> Gen:
        try:
            yield ctx.call_sub_orchestrator("child")
        except tl.TaskFailedError as exc:
            return [exc.details.error_type, exc.details.message, str(exc)]

    past = [*episode(T0, started("main", iid="p")), sub_created(0, "child", "p:0000")]
    new = episode(at(1), sub_failed(0, "KeyError", "no key"))
    result = execute("p", resolver(main=main), past, new)
    error_type, message, text = loads(result.output)
    assert (error_type, message) == ("KeyError", "no key")
    assert "sub-orchestration 'child' (p:0000)" in text


def test_uncaught_sub_orchestration_failure_fails_the_parent() -> None:
    past = [*episode(T0, started("parent", iid="p")), sub_created(0, "child", "p:0000", {"n": 1})]
    result = execute("p", resolver(parent=parent), past, episode(at(1), sub_failed(0)))
    assert result.status is Status.FAILED
    assert result.failure is not None and result.failure.inner is not None
    assert result.failure.inner.error_type == "ValueError"


# -- send_event -----------------------------------------------------------------------


def test_send_event_is_an_action_and_replays() -> None:
    def main(ctx: tl.OrchestrationContext) -> Gen:
        ctx.send_event("other", "Ping", {"x": 1})
        yield ctx.call_activity("after")
        return "sent"

    first = execute("i", resolver(main=main), [], episode(T0, started("main")))
    assert first.actions == [
        SendEvent(0, "other", "Ping", dumps({"x": 1})),
        ScheduleTask(1, "after"),
    ]
    past = [*episode(T0, started("main")), event_sent(0, "other", "Ping", {"x": 1})]
    past.append(scheduled(1, "after"))
    done = execute("i", resolver(main=main), past, episode(at(1), completed(1)))
    assert done.status is Status.COMPLETED
    assert done.actions == []


# -- continue_as_new ------------------------------------------------------------------


def counter(ctx: tl.OrchestrationContext) -> Gen:
    n = ctx.get_input()
    yield ctx.call_activity("tick", n)
    if n < 3:
        ctx.continue_as_new(n + 1)
        return None
    return n


def test_continue_as_new_reports_the_new_input() -> None:
    past = [*episode(T0, started("counter", 1)), scheduled(0, "tick", 1)]
    result = execute("i", resolver(counter=counter), past, episode(at(1), completed(0)))
    assert result.status is Status.CONTINUED_AS_NEW
    assert loads(result.new_input) == 2
    assert result.actions == []
    assert result.carryover == []


def test_continue_as_new_then_yield_stops_the_run() -> None:
    def main(ctx: tl.OrchestrationContext) -> Gen:
        ctx.continue_as_new("again")
        yield ctx.call_activity("never")

    result = execute("i", resolver(main=main), [], episode(T0, started("main")))
    assert result.status is Status.CONTINUED_AS_NEW
    assert result.actions == []
    assert loads(result.new_input) == "again"


def test_continue_as_new_with_save_events_carries_unread_events() -> None:
    def main(ctx: tl.OrchestrationContext) -> Gen:
        yield ctx.call_activity("tick")
        ctx.continue_as_new(None, save_events=True)

    past = [*episode(T0, started("main")), scheduled(0, "tick")]
    new = episode(at(1), event_raised("A", 1), event_raised("b", 2), completed(0))
    result = execute("i", resolver(main=main), past, new)
    assert result.status is Status.CONTINUED_AS_NEW
    assert sorted(result.carryover) == [("A", "1"), ("b", "2")]


def test_continue_as_new_without_save_events_drops_them() -> None:
    def main(ctx: tl.OrchestrationContext) -> Gen:
        yield ctx.call_activity("tick")
        ctx.continue_as_new(None)

    past = [*episode(T0, started("main")), scheduled(0, "tick")]
    result = execute(
        "i", resolver(main=main), past, episode(at(1), event_raised("A"), completed(0))
    )
    assert result.carryover == []


def test_continue_as_new_from_a_non_generator() -> None:
    def main(ctx: tl.OrchestrationContext) -> None:
        ctx.continue_as_new({"page": 2})

    result = execute("i", resolver(main=main), [], episode(T0, started("main")))
    assert result.status is Status.CONTINUED_AS_NEW
    assert loads(result.new_input) == {"page": 2}


# -- custom status, uuids, time, replay flag ------------------------------------------


def test_set_custom_status_is_reported_and_can_be_cleared() -> None:
    def main(ctx: tl.OrchestrationContext) -> Gen:
        ctx.set_custom_status({"stage": 1})
        yield ctx.call_activity("a")
        ctx.set_custom_status(None)
        yield ctx.call_activity("b")

    first = execute("i", resolver(main=main), [], episode(T0, started("main")))
    assert loads(first.custom_status) == {"stage": 1}

    past = [*episode(T0, started("main")), scheduled(0, "a")]
    second = execute("i", resolver(main=main), past, episode(at(1), completed(0)))
    assert second.custom_status is None


def uuids(ctx: tl.OrchestrationContext) -> Gen:
    first, second = ctx.new_uuid(), ctx.new_uuid()
    yield ctx.call_activity("a", [str(first), str(second)])
    return [str(first), str(second), str(ctx.new_uuid())]


def test_new_uuid_differs_per_call_and_is_stable_across_replays() -> None:
    first = execute("i", resolver(uuids=uuids), [], episode(T0, started("uuids")))
    (action,) = first.actions
    assert isinstance(action, ScheduleTask)
    one, two = loads(action.input)
    assert one != two
    uuid.UUID(one)

    past = [*episode(T0, started("uuids")), *[scheduled(0, "a", [one, two])]]
    done = execute("i", resolver(uuids=uuids), past, episode(at(1), completed(0)))
    out = loads(done.output)
    assert out[:2] == [one, two]
    assert out[2] not in (one, two)


def test_new_uuid_depends_on_the_instance_id() -> None:
    a = execute("i1", resolver(uuids=uuids), [], episode(T0, started("uuids")))
    b = execute("i2", resolver(uuids=uuids), [], episode(T0, started("uuids")))
    assert a.actions != b.actions


def test_current_utc_datetime_is_the_orchestrator_started_time() -> None:
    seen: list[datetime] = []

    def main(ctx: tl.OrchestrationContext) -> Gen:
        seen.append(ctx.current_utc_datetime)
        yield ctx.call_activity("a")
        seen.append(ctx.current_utc_datetime)
        yield ctx.call_activity("b")
        seen.append(ctx.current_utc_datetime)

    past = [
        *episode(T0, started("main", t=at(-30))),
        scheduled(0, "a"),
        *episode(at(10), completed(0)),
        scheduled(1, "b"),
    ]
    execute("i", resolver(main=main), past, episode(at(20), completed(1)))
    assert seen == [T0, at(10), at(20)]
    assert all(t.utcoffset() == timedelta(0) for t in seen)


def test_current_utc_datetime_falls_back_to_execution_started() -> None:
    seen: list[datetime] = []

    def main(ctx: tl.OrchestrationContext) -> None:
        seen.append(ctx.current_utc_datetime)

    execute("i", resolver(main=main), [], [started("main", t=at(5))])
    assert seen == [at(5)]


def test_is_replaying_is_true_for_past_and_false_for_new_events() -> None:
    flags: list[tuple[str, bool]] = []

    def main(ctx: tl.OrchestrationContext) -> Gen:
        flags.append(("start", ctx.is_replaying))
        yield ctx.call_activity("a")
        flags.append(("after a", ctx.is_replaying))
        yield ctx.call_activity("b")
        flags.append(("after b", ctx.is_replaying))

    past = [
        *episode(T0, started("main")),
        scheduled(0, "a"),
        *episode(at(1), completed(0)),
        scheduled(1, "b"),
    ]
    execute("i", resolver(main=main), past, episode(at(2), completed(1)))
    assert flags == [("start", True), ("after a", True), ("after b", False)]


@pytest.mark.parametrize("kind", ["activity", "sub"])
def test_retry_policy_argument_is_accepted_by_both_spellings(kind: str) -> None:
    policy = tl.RetryPolicy(timedelta(seconds=1), 2)

    def main(ctx: tl.OrchestrationContext) -> Gen:
        if kind == "activity":
            return (yield ctx.call_activity_with_retry("a", policy, 1))
        return (yield ctx.call_sub_orchestrator("c", 1, retry_policy=policy))

    result = execute("i", resolver(main=main), [], episode(T0, started("main")))
    assert [type(a).__name__ for a in result.actions] == [
        "ScheduleTask" if kind == "activity" else "CreateSubOrchestration"
    ]


def test_an_event_sent_just_before_returning_still_goes_out() -> None:
    def notify_then_finish(ctx: tl.OrchestrationContext) -> Any:
        ctx.send_event("monitor", "Done", {"n": 1})
        return "finished"
        yield  # a generator

    result = execute("i", resolver(main=notify_then_finish), [], episode(T0, started("main")))
    assert result.status is Status.COMPLETED
    assert result.actions == [SendEvent(0, "monitor", "Done", dumps({"n": 1}))]


def test_an_event_sent_just_before_continue_as_new_still_goes_out() -> None:
    def loop(ctx: tl.OrchestrationContext) -> Any:
        ctx.send_event("monitor", "Tick", ctx.get_input())
        ctx.continue_as_new(ctx.get_input() + 1)
        return None
        yield  # a generator

    result = execute("i", resolver(main=loop), [], episode(T0, started("main", 1)))
    assert result.status is Status.CONTINUED_AS_NEW
    assert result.actions == [SendEvent(0, "monitor", "Tick", dumps(1))]
