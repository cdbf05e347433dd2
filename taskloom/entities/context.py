"""What entity code sees: :class:`EntityContext` (function style) and :class:`Entity`
(class style). Both are driven by :mod:`taskloom.entities.executor`; nothing here does
I/O: signals and starts are collected and become the episode's outgoing messages."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from taskloom.converter import DataConverter
from taskloom.entities.records import EntityId, is_entity_id

__all__ = ["Entity", "EntityContext", "OutgoingSignal", "OutgoingStart"]

_MISSING: Any = object()


@dataclass(frozen=True)
class OutgoingSignal:
    target: EntityId
    operation: str
    input: str | None


@dataclass(frozen=True)
class OutgoingStart:
    instance_id: str
    name: str
    input: str | None


class EntityContext:
    """Handed to an entity function once per operation (``ctx.operation_name``)."""

    def __init__(
        self,
        entity_id: EntityId,
        operation_name: str,
        input: str | None,
        state: str | None,
        converter: DataConverter,
        new_instance_id: Callable[[], str],
    ) -> None:
        self._id = entity_id
        self._operation = operation_name
        self._input = input
        self._state_text = state
        self._value: Any = _MISSING
        self._converter = converter
        self._new_instance_id = new_instance_id
        self._result: Any = _MISSING
        self._written = False
        self._deleted = False
        self.signals: list[OutgoingSignal] = []
        self.starts: list[OutgoingStart] = []

    # -- identity -------------------------------------------------------------------

    @property
    def entity_id(self) -> EntityId:
        return self._id

    @property
    def entity_name(self) -> str:
        return self._id.name

    @property
    def entity_key(self) -> str:
        return self._id.key

    @property
    def operation_name(self) -> str:
        return self._operation

    def get_input(self) -> Any:
        """The operation's input (``None`` when none was given)."""
        return self._converter.loads(self._input)

    # -- state ------------------------------------------------------------------------

    @property
    def has_state(self) -> bool:
        if self._deleted:
            return False
        return self._value is not _MISSING or self._state_text is not None

    def get_state(self, initializer: Callable[[], Any] | Any = None) -> Any:
        """The entity's state; without one, ``initializer()`` (or ``initializer`` itself
        when it is not callable). Changes persist through :meth:`set_state`."""
        if self._value is _MISSING and not self._deleted and self._state_text is not None:
            self._value = self._converter.loads(self._state_text)
        if self._value is _MISSING or self._deleted:
            return initializer() if callable(initializer) else initializer
        return self._value

    def set_state(self, value: Any) -> None:
        """Replace the state (``None`` deletes it, as :meth:`delete_state` does)."""
        if value is None:
            self.delete_state()
            return
        self._value, self._written, self._deleted = value, True, False

    def delete_state(self) -> None:
        """Delete the state: the entity no longer exists once this operation ends."""
        self._value, self._written, self._deleted = _MISSING, True, True

    def destruct_on_exit(self) -> None:
        """The Durable Functions spelling of :meth:`delete_state`."""
        self.delete_state()

    def set_result(self, value: Any) -> None:
        """What a caller's ``call_entity`` task completes with."""
        self._result = value

    # -- messages -----------------------------------------------------------------------

    def signal_entity(
        self, entity_id: EntityId | str, operation_name: str, input: Any = None
    ) -> None:
        """Signal another entity (or this one) once this operation succeeds."""
        target = EntityId.of(entity_id)
        text = self._encode(input, f"input of operation {operation_name!r} on {target}")
        self.signals.append(OutgoingSignal(target, operation_name, text))

    def start_new_orchestration(
        self, name: str, input: Any = None, *, instance_id: str | None = None
    ) -> str:
        """Start an orchestration once this operation succeeds; return its instance id
        (derived from this operation when not given, so a redone episode reuses it)."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"orchestration name must be a non-empty string, got {name!r}")
        iid = instance_id or self._new_instance_id()
        if is_entity_id(iid):
            raise ValueError(f"{iid!r} is an entity id; orchestration ids may not start with '@'")
        text = self._encode(input, f"input of orchestration {name!r}")
        self.starts.append(OutgoingStart(iid, name, text))
        return iid

    # -- for the executor -----------------------------------------------------------------

    def _final_state(self, current: str | None) -> str | None:
        """The state text after a function-style operation."""
        if self._deleted:
            return None
        if not self._written:
            return current
        return self._encode(self._value, f"state of entity {self._id}")

    def _result_value(self, returned: Any) -> Any:
        return returned if self._result is _MISSING else self._result

    def _encode(self, value: Any, what: str) -> str | None:
        if value is None:
            return None
        return self._converter.dumps(value, what=what)


class Entity:
    """Base of class-style entities: each public method is an operation taking at most
    one input; its return value is the result. The state is ``self.state`` (``None``
    until set, or what :meth:`initial_state` returns); ``self.context`` is the
    :class:`EntityContext`. An operation ``delete`` that the class does not define
    deletes the state."""

    state: Any
    context: EntityContext

    def initial_state(self) -> Any:
        """The state of an entity that has none yet."""
        return None
