"""The replay executor: non-determinism, bad orchestrator code, sticky runs, and known
executor defects (marked ``xfail(strict=True)`` until fixed)."""

from __future__ import annotations

from collections.abc import Callable
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
    event_raised,
    event_sent,
    failed,
    loads,
    resolver,
    resumed,
    scheduled,
    started,
    sub_created,
    suspended,
    timer_created,
    timer_fired,
)

import taskloom as tl
from taskloom.core.actions import ScheduleTask
from taskloom.core.executor import execute
from taskloom.models import Status

# -- non-determinism ------------------------------------------------------------------


def test_renamed_activity_is_non_determinism_naming_expected_and_actual() -> None:
    past = [*episode(T0, started("chain", 1)), scheduled(0, "renamed", 1)]
    result = execute("i", resolver(chain=chain), past, episode(at(1), completed(0)))

    assert result.status is Status.FAILED
    assert result.actions == []
    assert result.failure is not None
    assert result.failure.error_type == "taskloom.errors.NonDeterminismError"
    message = result.failure.message
    assert "history expected call_activity('renamed') #0" in message
    assert "the code produced call_activity('a') #0" in message
    assert "'chain'" in message and "'i'" in message
    assert "new orchestrator name or version" in message


def test_history_action_the_code_did_not_produce_is_non_determinism() -> None:
    def short(ctx: tl.OrchestrationContext) -> Gen:
        yield ctx.call_activity("a")

    past = [*episode(T0, started("short")), scheduled(0, "a"), scheduled(1, "extra")]
    result = execute("i", resolver(short=short), past, episode(at(1)))
    assert result.status is Status.FAILED
    assert result.failure is not None
    assert "history expected call_activity('extra') #1" in result.failure.message
    assert "the code produced nothing" in result.failure.message


def test_activity_replaced_by_timer_is_non_determinism() -> None:
    def main(ctx: tl.OrchestrationContext) -> Gen:
        yield ctx.create_timer(at(60))

    past = [*episode(T0, started("main")), scheduled(0, "a")]
    result = execute("i", resolver(main=main), past, [])
    assert result.status is Status.FAILED
    assert result.failure is not None
    assert "history expected call_activity('a') #0" in result.failure.message
    assert "create_timer(" in result.failure.message


def test_timer_replaced_by_activity_is_non_determinism() -> None:
    past = [*episode(T0, started("chain", 1)), timer_created(0, at(60))]
    result = execute("i", resolver(chain=chain), past, [])
    assert result.status is Status.FAILED
    assert result.failure is not None
    assert "history expected create_timer() #0" in result.failure.message


def test_renamed_sub_orchestration_is_non_determinism() -> None:
    def main(ctx: tl.OrchestrationContext) -> Gen:
        yield ctx.call_sub_orchestrator("new_child")

    past = [*episode(T0, started("main", iid="p")), sub_created(0, "old_child", "p:0000")]
    result = execute("p", resolver(main=main), past, [])
    assert result.status is Status.FAILED
    assert result.failure is not None
    assert "call_sub_orchestrator('old_child') #0" in result.failure.message
    assert "call_sub_orchestrator('new_child'" in result.failure.message


def test_renamed_sent_event_is_non_determinism() -> None:
    def main(ctx: tl.OrchestrationContext) -> Gen:
        ctx.send_event("other", "NewName")
        yield ctx.call_activity("a")

    past = [*episode(T0, started("main")), event_sent(0, "other", "OldName")]
    result = execute("i", resolver(main=main), past, [])
    assert result.status is Status.FAILED
    assert result.failure is not None
    assert "send_event('OldName') #0" in result.failure.message


def test_non_determinism_in_new_recording_events_also_fails() -> None:
    past = [*episode(T0, started("chain", 1))]
    result = execute("i", resolver(chain=chain), past, [scheduled(0, "zzz")])
    assert result.status is Status.FAILED
    assert result.failure is not None
    assert result.failure.error_type == "taskloom.errors.NonDeterminismError"


