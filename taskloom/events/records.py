"""The records of the event store, shared by every layer (foundation: no I/O).

- :class:`NewEvent`: an event to append; ``id`` (a UUID string by default) makes a
  retried append idempotent.
- :class:`RecordedEvent`: an event as stored, with its stream ``version`` and global
  ``position`` in the hub's log.
- :class:`AppendResult`: the version and position of the last event an append wrote.
- :class:`StreamState`: the expected versions that are not a number: :data:`NO_STREAM`,
  :data:`STREAM_EXISTS`, :data:`ANY`.
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import KW_ONLY, dataclass
from datetime import datetime
from typing import Any

__all__ = [
    "ANY",
    "NO_STREAM",
    "STREAM_EXISTS",
    "AppendResult",
    "ExpectedVersion",
    "NewEvent",
    "RecordedEvent",
    "StreamState",
    "describe_expected",
]


class StreamState(enum.Enum):
    """What an append expects of its stream when it does not name a version."""

    NO_STREAM = "no stream"
    STREAM_EXISTS = "stream exists"
    ANY = "any"

    def __repr__(self) -> str:
        return f"tl.{self.name}"


NO_STREAM = StreamState.NO_STREAM
STREAM_EXISTS = StreamState.STREAM_EXISTS
ANY = StreamState.ANY

#: An exact version (the version of the stream's last event, 0 for none) or a state.
ExpectedVersion = int | StreamState


def describe_expected(expected: ExpectedVersion) -> str:
    """``expected`` in words, for error messages."""
    if isinstance(expected, StreamState):
        return repr(expected)
    return f"version {expected}"


def _new_id() -> str:
    return str(uuid.uuid4())


@dataclass(frozen=True)
class NewEvent:
    """An event to append: a ``type``, JSON ``data`` and a JSON-object ``metadata``
    (correlation and causation ids, ``traceparent``, ...)."""

    type: str
    data: Any = None
    _: KW_ONLY
    id: str = ""
    metadata: dict[str, Any] | None = None

    def __init__(
        self,
        type: str,
        data: Any = None,
        *,
        id: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        object.__setattr__(self, "type", type)
        object.__setattr__(self, "data", data)
        object.__setattr__(self, "id", _new_id() if id is None else id)
        object.__setattr__(self, "metadata", metadata)


@dataclass(frozen=True)
class RecordedEvent:
    """An event of a stream as the log holds it."""

    stream_id: str
    version: int
    position: int
    id: str
    type: str
    data: Any
    metadata: dict[str, Any]
    recorded_at: datetime


@dataclass(frozen=True)
class AppendResult:
    """The stream version and log position of the last event an append wrote (or, for
    an idempotent retry, of the first append's last event)."""

    version: int
    position: int
