"""What a running activity knows about its invocation: :func:`activity_info`.

The runtime sets it around each activity call; nothing here imports the runtime.
"""

from __future__ import annotations

import contextvars
from dataclasses import dataclass


@dataclass(frozen=True)
class ActivityInfo:
    """What an activity knows about its invocation (see :func:`activity_info`)."""

    instance_id: str
    task_id: int
    name: str
    attempt: int


_activity_info: contextvars.ContextVar[ActivityInfo] = contextvars.ContextVar("activity_info")


def activity_info() -> ActivityInfo:
    """The running activity's instance id, task id, name and attempt number."""
    try:
        return _activity_info.get()
    except LookupError:
        raise RuntimeError("activity_info() is only available inside a running activity") from None
