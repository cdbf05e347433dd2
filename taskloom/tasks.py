"""Tasks: what orchestrator code yields. A task completes (or fails) when the history
event it waits for is applied; composite tasks complete from their children."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from taskloom.errors import TaskFailedError, TaskloomError
from taskloom.models import FailureDetails

if TYPE_CHECKING:
    from taskloom.context import OrchestrationContext
    from taskloom.retry import RetryPolicy

T = TypeVar("T")


class Task(Generic[T]):
    """A unit of work an orchestrator waits on with ``yield``."""

    def __init__(self) -> None:
        self._complete = False
        self._result: Any = None
        self._exception: BaseException | None = None
        self._callbacks: list[Callable[[Task[Any]], None]] = []

    @property
    def is_complete(self) -> bool:
        return self._complete

    @property
    def is_failed(self) -> bool:
        return self._exception is not None

    @property
    def result(self) -> T:
        """The value, once complete; raises the task's error if it failed."""
        if not self._complete:
            raise TaskloomError("the task has not completed yet; yield it first")
        if self._exception is not None:
            raise self._exception
        return self._result  # type: ignore[no-any-return]

    def get_exception(self) -> BaseException | None:
        return self._exception

    def _on_done(self, callback: Callable[[Task[Any]], None]) -> None:
        if self._complete:
            callback(self)
        else:
            self._callbacks.append(callback)

    def _set_result(self, value: Any) -> None:
        if self._complete:
            return
        self._complete, self._result = True, value
        self._fire()

    def _set_exception(self, exc: BaseException) -> None:
        if self._complete:
            return
        self._complete, self._exception = True, exc
        self._fire()

    def _fire(self) -> None:
        callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback(self)


class CompletableTask(Task[T]):
    """A task tied to one action of the orchestrator (``task_id`` is its event id)."""

    def __init__(self, task_id: int, description: str) -> None:
        super().__init__()
        self.task_id = task_id
        self.description = description

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.description}>"


class TimerTask(CompletableTask[None]):
    """A durable timer. ``cancel()`` makes it never complete (its firing is ignored)."""

    def __init__(
        self, task_id: int, fire_at: datetime, ctx: OrchestrationContext | None = None
    ) -> None:
        super().__init__(task_id, f"timer #{task_id} at {fire_at.isoformat()}")
        self.fire_at = fire_at
        self._ctx = ctx
        self.is_cancelled = False

    def cancel(self) -> None:
        """Stop waiting for this timer; cancelling a fired timer does nothing."""
        if self._complete or self.is_cancelled:
            return
        self.is_cancelled = True
        if self._ctx is not None:
            self._ctx._forget_task(self.task_id)


class ExternalEventTask(Task[Any]):
    """Waits for an external event by name; with a timeout, fails with TaskTimeoutError."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name
        self.timer: TimerTask | None = None

    def __repr__(self) -> str:
        return f"<ExternalEventTask {self.name!r}>"


class WhenAllTask(Task[list[Any]]):
    """Completes with every child's result, in order; fails with the first failure."""

    def __init__(self, tasks: Sequence[Task[Any]]) -> None:
        super().__init__()
        self.tasks = list(tasks)
        self._left = len(self.tasks)
        if not self.tasks:
            self._set_result([])
        for task in self.tasks:
            task._on_done(self._child_done)

    def _child_done(self, child: Task[Any]) -> None:
        if self._complete:
            return
        exc = child.get_exception()
        if exc is not None:
            self._set_exception(exc)
            return
        self._left -= 1
        if self._left == 0:
            self._set_result([t._result for t in self.tasks])


class WhenAnyTask(Task[Task[Any]]):
    """Completes with the first child to finish (whether it succeeded or failed)."""

    def __init__(self, tasks: Sequence[Task[Any]]) -> None:
        super().__init__()
        self.tasks = list(tasks)
        if not self.tasks:
            raise ValueError("task_any needs at least one task")
        for task in self.tasks:
            task._on_done(self._child_done)

    def _child_done(self, child: Task[Any]) -> None:
        self._set_result(child)


class RetryableTask(Task[Any]):
    """Runs ``start()`` (one attempt) until it succeeds or the policy gives up,
    waiting on a durable timer between attempts."""

    def __init__(
        self,
        ctx: OrchestrationContext,
        policy: RetryPolicy,
        start: Callable[[int | None, int], CompletableTask[Any]],
    ) -> None:
        super().__init__()
        self._ctx = ctx
        self._policy = policy
        self._start = start
        self._first_at = ctx.current_utc_datetime
        self.attempt = 1
        self._first_id: int | None = None
        self._run()

    def _run(self) -> None:
        # Every attempt and retry timer names the first attempt, so rewind can tell a
        # retry chain that failed from one that recovered.
        attempt = self._start(self._first_id, self.attempt)
        if self._first_id is None:
            self._first_id = attempt.task_id
        attempt._on_done(self._attempt_done)

    def _attempt_done(self, child: Task[Any]) -> None:
        exc = child.get_exception()
        if exc is None:
            self._set_result(child._result)
        elif self._should_retry(exc):
            self.attempt += 1
            fire_at = self._ctx.current_utc_datetime + self._policy.delay_before(self.attempt)
            timer = self._ctx._create_timer(fire_at, purpose="retry", retry_of=self._first_id)
            timer._on_done(lambda _t: self._run())
        else:
            self._set_exception(exc)

    def _should_retry(self, exc: BaseException) -> bool:
        policy = self._policy
        if self.attempt >= policy.max_number_of_attempts:
            return False
        if isinstance(exc, TaskFailedError) and exc.details.non_retriable:
            return False  # the worker that ran it said retrying cannot help
        elapsed = self._ctx.current_utc_datetime - self._first_at
        if policy.retry_timeout is not None and elapsed >= policy.retry_timeout:
            return False
        if policy.handle is not None:
            details = (
                exc.details
                if isinstance(exc, TaskFailedError)
                else FailureDetails.from_exception(exc)
            )
            return bool(policy.handle(details))
        return True
