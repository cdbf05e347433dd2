"""The replay executor: retry policies on activities and sub-orchestrations."""

from __future__ import annotations

import itertools
from collections.abc import Generator
from datetime import datetime, timedelta
from typing import Any

import pytest
from history_builders import (
    T0,
    Driver,
    at,
    completed,
    episode,
    failed,
    loads,
    resolver,
    scheduled,
    started,
    sub_created,
    sub_failed,
    timer_created,
    timer_fired,
)

import taskloom as tl
from taskloom import history as h
from taskloom.core.actions import CreateSubOrchestration, CreateTimer, ScheduleTask
from taskloom.core.executor import execute
from taskloom.models import FailureDetails, Status

Gen = Generator[Any, Any, Any]


def retrying(policy: tl.RetryPolicy) -> Any:
    def main(ctx: tl.OrchestrationContext) -> Gen:
        return (yield ctx.call_activity("flaky", ctx.get_input(), retry_policy=policy))

    return main


def run_failures(
    policy: tl.RetryPolicy, failures: int, *, gap: float = 0.0
) -> tuple[Driver, list[datetime]]:
    """Drive ``flaky`` through ``failures`` failed attempts; returns the retry fire times.

    Each failure arrives ``gap`` seconds after the attempt was scheduled."""
    d = Driver(resolver(main=retrying(policy)))
    d.step(T0, started("main", "in"))
    now = T0
    fire_times: list[datetime] = []
    task_id = 0
    for _ in range(failures):
        now = now + timedelta(seconds=gap)
        result = d.step(now, failed(task_id, "OSError", "flaky", t=now))
        if result.status is not Status.RUNNING:
            break
        (timer,) = result.actions
        assert isinstance(timer, CreateTimer)
        assert timer.purpose == "retry"
        fire_times.append(timer.fire_at)
        now = timer.fire_at
        retry = d.step(now, timer_fired(timer.id, now))
        (again,) = retry.actions
        assert again == ScheduleTask(timer.id + 1, "flaky", '"in"', retry_of=0)
        task_id = again.id
    return d, fire_times


def test_failed_attempt_creates_a_retry_timer_after_the_first_interval() -> None:
    policy = tl.RetryPolicy(timedelta(seconds=10), 3)
    past = [*episode(T0, started("main", "in")), scheduled(0, "flaky", "in")]
    result = execute("i", resolver(main=retrying(policy)), past, episode(at(2), failed(0)))
    assert result.status is Status.RUNNING
    assert result.actions == [CreateTimer(1, at(12), purpose="retry", retry_of=0)]


def test_retry_timer_firing_schedules_the_activity_again() -> None:
    policy = tl.RetryPolicy(timedelta(seconds=10), 3)
    past = [
        *episode(T0, started("main", "in")),
        scheduled(0, "flaky", "in"),
        *episode(at(2), failed(0)),
        timer_created(1, at(12), purpose="retry"),
    ]
    new = episode(at(12), timer_fired(1, at(12)))
    result = execute("i", resolver(main=retrying(policy)), past, new)
    assert result.actions == [ScheduleTask(2, "flaky", '"in"', retry_of=0)]


def test_retry_then_success_returns_the_result() -> None:
    policy = tl.RetryPolicy(timedelta(seconds=10), 3)
    d, _ = run_failures(policy, 1)
    result = d.step(at(100), completed(2, "ok"))
    assert result.status is Status.COMPLETED
    assert loads(result.output) == "ok"


def test_backoff_coefficient_grows_the_delay() -> None:
    policy = tl.RetryPolicy(timedelta(seconds=10), 5, backoff_coefficient=2.0)
    _, fires = run_failures(policy, 4)
    gaps = [fires[0] - T0] + [b - a for a, b in itertools.pairwise(fires)]
    assert gaps == [timedelta(seconds=s) for s in (10, 20, 40, 80)]


def test_max_retry_interval_caps_the_delay() -> None:
    policy = tl.RetryPolicy(
        timedelta(seconds=10), 5, backoff_coefficient=3.0, max_retry_interval=timedelta(seconds=45)
    )
    _, fires = run_failures(policy, 4)
    gaps = [fires[0] - T0] + [b - a for a, b in itertools.pairwise(fires)]
    assert gaps == [timedelta(seconds=s) for s in (10, 30, 45, 45)]


def test_max_number_of_attempts_counts_the_first_try_then_fails() -> None:
    policy = tl.RetryPolicy(timedelta(seconds=1), 3)
    d, fires = run_failures(policy, 3)
    assert len(fires) == 2
    final = d.results[-1]
    assert final.status is Status.FAILED
    assert final.failure is not None and final.failure.inner is not None
    assert final.failure.inner.error_type == "OSError"
    scheduled_ids = [e.event_id for e in d.history if e.kind == "TaskScheduled"]
    assert scheduled_ids == [0, 2, 4]


def test_one_attempt_policy_never_retries() -> None:
    policy = tl.RetryPolicy(timedelta(seconds=1), 1)
    past = [*episode(T0, started("main", "in")), scheduled(0, "flaky", "in")]
    result = execute("i", resolver(main=retrying(policy)), past, episode(at(1), failed(0)))
    assert result.status is Status.FAILED


def test_handle_returning_false_stops_retries() -> None:
    seen: list[FailureDetails] = []

    def only_os_errors(details: FailureDetails) -> bool:
        seen.append(details)
        return details.error_type == "OSError"

    policy = tl.RetryPolicy(timedelta(seconds=1), 5, handle=only_os_errors)
    past = [*episode(T0, started("main", "in")), scheduled(0, "flaky", "in")]
    new = episode(at(1), failed(0, "KeyError", "permanent"))
    result = execute("i", resolver(main=retrying(policy)), past, new)
    assert result.status is Status.FAILED
    assert result.actions == []
    assert [d.error_type for d in seen] == ["KeyError"]
    assert seen[0].message == "permanent"


