"""The one exception hierarchy of taskloom.

::

    TaskloomError
    ├── ConfigurationError          bad store URL, bad option, missing extra
    ├── SerializationError          a value the data converter cannot encode or decode
    ├── InstanceExistsError         start_new on an id that is still running
    ├── InstanceNotFoundError       an operation on an id the hub does not hold
    ├── InvalidStateError           an operation the instance's status does not allow
    ├── ScheduleNotFoundError       a schedule name the hub does not hold (also LookupError)
    ├── StoreError                  the store failed (a driver error, translated)
    ├── OrchestrationError          raised inside orchestrator code
    │   ├── TaskFailedError         an activity or sub-orchestration failed (.details)
    │   │   └── TaskTimeoutError    wait_for_external_event(timeout=...) ran out
    │   └── NonDeterminismError     replayed code and stored history disagree
    └── (TimeoutError)              wait_for_start / wait_for_completion ran out (builtin)

Each message says what happened, to which instance, and what to do about it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from taskloom.models import FailureDetails


class TaskloomError(Exception):
    """Base of every error taskloom raises on purpose."""


class ConfigurationError(TaskloomError):
    """A setting, store URL or option is wrong; the message names the accepted forms."""


class SerializationError(TaskloomError):
    """A value cannot be encoded to (or decoded from) the stored JSON form."""


class InstanceExistsError(TaskloomError):
    """An instance with this id exists and has not finished."""


class InstanceNotFoundError(TaskloomError):
    """No instance with this id exists in the task hub."""


class InvalidStateError(TaskloomError):
    """The instance's current status does not allow the operation."""


class ScheduleNotFoundError(TaskloomError, LookupError):
    """No schedule with this name is stored in the hub (a host registers an app's
    schedules when it starts)."""


class StoreError(TaskloomError):
    """The store failed; the original driver error is chained as ``__cause__``."""


class OrchestrationError(TaskloomError):
    """Base of the errors an orchestrator sees."""


class TaskFailedError(OrchestrationError):
    """An activity or sub-orchestration failed; ``details`` tells how."""

    def __init__(self, message: str, details: FailureDetails) -> None:
        super().__init__(message)
        self.details = details


class TaskTimeoutError(TaskFailedError):
    """An external event did not arrive before its timeout."""


class NonDeterminismError(OrchestrationError):
    """The orchestrator's actions on replay do not match its stored history."""
