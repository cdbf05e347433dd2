"""Builders shared by the contract tests: instances, messages and commits at fixed times."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from taskloom.history import (
    EventRaised,
    ExecutionCompleted,
    ExecutionStarted,
    HistoryEvent,
    OrchestratorStarted,
    ParentInstance,
)
from taskloom.models import Status
from taskloom.storage.base import (
    EpisodeCommit,
    InstanceRecord,
    LeasedEpisode,
    Message,
    NewInstance,
    Store,
)

T0 = datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)


def at(seconds: float) -> datetime:
    """``T0`` plus ``seconds``."""
    return T0 + timedelta(seconds=seconds)


def new_instance(
    instance_id: str,
    *,
    name: str = "orch",
    created: datetime = T0,
    start_at: datetime | None = None,
    parent: ParentInstance | None = None,
    execution_id: str | None = None,
) -> NewInstance:
    """A Pending instance and its ExecutionStarted message (visible at ``start_at``)."""
    execution = execution_id or f"{instance_id}:1"
    record = InstanceRecord(
        instance_id=instance_id,
        execution_id=execution,
        name=name,
        status=Status.PENDING,
        created_at=created,
        updated_at=created,
        input='"input"',
        parent_instance_id=None if parent is None else parent.instance_id,
        scheduled_start_at=start_at,
    )
    started = ExecutionStarted(
        timestamp=created,
        name=name,
        instance_id=instance_id,
        execution_id=execution,
        input='"input"',
        parent=parent,
        scheduled_start=start_at,
    )
    return NewInstance(record, Message(instance_id, started, start_at or created, execution))


def event(instance_id: str, name: str = "go", when: datetime = T0) -> Message:
    """An external event for ``instance_id``, visible at ``when``."""
    return Message(instance_id, EventRaised(timestamp=when, name=name, input=f'"{name}"'), when)


def commit(
    episode: LeasedEpisode,
    *,
    status: Status = Status.RUNNING,
    now: datetime = T0,
    consume: Sequence[Message] | None = None,
    history: Sequence[HistoryEvent] | None = None,
    **changes: object,
) -> EpisodeCommit:
    """Commit ``episode``: consume its messages (or ``consume``) and append them as history.

    ``changes`` are further :class:`EpisodeCommit` fields (work_items, messages, ...).
    """
    consumed = list(episode.messages if consume is None else consume)
    events = [OrchestratorStarted(timestamp=now), *(m.event for m in consumed)]
    if history is not None:
        events = list(history)
    replace_history = bool(changes.get("replace_history", False))
    base_len = 0 if replace_history else episode.instance.history_len
    instance = dataclasses.replace(
        episode.instance,
        status=status,
        updated_at=now,
        completed_at=now if status.is_terminal else None,
        history_len=base_len + len(events),
    )
    return EpisodeCommit(
        instance=instance,
        lease_token=episode.lease_token,
        consumed=[m.id for m in consumed],
        history=events,
        **changes,  # type: ignore[arg-type]
    )


async def lease_all(
    store: Store, now: datetime = T0, lease_for: float = 30.0
) -> dict[str, LeasedEpisode]:
    """Every runnable instance at ``now``, leased, by id."""
    episodes = await store.lease_episodes(now, 10_000, lease_for, "tester")
    return {e.instance.instance_id: e for e in episodes}


async def settle(store: Store, statuses: dict[str, Status], now: datetime = T0) -> None:
    """Run one episode of each listed instance that ends in the given status."""
    episodes = await lease_all(store, now)
    commits = []
    for instance_id, episode in episodes.items():
        status = statuses.get(instance_id)
        if status is None:
            await store.abandon_episode(instance_id, episode.lease_token)
            continue
        history: list[HistoryEvent] = [OrchestratorStarted(timestamp=now)]
        history += [m.event for m in episode.messages]
        if status.is_terminal:
            history.append(ExecutionCompleted(timestamp=now, status=status, result='"done"'))
        commits.append(commit(episode, status=status, now=now, history=history))
    assert all(await store.complete_episodes(commits, now))
    missing = set(statuses) - set(episodes)
    assert not missing, f"not runnable: {missing}"