def test_a_non_retriable_failure_is_not_retried() -> None:
    # An SDK worker marks a failure isNonRetriable: no policy retries it, handle or not.
    policy = tl.RetryPolicy(timedelta(seconds=1), 5, handle=lambda d: True)
    past = [*episode(T0, started("main", "in")), scheduled(0, "flaky", "in")]
    final = h.TaskFailed(
        at(1), task_scheduled_id=0, failure=FailureDetails("E", "no", non_retriable=True)
    )
    result = execute("i", resolver(main=retrying(policy)), past, episode(at(1), final))
    assert result.status is Status.FAILED
    assert result.actions == []


def test_handle_returning_true_retries() -> None:
    policy = tl.RetryPolicy(timedelta(seconds=1), 5, handle=lambda d: d.error_type == "OSError")
    past = [*episode(T0, started("main", "in")), scheduled(0, "flaky", "in")]
    new = episode(at(1), failed(0, "OSError"))
    result = execute("i", resolver(main=retrying(policy)), past, new)
    assert result.actions == [CreateTimer(1, at(2), purpose="retry", retry_of=0)]


def test_handle_raising_fails_the_orchestration() -> None:
    def bad_handle(details: FailureDetails) -> bool:
        raise RuntimeError("handler bug")

    policy = tl.RetryPolicy(timedelta(seconds=1), 5, handle=bad_handle)
    past = [*episode(T0, started("main", "in")), scheduled(0, "flaky", "in")]
    result = execute("i", resolver(main=retrying(policy)), past, episode(at(1), failed(0)))
    assert result.status is Status.FAILED
    assert result.failure is not None
    assert result.failure.error_type == "RuntimeError"
    assert "handler bug" in result.failure.message


def test_retry_timeout_stops_retrying_once_passed() -> None:
    policy = tl.RetryPolicy(timedelta(seconds=10), 10, retry_timeout=timedelta(seconds=60))
    inside = [*episode(T0, started("main", "in")), scheduled(0, "flaky", "in")]
    early = execute("i", resolver(main=retrying(policy)), inside, episode(at(59), failed(0)))
    assert early.actions == [CreateTimer(1, at(69), purpose="retry", retry_of=0)]

    late = execute("i", resolver(main=retrying(policy)), inside, episode(at(60), failed(0)))
    assert late.status is Status.FAILED
    assert late.actions == []


def test_retry_timeout_is_measured_from_the_first_attempt() -> None:
    policy = tl.RetryPolicy(timedelta(seconds=20), 10, retry_timeout=timedelta(seconds=50))
    d, fires = run_failures(policy, 5, gap=5)
    # tries at 0, 25 (fails 30), 50 (fails 55 > 50): two retries, then the failure stands
    assert len(fires) == 2
    assert d.results[-1].status is Status.FAILED


def test_retry_policy_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match="first_retry_interval"):
        tl.RetryPolicy(timedelta(0), 3)
    with pytest.raises(ValueError, match="max_number_of_attempts"):
        tl.RetryPolicy(timedelta(seconds=1), 0)
    with pytest.raises(ValueError, match="backoff_coefficient"):
        tl.RetryPolicy(timedelta(seconds=1), 2, backoff_coefficient=0.5)


def test_caught_final_failure_lets_the_orchestration_go_on() -> None:
    policy = tl.RetryPolicy(timedelta(seconds=1), 2)

    def main(ctx: tl.OrchestrationContext) -> Gen:
        try:
            yield ctx.call_activity("flaky", retry_policy=policy)
        except tl.TaskFailedError as exc:
            return f"gave up: {exc.details.message}"

    d = Driver(resolver(main=main))
    d.step(T0, started("main"))
    d.step(at(1), failed(0, "OSError", "one"))
    d.step(at(2), timer_fired(1, at(2)))
    result = d.step(at(3), failed(2, "OSError", "two"))
    assert loads(result.output) == "gave up: two"


def test_sub_orchestration_retry_with_default_ids_gets_a_new_child_id() -> None:
    policy = tl.RetryPolicy(timedelta(seconds=5), 2)

    def main(ctx: tl.OrchestrationContext) -> Gen:
        return (yield ctx.call_sub_orchestrator("child", 1, retry_policy=policy))

    past = [*episode(T0, started("main", iid="p")), sub_created(0, "child", "p:0000", 1)]
    first = execute("p", resolver(main=main), past, episode(at(1), sub_failed(0)))
    assert first.actions == [CreateTimer(1, at(6), purpose="retry", retry_of=0)]

    past += [*episode(at(1), sub_failed(0)), timer_created(1, at(6), purpose="retry")]
    second = execute("p", resolver(main=main), past, episode(at(6), timer_fired(1, at(6))))
    assert second.actions == [CreateSubOrchestration(2, "child", "p:0002", "1", retry_of=0)]


def test_sub_orchestration_retry_reuses_an_explicit_id() -> None:
    policy = tl.RetryPolicy(timedelta(seconds=5), 2)

    def main(ctx: tl.OrchestrationContext) -> Gen:
        return (yield ctx.call_sub_orchestrator("child", None, "kid", retry_policy=policy))

    past = [
        *episode(T0, started("main", iid="p")),
        sub_created(0, "child", "kid"),
        *episode(at(1), sub_failed(0)),
        timer_created(1, at(6), purpose="retry"),
    ]
    result = execute("p", resolver(main=main), past, episode(at(6), timer_fired(1, at(6))))
    assert result.actions == [CreateSubOrchestration(2, "child", "kid", None, retry_of=0)]
