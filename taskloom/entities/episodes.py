"""One entity episode: a leased inbox batch -> the entity executor -> an EpisodeCommit.

Synchronous and without I/O, like :mod:`taskloom.runtime.episodes`: the worker leases
the entity (an instance ``@name@key``), calls :func:`plan_entity_episode`, and commits.
The commit is the unit of exactly once: the consumed messages, the new state (the row's
``custom_status``), the scheduler state (``input``) and every outgoing message and start
are written in one fenced transaction, or none of it is.

An entity's row has no history; its status is ``Running`` while it has state, a lock or
queued operations, and ``Completed`` when empty (``clean_entity_storage`` removes those).
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime

from taskloom import history as h
from taskloom.converter import DataConverter, default_converter
from taskloom.entities.executor import (
    EntityBatchResult,
    EntityResolver,
    Incoming,
    execute_batch,
)
from taskloom.entities.records import EntityId
from taskloom.models import Status
from taskloom.storage.base import (
    AT_ONCE,
    EpisodeCommit,
    InstanceRecord,
    LeasedEpisode,
    Message,
    NewInstance,
)

__all__ = ["plan_entity_episode"]


def plan_entity_episode(
    episode: LeasedEpisode,
    resolve: EntityResolver,
    now: datetime,
    converter: DataConverter = default_converter,
    known_names: Callable[[], Sequence[str]] = tuple,
) -> tuple[EpisodeCommit, EntityBatchResult]:
    """The commit of one entity episode, and what the batch did (for logs)."""
    rec = episode.instance
    entity_id = EntityId.from_instance_id(rec.instance_id)
    batch = [
        Incoming(m.id, m.event.name, m.event.input)
        for m in episode.messages
        if isinstance(m.event, h.EventRaised)
    ]
    result = execute_batch(
        entity_id, resolve, rec.custom_status, rec.input, batch, converter, known_names
    )
    messages = [
        Message(o.instance_id, h.EventRaised(now, name=o.name, input=o.body), AT_ONCE,
                o.execution_id)
        for o in result.outgoing
    ]  # fmt: skip
    starts = [_start(s.instance_id, s.name, s.input, now) for s in result.starts]
    empty = result.is_empty
    instance = dataclasses.replace(
        rec,
        name=entity_id.name,
        status=Status.COMPLETED if empty else Status.RUNNING,
        custom_status=result.state,
        input=result.scheduler,
        output=None,
        failure=None,
        updated_at=now,
        completed_at=now if empty else None,
        history_len=0,
    )
    commit = EpisodeCommit(
        instance,
        episode.lease_token,
        [m.id for m in episode.messages],
        messages=messages,
        new_instances=starts,
        prior_status=rec.status,
    )
    return commit, result


def _start(instance_id: str, name: str, input: str | None, now: datetime) -> NewInstance:
    execution_id = uuid.uuid4().hex
    record = InstanceRecord(
        instance_id=instance_id,
        execution_id=execution_id,
        name=name,
        status=Status.PENDING,
        created_at=now,
        updated_at=now,
        input=input,
    )
    start = h.ExecutionStarted(now, -1, name, instance_id, execution_id, input)
    return NewInstance(record, Message(instance_id, start, AT_ONCE))
