"""Records that clients see: statuses, failure details, instance state and pages."""

from __future__ import annotations

import enum
import traceback
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


class Status(enum.Enum):
    """Runtime status of an instance; values are the Durable Functions strings."""

    PENDING = "Pending"
    RUNNING = "Running"
    COMPLETED = "Completed"
    FAILED = "Failed"
    TERMINATED = "Terminated"
    SUSPENDED = "Suspended"
    CONTINUED_AS_NEW = "ContinuedAsNew"

    #: True for the statuses an instance does not leave by itself. A plain attribute of
    #: each member, set below: it is asked several times for every episode, and a
    #: property (or hashing a member for a set look-up) runs Python code each time.
    is_terminal: bool

    @classmethod
    def parse(cls, text: str) -> Status:
        """Accept a value (``"Running"``) or a member name (``"RUNNING"``), any case."""
        for member in cls:
            if text.lower() in (member.value.lower(), member.name.lower()):
                return member
        names = ", ".join(m.value for m in cls)
        raise ValueError(f"unknown runtime status {text!r}; use one of: {names}")


for _member in Status:
    _member.is_terminal = _member.value in ("Completed", "Failed", "Terminated")
del _member


@dataclass(frozen=True)
class FailureDetails:
    """Why a task or orchestration failed: the error's type, message and stack trace."""

    error_type: str
    message: str
    stack_trace: str | None = None
    inner: FailureDetails | None = None

    @classmethod
    def from_exception(cls, exc: BaseException) -> FailureDetails:
        """Capture an exception, its traceback and its cause."""
        from taskloom.errors import TaskFailedError

        if isinstance(exc, TaskFailedError):
            inner: FailureDetails | None = exc.details
        elif exc.__cause__ is not None:
            inner = cls.from_exception(exc.__cause__)
        else:
            inner = None
        trace = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        return cls(_qualified_name(type(exc)), str(exc), trace, inner)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"error_type": self.error_type, "message": self.message}
        if self.stack_trace is not None:
            data["stack_trace"] = self.stack_trace
        if self.inner is not None:
            data["inner"] = self.inner.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FailureDetails:
        inner = data.get("inner")
        return cls(
            data["error_type"],
            data["message"],
            data.get("stack_trace"),
            cls.from_dict(inner) if inner else None,
        )

    def is_caused_by(self, error_type: type[BaseException] | str) -> bool:
        """Whether this failure (or one it wraps) came from ``error_type``."""
        wanted = error_type if isinstance(error_type, str) else _qualified_name(error_type)
        short = wanted.rsplit(".", 1)[-1]
        node: FailureDetails | None = self
        while node is not None:
            if node.error_type in (wanted, short) or node.error_type.endswith("." + short):
                return True
            node = node.inner
        return False


def _qualified_name(kind: type[BaseException]) -> str:
    module = kind.__module__
    return kind.__qualname__ if module == "builtins" else f"{module}.{kind.__qualname__}"


@dataclass
class OrchestrationState:
    """What a status query returns for one instance."""

    instance_id: str
    name: str
    runtime_status: Status
    input: Any = None
    output: Any = None
    custom_status: Any = None
    created_at: datetime | None = None
    last_updated_at: datetime | None = None
    failure_details: FailureDetails | None = None
    history: list[Any] | None = None
    parent_instance_id: str | None = None
    version: str | None = None
    scheduled_start_at: datetime | None = None


@dataclass
class Page:
    """One page of a query; pass ``continuation_token`` back to get the next."""

    items: list[OrchestrationState] = field(default_factory=list)
    continuation_token: str | None = None
