"""Running one activity work item and turning its outcome into a result message."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
from typing import TYPE_CHECKING, Any

from taskloom import history as h
from taskloom.activity_context import ActivityInfo, _activity_info
from taskloom.clock import Clock
from taskloom.errors import ConfigurationError
from taskloom.events.effects import BufferedEvents, Effects
from taskloom.events.store import EventStore
from taskloom.models import FailureDetails
from taskloom.observability import spans
from taskloom.observability.context import TraceContext
from taskloom.runtime.threads import ActivityThreads
from taskloom.storage.base import AT_ONCE, ActivityResult, Message, WorkItem

if TYPE_CHECKING:
    from taskloom.app import App
    from taskloom.client import AsyncClient, Client

CLIENT_SERVICE = "client"
"""The built-in service: an activity declaring ``*, client`` gets the worker's client
(an ``AsyncClient`` for ``async def`` activities, a blocking ``Client`` otherwise)."""

EVENTS_SERVICE = "events"
"""The built-in event store: an activity declaring ``*, events`` gets an event store
whose appends are written with the activity's result, in one transaction, and only if
the attempt succeeds (reads go to the store at once)."""


async def run_activity(
    app: App,
    item: WorkItem,
    clock: Clock,
    pool: ActivityThreads,
    clients: tuple[AsyncClient, Client] | None = None,
) -> ActivityResult:
    """Call the activity (sync ones in ``pool``) and wrap its result or failure;
    ``clients`` (async, blocking) are what the built-in ``client`` service injects."""
    effects = Effects()
    # The run's span is a child of the scheduling episode's "activity:{name}" span (as
    # in the Durable Task SDKs, no span without that parent).
    parent = TraceContext.parse(item.trace_parent) if spans.enabled() else None
    started = clock.now()
    with (
        spans.live(f"activity:{item.name}", "server", _attributes(item), parent)
        if parent is not None
        else contextlib.nullcontext()
    ) as span:
        try:
            value = await _call(app, item, pool, clients, effects)
            text = (
                None
                if value is None
                else app.converter.dumps(value, what=f"output of activity {item.name!r}")
            )
            event: h.HistoryEvent = h.TaskCompleted(
                clock.now(), task_scheduled_id=item.task_id, result=text, started_at=started
            )
        except Exception as exc:
            effects.clear()  # a failed attempt's appends are never written
            failure = FailureDetails.from_exception(exc)
            event = h.TaskFailed(
                clock.now(), task_scheduled_id=item.task_id, failure=failure, started_at=started
            )
            if span is not None:
                span.fail(f"{failure.error_type}: {failure.message}")
    message = Message(item.instance_id, event, AT_ONCE, item.execution_id)
    return ActivityResult(item.id, item.lease_token, message, tuple(effects.appends))


def _attributes(item: WorkItem) -> dict[str, str | int | bool]:
    return {
        spans.TYPE: "activity",
        spans.NAME: item.name,
        spans.INSTANCE_ID: item.instance_id,
        spans.TASK_ID: item.task_id,
        spans.ATTEMPT: item.attempt,
    }


class ActivityNotFoundError(LookupError):
    """No activity is registered under the scheduled name."""


async def _call(
    app: App,
    item: WorkItem,
    pool: ActivityThreads,
    clients: tuple[AsyncClient, Client] | None,
    effects: Effects,
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
    builtin = (CLIENT_SERVICE, EVENTS_SERVICE)
    kwargs = {name: app.service(name) for name in activity.services if name not in builtin}
    for name in builtin:
        if name not in activity.services:
            continue
        if clients is None:
            raise ConfigurationError(
                f"activity {item.name!r} asks for the built-in {name!r} service, but this "
                "worker was started without a client"
            )
        if name == CLIENT_SERVICE:
            kwargs[name] = clients[0] if activity.is_async else clients[1]
            continue
        buffered = BufferedEvents(clients[0].events, effects)
        loop = asyncio.get_running_loop()
        kwargs[name] = buffered if activity.is_async else EventStore(_async=buffered, _loop=loop)
    info = ActivityInfo(item.instance_id, item.task_id, item.name, item.attempt)
    token = _activity_info.set(info)
    try:
        if activity.is_async:
            return await activity.fn(*args, **kwargs)
        context = contextvars.copy_context()
        return await pool.run(functools.partial(context.run, activity.fn, *args, **kwargs))
    finally:
        _activity_info.reset(token)
