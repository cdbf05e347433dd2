"""Entity identities and the records clients see (no I/O, no dependencies)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

__all__ = [
    "CleanEntityStorageResult",
    "EntityId",
    "EntityMetadata",
    "EntityStateResponse",
    "is_entity_id",
]


def is_entity_id(instance_id: str) -> bool:
    """Whether an instance id names an entity (``@name@key``, as in Durable Functions)."""
    return instance_id.startswith("@")


@dataclass(frozen=True, order=True)
class EntityId:
    """One entity: ``EntityId("Counter", "c1")``. Names ignore case (kept lower-cased, as
    Durable Functions does); keys are kept as given. The instance id is ``@name@key``."""

    name: str
    key: str

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"an entity name must be a non-empty string, got {self.name!r}")
        if "@" in self.name:
            raise ValueError(f"an entity name may not contain '@', got {self.name!r}")
        if not isinstance(self.key, str):
            raise ValueError(f"an entity key must be a string, got {self.key!r}")
        object.__setattr__(self, "name", self.name.lower())

    @property
    def instance_id(self) -> str:
        return f"@{self.name}@{self.key}"

    @classmethod
    def from_instance_id(cls, instance_id: str) -> EntityId:
        """Parse ``@name@key`` (the key may itself contain ``@``)."""
        if not is_entity_id(instance_id) or "@" not in instance_id[1:]:
            raise ValueError(f"{instance_id!r} is not an entity instance id (@name@key)")
        name, _, key = instance_id[1:].partition("@")
        return cls(name, key)

    @classmethod
    def of(cls, value: EntityId | str) -> EntityId:
        """An ``EntityId`` as given, or parsed from ``@name@key``."""
        return value if isinstance(value, EntityId) else cls.from_instance_id(value)

    def __str__(self) -> str:
        return self.instance_id


@dataclass(frozen=True)
class EntityStateResponse:
    """What ``read_entity_state`` returns (Durable Functions' ``EntityStateResponse``)."""

    entity_exists: bool
    entity_state: Any = None


@dataclass(frozen=True)
class EntityMetadata:
    """One entity of a ``query_entities`` page; ``state`` is None without
    ``include_state``."""

    entity_id: EntityId
    last_modified: datetime
    state: Any = None


@dataclass(frozen=True)
class CleanEntityStorageResult:
    """What ``clean_entity_storage`` did: empty entities removed, orphaned locks released."""

    removed: int = 0
    locks_released: int = 0
