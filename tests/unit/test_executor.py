"""The replay executor: starting, activities, timers and the lifecycle events.

Every test builds a history with the helpers of ``history_builders``, runs the pure
``execute(past, new)`` and asserts on the actions, the status and the output.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from history_builders import (
    T0,
    Driver,
    Gen,
    at,
    chain,
    completed,
    dumps,
    episode,
    execution_completed,
    failed,
    loads,
    orch_started,
    resolver,
    resumed,
    scheduled,
    started,
    sub_created,
    suspended,
    terminated,
    timer_created,
    timer_fired,
)

import taskloom as tl
from taskloom.core.actions import CreateTimer, ScheduleTask
from taskloom.core.executor import OrchestrationRun, execute
from taskloom.errors import TaskFailedError
from taskloom.models import Status

# -- ExecutionStarted -----------------------------------------------------------------


def test_start_schedules_the_first_activity_with_the_input() -> None:
    result = execute("i", resolver(chain=chain), [], episode(T0, started("chain", 7)))

    assert result.status is Status.RUNNING
    assert result.actions == [ScheduleTask(0, "a", dumps(7))]
    assert result.output is None


def test_applied_lists_the_new_events_in_order() -> None:
    new = episode(T0, started("chain", 7))
    result = execute("i", resolver(chain=chain), [], new)
    assert result.applied == new


def test_get_input_decodes_the_started_input() -> None:
    seen: list[Any] = []

    def main(ctx: tl.OrchestrationContext) -> Gen:
        seen.append(ctx.get_input())
        yield from ()

    result = execute("i", resolver(main=main), [], episode(T0, started("main", {"k": [1, 2]})))
    assert seen == [{"k": [1, 2]}]
    assert result.status is Status.COMPLETED


def test_two_parameter_orchestrator_receives_the_input() -> None:
    app = tl.App("x")

    @app.orchestrator
    def double(ctx: tl.OrchestrationContext, n: int) -> Gen:
        got = yield ctx.call_activity("twice", n)
        return got

    first = execute("i", app.orchestrators.get, [], episode(T0, started("double", 21)))
    assert first.actions == [ScheduleTask(0, "twice", "21")]

    past = [*episode(T0, started("double", 21)), scheduled(0, "twice", 21)]
    done = execute("i", app.orchestrators.get, past, episode(at(1), completed(0, 42)))
    assert done.status is Status.COMPLETED
    assert loads(done.output) == 42


def test_orchestrator_registered_under_explicit_name() -> None:
    app = tl.App("x")

    @app.orchestrator(name="Renamed")
    def fn(ctx: tl.OrchestrationContext) -> Gen:
        yield from ()
        return "ok"

    result = execute("i", app.orchestrators.get, [], episode(T0, started("Renamed")))
    assert result.status is Status.COMPLETED
    assert loads(result.output) == "ok"


def test_unknown_orchestrator_fails_naming_it_and_the_registered_ones() -> None:
    app = tl.App("x")

    @app.orchestrator
    def alpha(ctx: tl.OrchestrationContext) -> Gen:
        yield from ()

    @app.orchestrator
    def beta(ctx: tl.OrchestrationContext) -> Gen:
        yield from ()

    run = OrchestrationRun("i", app.orchestrators.get, known_names=lambda: list(app.orchestrators))
    result = run.execute([], episode(T0, started("gamma")))

    assert result.status is Status.FAILED
    assert result.actions == []
    assert result.failure is not None
    assert result.failure.error_type == "OrchestratorNotFound"
    assert "'gamma'" in result.failure.message
    assert "alpha, beta" in result.failure.message


def test_unknown_orchestrator_via_pure_execute_says_none_registered() -> None:
    result = execute("i", resolver(), [], episode(T0, started("ghost")))
    assert result.status is Status.FAILED
    assert result.failure is not None
    assert "'ghost'" in result.failure.message
    assert "registered: none" in result.failure.message


def test_non_generator_orchestrator_completes_with_its_return_value() -> None:
    def plain(ctx: tl.OrchestrationContext) -> dict[str, int]:
        return {"n": ctx.get_input() + 1}

    result = execute("i", resolver(plain=plain), [], episode(T0, started("plain", 1)))
    assert result.status is Status.COMPLETED
    assert loads(result.output) == {"n": 2}
    assert result.actions == []


def test_non_generator_returning_none_completes_without_output() -> None:
    def nothing(ctx: tl.OrchestrationContext) -> None:
        return None

    result = execute("i", resolver(nothing=nothing), [], episode(T0, started("nothing")))
    assert result.status is Status.COMPLETED
    assert result.output is None


def test_orchestrator_raising_on_first_call_fails() -> None:
    def broken(ctx: tl.OrchestrationContext) -> Gen:
        raise KeyError("missing")

    result = execute("i", resolver(broken=broken), [], episode(T0, started("broken")))
    assert result.status is Status.FAILED
    assert result.failure is not None
    assert result.failure.error_type == "KeyError"
    assert "missing" in result.failure.message


def test_non_generator_raising_fails() -> None:
    def broken(ctx: tl.OrchestrationContext) -> int:
        return 1 // 0

    result = execute("i", resolver(broken=broken), [], episode(T0, started("broken")))
    assert result.status is Status.FAILED
    assert result.failure is not None
    assert result.failure.error_type == "ZeroDivisionError"


def test_generator_raising_before_first_yield_fails() -> None:
    def broken(ctx: tl.OrchestrationContext) -> Gen:
        raise RuntimeError("early")
        yield  # pragma: no cover

    result = execute("i", resolver(broken=broken), [], episode(T0, started("broken")))
    assert result.status is Status.FAILED
    assert result.failure is not None
    assert result.failure.error_type == "RuntimeError"
    assert result.failure.stack_trace and "early" in result.failure.stack_trace


def test_identity_fields_on_the_context() -> None:
    seen: dict[str, Any] = {}

    def main(ctx: tl.OrchestrationContext) -> Gen:
        seen.update(
            iid=ctx.instance_id, name=ctx.name, parent=ctx.parent_instance_id, v=ctx.version
        )
        yield from ()

    from taskloom.history import ParentInstance

    parent = ParentInstance("boss", "boss-1", 3)
    start = started("main", parent=parent, version="2")
    execute("child-9", resolver(main=main), [], episode(T0, start))
    assert seen == {"iid": "child-9", "name": "main", "parent": "boss-1", "v": "2"}


# -- activities -----------------------------------------------------------------------


def test_task_completed_sends_the_result_and_schedules_the_next() -> None:
    past = [*episode(T0, started("chain", 1)), scheduled(0, "a", 1)]
    result = execute("i", resolver(chain=chain), past, episode(at(1), completed(0, "A")))

    assert result.status is Status.RUNNING
    assert result.actions == [ScheduleTask(1, "b", dumps("A"))]


def test_activity_chain_completes_with_output() -> None:
    past = [
        *episode(T0, started("chain", 1)),
        scheduled(0, "a", 1),
        *episode(at(1), completed(0, "A")),
        scheduled(1, "b", "A"),
    ]
    result = execute("i", resolver(chain=chain), past, episode(at(2), completed(1, "B")))
    assert result.status is Status.COMPLETED
    assert loads(result.output) == ["A", "B"]
    assert result.actions == []


def test_scheduled_but_not_completed_activity_is_not_scheduled_again() -> None:
    past = [*episode(T0, started("chain", 1)), scheduled(0, "a", 1)]
    result = execute("i", resolver(chain=chain), past, episode(at(1)))
    assert result.status is Status.RUNNING
    assert result.actions == []


def test_task_failed_raises_task_failed_error_with_details() -> None:
    caught: list[TaskFailedError] = []

    def main(ctx: tl.OrchestrationContext) -> Gen:
        try:
            yield ctx.call_activity("a")
        except TaskFailedError as exc:
            caught.append(exc)
            return "handled"

    past = [*episode(T0, started("main")), scheduled(0, "a")]
    result = execute("i", resolver(main=main), past, episode(at(1), failed(0, "KeyError", "k")))

    assert result.status is Status.COMPLETED
    assert loads(result.output) == "handled"
    (exc,) = caught
    assert exc.details.error_type == "KeyError"
    assert exc.details.message == "k"
    assert "activity 'a'" in str(exc)


def test_uncaught_task_failure_fails_the_orchestration_with_inner_details() -> None:
    past = [*episode(T0, started("chain", 1)), scheduled(0, "a", 1)]
    new = episode(at(1), failed(0, "ValueError", "bad claim"))
    result = execute("i", resolver(chain=chain), past, new)

    assert result.status is Status.FAILED
    assert result.failure is not None
    assert result.failure.error_type == "taskloom.errors.TaskFailedError"
    assert "bad claim" in result.failure.message
    assert result.failure.inner is not None
    assert result.failure.inner.error_type == "ValueError"
    assert result.failure.inner.message == "bad claim"
    assert result.failure.is_caused_by(ValueError)


def test_task_failed_without_details_still_fails_cleanly() -> None:
    from taskloom.history import TaskFailed

    past = [*episode(T0, started("chain", 1)), scheduled(0, "a", 1)]
    result = execute(
        "i", resolver(chain=chain), past, episode(at(1), TaskFailed(at(1), task_scheduled_id=0))
    )
    assert result.status is Status.FAILED
    assert result.failure is not None and result.failure.inner is not None
    assert result.failure.inner.error_type == "Unknown"


def test_duplicate_task_completed_is_dropped_from_applied() -> None:
    past = [*episode(T0, started("chain", 1)), scheduled(0, "a", 1)]
    first, dup = completed(0, "A", t=at(1)), completed(0, "A", t=at(2))
    result = execute("i", resolver(chain=chain), past, [orch_started(at(2)), first, dup])

    assert result.applied == [result.applied[0], first]
    assert dup not in result.applied
    assert result.actions == [ScheduleTask(1, "b", dumps("A"))]


def test_completion_of_an_already_completed_task_in_a_later_episode_is_dropped() -> None:
    past = [
        *episode(T0, started("chain", 1)),
        scheduled(0, "a", 1),
        *episode(at(1), completed(0, "A")),
        scheduled(1, "b", "A"),
    ]
    late = completed(0, "A-again", t=at(2))
    result = execute("i", resolver(chain=chain), past, episode(at(2), late))
    assert late not in result.applied
    assert result.status is Status.RUNNING
    assert result.actions == []


def test_duplicate_completion_in_past_is_ignored_on_replay() -> None:
    past = [
        *episode(T0, started("chain", 1)),
        scheduled(0, "a", 1),
        *episode(at(1), completed(0, "A")),
        scheduled(1, "b", "A"),
        completed(0, "stale"),
    ]
    result = execute("i", resolver(chain=chain), past, episode(at(2), completed(1, "B")))
    assert result.status is Status.COMPLETED
    assert loads(result.output) == ["A", "B"]


def test_undecodable_activity_result_raises_in_the_orchestrator() -> None:
    from taskloom.history import TaskCompleted

    caught: list[BaseException] = []

    def main(ctx: tl.OrchestrationContext) -> Gen:
        try:
            yield ctx.call_activity("a")
        except tl.SerializationError as exc:
            caught.append(exc)
        return "ok"

    past = [*episode(T0, started("main")), scheduled(0, "a")]
    bad = TaskCompleted(at(1), task_scheduled_id=0, result="{not json")
    result = execute("i", resolver(main=main), past, episode(at(1), bad))
    assert result.status is Status.COMPLETED
    assert len(caught) == 1


def test_activity_given_as_function_uses_its_registered_name() -> None:
    app = tl.App("x")

    @app.activity(name="Notify")
    def notify(x: int) -> int:
        return x

    def main(ctx: tl.OrchestrationContext) -> Gen:
        yield ctx.call_activity(notify, 5)

    result = execute("i", resolver(main=main), [], episode(T0, started("main")))
    assert result.actions == [ScheduleTask(0, "Notify", "5")]


# -- timers ---------------------------------------------------------------------------


def napper(ctx: tl.OrchestrationContext) -> Gen:
    yield ctx.create_timer(timedelta(minutes=5))
    return ctx.current_utc_datetime.isoformat()


def test_create_timer_with_timedelta_fires_relative_to_episode_time() -> None:
    result = execute("i", resolver(napper=napper), [], episode(T0, started("napper")))
    assert result.actions == [CreateTimer(0, T0 + timedelta(minutes=5))]


def test_create_timer_with_aware_datetime() -> None:
    def main(ctx: tl.OrchestrationContext) -> Gen:
        yield ctx.create_timer(at(3600))

    result = execute("i", resolver(main=main), [], episode(T0, started("main")))
    assert result.actions == [CreateTimer(0, at(3600))]


def test_create_timer_with_naive_datetime_fails_the_orchestration() -> None:
    def main(ctx: tl.OrchestrationContext) -> Gen:
        yield ctx.create_timer(at(60).replace(tzinfo=None))

    result = execute("i", resolver(main=main), [], episode(T0, started("main")))
    assert result.status is Status.FAILED
    assert result.failure is not None
    assert "aware datetime" in result.failure.message


def test_timer_fired_resumes_the_orchestrator() -> None:
    fire = T0 + timedelta(minutes=5)
    past = [*episode(T0, started("napper")), timer_created(0, fire)]
    result = execute("i", resolver(napper=napper), past, episode(fire, timer_fired(0, fire)))
    assert result.status is Status.COMPLETED
    assert loads(result.output) == fire.isoformat()


def test_unfired_timer_keeps_the_run_waiting() -> None:
    past = [*episode(T0, started("napper")), timer_created(0, at(300))]
    result = execute("i", resolver(napper=napper), past, episode(at(10)))
    assert result.status is Status.RUNNING
    assert result.actions == []


def test_cancelled_timer_firing_is_ignored_and_dropped() -> None:
    def main(ctx: tl.OrchestrationContext) -> Gen:
        timer = ctx.create_timer(at(600))
        work = ctx.call_activity("work")
        winner = yield ctx.task_any([timer, work])
        assert winner is work
        timer.cancel()
        yield ctx.create_timer(at(1200))
        return "done"

    past = [
        *episode(T0, started("main")),
        timer_created(0, at(600)),
        scheduled(1, "work"),
        *episode(at(5), completed(1, "w")),
        timer_created(2, at(1200)),
    ]
    stale = timer_fired(0, at(600))
    result = execute("i", resolver(main=main), past, episode(at(600), stale))
    assert result.status is Status.RUNNING
    assert stale not in result.applied
    assert result.actions == []

    done = execute("i", resolver(main=main), past, episode(at(1200), timer_fired(2, at(1200))))
    assert done.status is Status.COMPLETED


def test_cancelling_a_fired_timer_does_nothing() -> None:
    def main(ctx: tl.OrchestrationContext) -> Gen:
        timer = ctx.create_timer(at(60))
        yield timer
        timer.cancel()
        return timer.is_cancelled

    past = [*episode(T0, started("main")), timer_created(0, at(60))]
    result = execute("i", resolver(main=main), past, episode(at(60), timer_fired(0, at(60))))
    assert loads(result.output) is False


# -- lifecycle: completed, terminated, suspended --------------------------------------


def test_execution_completed_in_past_marks_the_run_done() -> None:
    past = [
        *episode(T0, started("chain", 1)),
        scheduled(0, "a", 1),
        *episode(at(1), completed(0, "A")),
        scheduled(1, "b", "A"),
        *episode(at(2), completed(1, "B")),
        execution_completed(["A", "B"], t=at(2)),
    ]
    late = completed(1, "B")
    result = execute("i", resolver(chain=chain), past, episode(at(3), late))
    assert result.status is Status.COMPLETED
    assert loads(result.output) == ["A", "B"]
    assert result.actions == []
    assert late not in result.applied


def test_execution_completed_failed_in_past_reports_the_failure() -> None:
    from history_builders import failure

    details = failure("ValueError", "x")
    past = [
        *episode(T0, started("chain", 1)),
        execution_completed(status=Status.FAILED, failure=details),
    ]
    result = execute("i", resolver(chain=chain), past, [])
    assert result.status is Status.FAILED
    assert result.failure == details


def test_terminate_ends_the_run_with_the_reason_as_output() -> None:
    past = [*episode(T0, started("chain", 1)), scheduled(0, "a", 1)]
    result = execute("i", resolver(chain=chain), past, episode(at(1), terminated("stop it")))
    assert result.status is Status.TERMINATED
    assert loads(result.output) == "stop it"
    assert result.actions == []
    assert result.open_children == []


def test_terminate_without_reason_has_no_output() -> None:
    past = [*episode(T0, started("chain", 1)), scheduled(0, "a", 1)]
    result = execute("i", resolver(chain=chain), past, episode(at(1), terminated()))
    assert result.status is Status.TERMINATED
    assert result.output is None


def test_terminate_lists_running_sub_orchestrations_only() -> None:
    from history_builders import sub_completed

    def parent(ctx: tl.OrchestrationContext) -> Gen:
        first = ctx.call_sub_orchestrator("child", 1)
        second = ctx.call_sub_orchestrator("child", 2)
        third = ctx.call_sub_orchestrator("child", 3, instance_id="explicit")
        yield ctx.task_all([first, second, third])

    past = [
        *episode(T0, started("parent", iid="p")),
        sub_created(0, "child", "p:0000", 1),
        sub_created(1, "child", "p:0001", 2),
        sub_created(2, "child", "explicit", 3),
        *episode(at(1), sub_completed(1, "two")),
    ]
    result = execute("p", resolver(parent=parent), past, episode(at(2), terminated("enough")))
    assert result.status is Status.TERMINATED
    assert sorted(result.open_children) == ["explicit", "p:0000"]


def test_events_after_termination_in_the_same_episode_are_not_applied() -> None:
    past = [*episode(T0, started("chain", 1)), scheduled(0, "a", 1)]
    late = completed(0, "A")
    result = execute("i", resolver(chain=chain), past, episode(at(1), terminated(), late))
    assert result.status is Status.TERMINATED
    assert late not in result.applied


def test_suspended_run_holds_events_and_reports_suspended() -> None:
    past = [*episode(T0, started("chain", 1)), scheduled(0, "a", 1)]
    new = episode(at(1), suspended("pause"), completed(0, "A"))
    result = execute("i", resolver(chain=chain), past, new)

    assert result.status is Status.SUSPENDED
    assert result.actions == []
    assert new[-1] in result.applied  # recorded in history, applied only after resume


def test_resume_applies_the_held_events() -> None:
    past = [
        *episode(T0, started("chain", 1)),
        scheduled(0, "a", 1),
        *episode(at(1), suspended("pause"), completed(0, "A")),
    ]
    result = execute("i", resolver(chain=chain), past, episode(at(2), resumed("go")))
    assert result.status is Status.RUNNING
    assert result.actions == [ScheduleTask(1, "b", dumps("A"))]


def test_suspend_and_resume_in_one_episode() -> None:
    past = [*episode(T0, started("chain", 1)), scheduled(0, "a", 1)]
    new = episode(at(1), suspended(), completed(0, "A"), resumed())
    result = execute("i", resolver(chain=chain), past, new)
    assert result.status is Status.RUNNING
    assert result.actions == [ScheduleTask(1, "b", dumps("A"))]


def test_terminate_while_suspended_terminates() -> None:
    past = [
        *episode(T0, started("chain", 1)),
        scheduled(0, "a", 1),
        *episode(at(1), suspended()),
    ]
    result = execute("i", resolver(chain=chain), past, episode(at(2), terminated("bye")))
    assert result.status is Status.TERMINATED


def test_drive_helper_runs_a_chain_to_completion() -> None:
    d = Driver(resolver(chain=chain))
    assert d.step(T0, started("chain", 1)).actions == [ScheduleTask(0, "a", "1")]
    assert d.step(at(1), completed(0, "A")).actions == [ScheduleTask(1, "b", '"A"')]
    final = d.step(at(2), completed(1, "B"))
    assert final.status is Status.COMPLETED
    assert [e.kind for e in d.history][-1] == "ExecutionCompleted"