def test_changed_input_is_not_non_determinism() -> None:
    past = [*episode(T0, started("chain", 1)), scheduled(0, "a", "other input")]
    result = execute("i", resolver(chain=chain), past, episode(at(1), completed(0, "A")))
    assert result.status is Status.RUNNING
    assert result.actions == [ScheduleTask(1, "b", dumps("A"))]


# -- bad orchestrator code ------------------------------------------------------------


def test_yielding_a_non_task_fails_with_type_error() -> None:
    def main(ctx: tl.OrchestrationContext) -> Gen:
        yield 42

    result = execute("i", resolver(main=main), [], episode(T0, started("main")))
    assert result.status is Status.FAILED
    assert result.failure is not None
    assert result.failure.error_type == "TypeError"
    assert "yielded 42" in result.failure.message
    assert "'main'" in result.failure.message


def test_yielding_a_coroutine_like_value_later_also_fails() -> None:
    def main(ctx: tl.OrchestrationContext) -> Gen:
        yield ctx.call_activity("a")
        yield [ctx.call_activity("b")]

    past = [*episode(T0, started("main")), scheduled(0, "a")]
    result = execute("i", resolver(main=main), past, episode(at(1), completed(0)))
    assert result.status is Status.FAILED
    assert result.failure is not None and result.failure.error_type == "TypeError"


def test_unserialisable_output_fails_with_serialization_error_naming_the_type() -> None:
    class Opaque:
        pass

    def main(ctx: tl.OrchestrationContext) -> Gen:
        yield ctx.call_activity("a")
        return {"thing": Opaque()}

    past = [*episode(T0, started("main")), scheduled(0, "a")]
    result = execute("i", resolver(main=main), past, episode(at(1), completed(0)))
    assert result.status is Status.FAILED
    assert result.failure is not None
    assert result.failure.error_type == "taskloom.errors.SerializationError"
    assert "Opaque" in result.failure.message
    assert "output of orchestration 'main'" in result.failure.message


def test_unserialisable_activity_input_fails_the_orchestration() -> None:
    def main(ctx: tl.OrchestrationContext) -> Gen:
        yield ctx.call_activity("a", object())

    result = execute("i", resolver(main=main), [], episode(T0, started("main")))
    assert result.status is Status.FAILED
    assert result.failure is not None
    assert result.failure.error_type == "taskloom.errors.SerializationError"
    assert "input of activity 'a'" in result.failure.message


def test_exception_after_a_caught_failure_fails_with_the_new_exception() -> None:
    def main(ctx: tl.OrchestrationContext) -> Gen:
        try:
            yield ctx.call_activity("a")
        except tl.TaskFailedError as exc:
            raise RuntimeError("wrapped") from exc

    past = [*episode(T0, started("main")), scheduled(0, "a")]
    result = execute("i", resolver(main=main), past, episode(at(1), failed(0, "OSError")))
    assert result.status is Status.FAILED
    assert result.failure is not None
    assert result.failure.error_type == "RuntimeError"
    assert result.failure.inner is not None
    assert result.failure.inner.error_type == "taskloom.errors.TaskFailedError"
    assert result.failure.is_caused_by("OSError")


# -- sticky runs ----------------------------------------------------------------------


def fan_and_wait(ctx: tl.OrchestrationContext) -> Gen:
    ctx.set_custom_status("fanning")
    ids = [str(ctx.new_uuid()) for _ in range(2)]
    results = yield ctx.task_all([ctx.call_activity("work", i) for i in ids])
    approval = ctx.wait_for_external_event("go", timeout=timedelta(hours=1))
    go = yield approval
    yield ctx.create_timer(timedelta(seconds=30))
    return {"results": results, "go": go, "at": ctx.current_utc_datetime.isoformat()}


def _episodes() -> list[tuple[Any, list[Any]]]:
    return [
        (T0, [started("fan_and_wait")]),
        (at(1), [completed(1, "one")]),
        (at(2), [completed(0, "zero")]),
        (at(3), [event_raised("GO", "yes")]),
        (at(33), [timer_fired(3, at(33))]),
    ]


