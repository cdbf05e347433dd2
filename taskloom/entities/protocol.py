"""The messages between instances that make entities work, as in the Durable Task
Framework: every one is an ``EventRaised`` history event in an inbox.

To an entity (``@name@key``):

- ``EventRaised("op", request)``: an operation (``{"op", "input", "id", "parent",
  "exec"}``; ``id`` and ``parent`` are absent for a signal) or a lock request
  (``{"lock": [sorted ids], "pos": i, "id", "parent", "exec"}``), which each entity of
  the set grants in turn and passes on to the next; the last one replies.
- ``EventRaised("release", {"id", "parent"})``: ends a critical section.

To the calling orchestration's execution: ``EventRaised(<request id>, reply)`` with
``{"result": text}`` or ``{"failure": {...}}``, as sub-orchestration replies go.

The entity's scheduler state (the lock holder, operations queued behind the lock, and
releases that came before their lock request) is JSON kept in the entity row's
``input`` column; the entity's own state is the converter's JSON in ``custom_status``.
Payloads (inputs, results, state) stay the converter's JSON text, nested as strings.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from taskloom.models import FailureDetails

__all__ = [
    "OPERATION",
    "RELEASE",
    "SchedulerState",
    "decode",
    "encode",
    "failure_reply",
    "lock_request",
    "operation",
    "release",
    "result_reply",
]

OPERATION = "op"
RELEASE = "release"
#: Releases remembered for lock requests that have not come yet (a critical section
#: ended before its request reached this entity): the newest ones only.
MAX_EARLY_RELEASES = 64

Request = dict[str, Any]


def encode(body: dict[str, Any]) -> str:
    return json.dumps(body, separators=(",", ":"))


def decode(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    value = json.loads(text)
    return value if isinstance(value, dict) else {}


def operation(
    op: str,
    input: str | None,
    *,
    request_id: str | None = None,
    parent: str | None = None,
    execution_id: str | None = None,
) -> str:
    """An operation request; without ``request_id`` a signal (no reply)."""
    body: dict[str, Any] = {"op": op, "input": input}
    if request_id is not None:
        body.update(id=request_id, parent=parent, exec=execution_id or None)
    elif parent is not None:
        body["parent"] = parent
    return encode(body)


def lock_request(
    lock_id: str, entities: list[str], position: int, parent: str, execution_id: str | None
) -> str:
    body = {"lock": entities, "pos": position, "id": lock_id, "parent": parent}
    body["exec"] = execution_id or None
    return encode(body)


def release(lock_id: str, parent: str) -> str:
    return encode({"id": lock_id, "parent": parent})


def result_reply(result: str | None) -> str:
    return encode({"result": result})


def failure_reply(failure: FailureDetails) -> str:
    return encode({"failure": failure.to_dict()})


@dataclass
class SchedulerState:
    """The lock and the queue of one entity (``input`` column; None when all empty)."""

    lock: Request | None = None
    queue: list[Request] = field(default_factory=list)
    released: list[str] = field(default_factory=list)

    @classmethod
    def loads(cls, text: str | None) -> SchedulerState:
        data = decode(text)
        return cls(data.get("lock"), list(data.get("queue", ())), list(data.get("released", ())))

    def dumps(self) -> str | None:
        if self.lock is None and not self.queue and not self.released:
            return None
        data: dict[str, Any] = {}
        if self.lock is not None:
            data["lock"] = self.lock
        if self.queue:
            data["queue"] = self.queue
        if self.released:
            data["released"] = self.released
        return encode(data)

    @property
    def is_empty(self) -> bool:
        """No lock and nothing queued (early releases alone do not keep an entity)."""
        return self.lock is None and not self.queue
