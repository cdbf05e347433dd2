"""What orchestrators yield for entities: the reply of a call, and the grant of a lock
set (a :class:`CriticalSection`, used as ``with (yield ctx.lock_entities([...])):``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from taskloom.converter import DataConverter
from taskloom.entities import protocol as p
from taskloom.entities.records import EntityId
from taskloom.errors import TaskFailedError
from taskloom.models import FailureDetails
from taskloom.tasks import ExternalEventTask

__all__ = ["CriticalSection", "EntityResponseTask"]


class EntityResponseTask(ExternalEventTask):
    """Waits for the reply named ``request_id`` (an ``EventRaised`` to this execution)."""

    def __init__(
        self,
        request_id: str,
        description: str,
        on_result: Callable[[Any], Any] | None = None,
    ) -> None:
        super().__init__(request_id)
        self.description = description
        self._on_result = on_result

    def __repr__(self) -> str:
        return f"<EntityResponseTask {self.description}>"

    def _receive(self, body: str | None, converter: DataConverter) -> None:
        reply = p.decode(body)
        failure = reply.get("failure")
        if failure is not None:
            details = FailureDetails.from_dict(failure)
            message = f"{self.description} failed: {details.message}"
            self._set_exception(TaskFailedError(message, details))
            return
        try:
            value = converter.loads(reply.get("result"))
        except Exception as exc:
            self._set_exception(exc)
            return
        self._set_result(value if self._on_result is None else self._on_result(value))


class CriticalSection:
    """Held locks on ``entities``; leaving the ``with`` block releases them."""

    def __init__(self, lock_id: str, entities: list[EntityId], release: Callable[[str], None]):
        self.lock_id = lock_id
        self.entities = entities
        self._release = release

    def __enter__(self) -> CriticalSection:
        return self

    def __exit__(self, *exc: object) -> None:
        self._release(self.lock_id)

    def __repr__(self) -> str:
        return f"<CriticalSection {', '.join(map(str, self.entities))}>"