def test_sticky_run_matches_a_fresh_replay_at_every_step() -> None:
    sticky = Driver(resolver(fan_and_wait=fan_and_wait), sticky=True)
    fresh = Driver(resolver(fan_and_wait=fan_and_wait))
    for t, events in _episodes():
        a, b = sticky.step(t, *events), fresh.step(t, *events)
        assert (a.status, a.actions, a.output, a.custom_status) == (
            b.status,
            b.actions,
            b.output,
            b.custom_status,
        )
        assert a.applied == b.applied
    assert sticky.history == fresh.history
    assert sticky.results[-1].status is Status.COMPLETED
    assert loads(sticky.results[-1].output)["results"] == ["zero", "one"]


def test_one_replay_of_the_whole_history_gives_the_same_outcome() -> None:
    d = Driver(resolver(fan_and_wait=fan_and_wait), sticky=True)
    for t, events in _episodes()[:-1]:
        d.step(t, *events)
    last_t, last_events = _episodes()[-1]
    stepped = d.step(last_t, *last_events)
    once = execute(
        "inst-1",
        resolver(fan_and_wait=fan_and_wait),
        d.history[: -len(stepped.applied) - 1],
        episode(last_t, *last_events),
    )
    assert (once.status, once.output) == (stepped.status, stepped.output)


def test_executing_in_two_steps_equals_one_fresh_replay() -> None:
    from taskloom.core.executor import OrchestrationRun

    past = [
        *episode(T0, started("chain", 1)),
        scheduled(0, "a", 1),
        *episode(at(1), completed(0, "A")),
        scheduled(1, "b", "A"),
    ]
    run = OrchestrationRun("i", resolver(chain=chain))
    first = run.execute(past[:3], [])
    assert first.actions == []  # the scheduled 'a' is recorded in past
    second = run.execute(past[3:], episode(at(2), completed(1, "B")))
    once = execute("i", resolver(chain=chain), past, episode(at(2), completed(1, "B")))
    assert (second.status, second.output) == (once.status, once.output)
    assert run.processed == len(past) + 2


# -- known executor defects -----------------------------------------------------------


def test_duplicate_execution_started_is_ignored() -> None:
    past = [*episode(T0, started("chain", 1)), scheduled(0, "a", 1)]
    dup = started("chain", 1, t=at(1))
    result = execute("i", resolver(chain=chain), past, episode(at(1), dup))
    assert result.status is Status.RUNNING
    assert result.actions == []
    assert dup not in result.applied


def test_suspending_twice_then_resuming_once_resumes() -> None:
    past = [*episode(T0, started("chain", 1)), scheduled(0, "a", 1)]
    new = episode(at(1), suspended(), suspended(), completed(0, "A"), resumed())
    result = execute("i", resolver(chain=chain), past, new)
    assert result.status is Status.RUNNING
    assert result.actions == [ScheduleTask(1, "b", dumps("A"))]


def test_duplicate_completion_held_while_suspended_is_dropped() -> None:
    past = [*episode(T0, started("chain", 1)), scheduled(0, "a", 1)]
    first, dup = completed(0, "A"), completed(0, "A")
    new = episode(at(1), suspended(), first, dup, resumed())
    result = execute("i", resolver(chain=chain), past, new)
    assert first in result.applied
    assert not any(e is dup for e in result.applied)


def test_pure_execute_can_list_registered_orchestrators() -> None:
    app = tl.App("x")

    @app.orchestrator
    def alpha(ctx: tl.OrchestrationContext) -> Gen:
        yield from ()

    run_execute: Callable[..., Any] = execute
    result = run_execute(
        "i",
        app.orchestrators.get,
        [],
        episode(T0, started("gamma")),
        known_names=lambda: list(app.orchestrators),
    )
    assert result.failure is not None
    assert "alpha" in result.failure.message
