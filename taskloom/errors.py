"""The one exception hierarchy of taskloom.

::

    TaskloomError
    ├── ConfigurationError          bad store URL, bad option, missing extra
    ├── SerializationError          a value the data converter cannot encode or decode
    │   └── PayloadTooLargeError    a payload above the store's hard limit (also ValueError)
    ├── InstanceExistsError         start_new on an id that is still running
    ├── InstanceNotFoundError       an operation on an id the hub does not hold
    ├── InvalidStateError           an operation the instance's status does not allow
    ├── ScheduleNotFoundError       a schedule name the hub does not hold (also LookupError)
    ├── StoreError                  the store failed (a driver error, translated)
    ├── WrongExpectedVersionError   an append found its stream at another version
    ├── InvalidEventError           an event, stream id or read the event store refuses
    │                               (also ValueError)
    ├── InvalidFilterError          a topic subscription filter that is malformed (also ValueError)
    ├── InvalidCloudEventError      a CloudEvent that breaks CloudEvents 1.0 (.attribute, .rule;
    │                               also ValueError)
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


class PayloadTooLargeError(SerializationError, ValueError):
    """A payload (input, output, event data, result, custom status) whose encoded JSON is
    larger than the store's ``payload_limit``; nothing was written. ``.size`` and
    ``.limit`` are in bytes."""

    def __init__(self, what: str, size: int, limit: int) -> None:
        super().__init__(
            f"{what} is {size:,} bytes of encoded JSON, above this store's payload limit of "
            f"{limit:,} bytes; nothing was stored. Pass less data (store large blobs "
            "elsewhere and pass a reference) or raise the limit with "
            "open_store(..., payload_limit=...)"
        )
        self.what = what
        self.size = size
        self.limit = limit


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


class WrongExpectedVersionError(TaskloomError):
    """An append expected its stream at one version and found another; nothing was
    written. ``actual`` is the stream's current version (0 when it does not exist)."""

    def __init__(self, stream_id: str, expected: object, actual: int, detail: str = "") -> None:
        from taskloom.events.records import StreamState, describe_expected

        shown = describe_expected(expected) if isinstance(expected, int | StreamState) else expected
        where = (
            f"stream {stream_id!r} is at version {actual}"
            if actual
            else (f"stream {stream_id!r} does not exist")
        )
        super().__init__(
            f"append to stream {stream_id!r} expected {shown}, but {where}"
            + (f" ({detail})" if detail else "")
            + ": read the stream again and retry with its current version, or pass "
            "expected_version=tl.ANY to append whatever it holds"
        )
        self.stream_id = stream_id
        self.expected = expected
        self.actual = actual


class InvalidEventError(TaskloomError, ValueError):
    """An event, a stream id or a read the event store refuses; nothing was written."""


class InvalidFilterError(TaskloomError, ValueError):
    """A topic subscription filter is malformed. ``field`` names the offending part
    (e.g. ``advancedFilters[2].operatorType``); the message also says what is allowed."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


class InvalidCloudEventError(TaskloomError, ValueError):
    """A CloudEvent (or a body meant to carry some) breaks a rule of CloudEvents 1.0.

    ``attribute`` names what is wrong (``"time"``, ``"specversion"``, an extension name,
    ``"batch[3].id"``, ``"body"``); ``rule`` says what it must be. Nothing was accepted."""

    def __init__(self, attribute: str, rule: str) -> None:
        super().__init__(
            f"invalid CloudEvent: {attribute!r} {rule}; correct {attribute!r} and try again"
        )
        self.attribute = attribute
        self.rule = rule

    def __reduce__(self) -> tuple[type[InvalidCloudEventError], tuple[str, str]]:
        return (type(self), (self.attribute, self.rule))


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
