"""Running one activity work item and turning its outcome into a result message."""

from __future__ import annotations

import asyncio
import contextvars
from concurrent.futures import Executor
from typing import TYPE_CHECKING, Any

from taskloom import history as h
from taskloom.activity_context import ActivityInfo, _activity_info
from taskloom.clock import Clock
from taskloom.errors import ConfigurationError
from taskloom.models import FailureDetails
from taskloom.storage.base import AT_ONCE, ActivityResult, Message, WorkItem

if TYPE_CHECKING:
    from taskloom.app import App
    from taskloom.client import AsyncClient, Client

CLIENT_SERVICE = "client"
"""The built-in service: an activity declaring ``*, client`` gets the worker's client
(an ``AsyncClient`` for ``async def`` activities, a blocking ``Client`` otherwise)."""


async def run_activity(
    app: App,
    item: WorkItem,
    clock: Clock,
    pool: Executor,
    clients: tuple[AsyncClient, Client] | None = None,
) -> ActivityResult:
    """Call the activity (sync ones in ``pool``) and wrap its result or failure;
    ``clients`` (async, blocking) are what the built-in ``client`` service injects."""
    try:
        value = await _call(app, item, pool, clients)
        text = (
            None
            if value is None
            else app.converter.dumps(value, what=f"output of activity {item.name!r}")
        )
        event: h.HistoryEvent = h.TaskCompleted(
            clock.now(), task_scheduled_id=item.task_id, result=text
        )
    except Exception as exc:
        failure = FailureDetails.from_exception(exc)
        event = h.TaskFailed(clock.now(), task_scheduled_id=item.task_id, failure=failure)
    message = Message(item.instance_id, event, AT_ONCE, item.execution_id)
    return ActivityResult(item.id, item.lease_token, message)


class ActivityNotFoundError(LookupError):
    """No activity is registered under the scheduled name."""


async def _call(
    app: App, item: WorkItem, pool: Executor, clients: tuple[AsyncClient, Client] | None
) -> Any:
    activity = app.activities.get(item.name)
    if activity is None:
        names = ", ".join(sorted(app.activities)) or "none"
        raise ActivityNotFoundError(
            f"no activity named {item.name!r} is registered with app {app.name!r} "
            f"(registered: {names}); register it with @app.activity or fix the name "
            f"in orchestration {item.instance_id!r}"
        )
    args: tuple[Any, ...] = ()
    if activity.takes_input:
        what = f"input of activity {item.name!r}"
        args = (app.converter.loads(item.input, what=what),)
    kwargs = {name: app.service(name) for name in activity.services if name != CLIENT_SERVICE}
    if CLIENT_SERVICE in activity.services:
        if clients is None:
            raise ConfigurationError(
                f"activity {item.name!r} asks for the built-in 'client' service, but this "
                "worker was started without a client"
            )
        kwargs[CLIENT_SERVICE] = clients[0] if activity.is_async else clients[1]
    info = ActivityInfo(item.instance_id, item.task_id, item.name, item.attempt)
    token = _activity_info.set(info)
    try:
        if activity.is_async:
            return await activity.fn(*args, **kwargs)
        context = contextvars.copy_context()
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            pool, lambda: context.run(lambda: activity.fn(*args, **kwargs))
        )
    finally:
        _activity_info.reset(token)
