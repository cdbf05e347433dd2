"""What the hub's consumers are doing: checkpoints, lag, owners, failures, parked events."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from taskloom.errors import ConfigurationError
from taskloom.storage.events_base import ConsumerState, ParkedRecord

if TYPE_CHECKING:
    from taskloom.events.store import AsyncEventStore

__all__ = ["ConsumerStatus", "RebuildReport", "consumer_statuses", "replay_parked"]


@dataclass(frozen=True)
class ConsumerStatus:
    """One projection or subscription: ``kind`` and ``name`` split from the consumer
    name (``projection:requests``); ``lag`` is how many positions the slowest partition
    is behind the head of the log."""

    consumer: str
    kind: str
    name: str
    partitions: int
    position: int
    head: int
    owners: tuple[str, ...]
    parked: tuple[ParkedRecord, ...]
    failing_position: int | None
    attempts: int
    last_error: str | None
    updated_at: datetime

    @property
    def lag(self) -> int:
        return max(0, self.head - self.position)


@dataclass(frozen=True)
class RebuildReport:
    """What a rebuild did: the generation swapped in, events applied, documents in the
    old and the new copy, and the position the new copy reached."""

    projection: str
    generation: int
    events_applied: int
    documents_before: int
    documents_after: int
    position: int
    parked: tuple[int, ...]


def _status(
    consumer: str, parts: list[ConsumerState], head: int, parked: list[ParkedRecord]
) -> ConsumerStatus:
    kind, _, name = consumer.partition(":")
    failing = [p for p in parts if p.failed_position is not None]
    worst = max(failing, key=lambda p: p.attempts) if failing else None
    return ConsumerStatus(
        consumer=consumer,
        kind=kind if name else "consumer",
        name=name or consumer,
        partitions=parts[0].partitions,
        position=min(p.position for p in parts),
        head=head,
        owners=tuple(sorted({p.lease_owner for p in parts if p.lease_owner})),
        parked=tuple(parked),
        failing_position=None if worst is None else worst.failed_position,
        attempts=0 if worst is None else worst.attempts,
        last_error=None if worst is None else worst.last_error,
        updated_at=max(p.updated_at for p in parts),
    )


async def consumer_statuses(events: AsyncEventStore) -> list[ConsumerStatus]:
    log = await events._ready()
    head = await log.log_head()
    by_consumer: dict[str, list[ConsumerState]] = {}
    for state in await log.consumer_states():
        by_consumer.setdefault(state.consumer, []).append(state)
    return [
        _status(name, parts, head, await log.consumer_parked(name))
        for name, parts in sorted(by_consumer.items())
    ]


async def replay_parked(
    events: AsyncEventStore, consumer: str, positions: Sequence[int] | None
) -> int:
    """Mark parked events of ``consumer`` for delivery again; its runner (a worker or
    ``taskloom serve`` running the app) delivers them and unparks those that succeed."""
    log = await events._ready()
    known = {s.consumer for s in await log.consumer_states()}
    if consumer not in known:
        raise ConfigurationError(
            f"no consumer {consumer!r} in hub {events.store.hub!r}: known are "
            f"{sorted(known) or 'none'} (names look like projection:NAME or subscription:NAME)"
        )
    return await log.consumer_replay(consumer, positions)
