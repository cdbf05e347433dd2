"""The clients' entity methods: ``signal_entity``, ``read_entity_state``,
``query_entities`` and ``clean_entity_storage`` (mixed into
:class:`~taskloom.client.AsyncClient` and :class:`~taskloom.client.Client`; the HTTP
entity routes call these too)."""

from __future__ import annotations

import uuid
from collections.abc import Coroutine
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from taskloom import history as h
from taskloom.entities import protocol as p
from taskloom.entities.records import (
    CleanEntityStorageResult,
    EntityId,
    EntityMetadata,
    EntityStateResponse,
)
from taskloom.models import Page, Status
from taskloom.storage.base import AT_ONCE, InstanceQuery, InstanceRecord, Message

if TYPE_CHECKING:
    from taskloom.clock import Clock
    from taskloom.converter import DataConverter
    from taskloom.storage import Store

__all__ = ["AsyncEntitiesMixin", "EntitiesMixin"]

T = TypeVar("T")


class AsyncEntitiesMixin:
    """Entity methods of :class:`~taskloom.client.AsyncClient`."""

    if TYPE_CHECKING:
        clock: Clock
        converter: DataConverter

        async def _ready(self) -> Store: ...

    async def signal_entity(
        self,
        entity_id: EntityId | str,
        operation_name: str,
        input: Any = None,
        *,
        signal_at: datetime | None = None,
    ) -> None:
        """Send an operation to an entity (creating it if needed) without waiting; with
        ``signal_at`` (aware) it is delivered at that time."""
        target = EntityId.of(entity_id)
        if not isinstance(operation_name, str) or not operation_name:
            raise ValueError(f"operation name must be a non-empty string, got {operation_name!r}")
        if signal_at is not None and signal_at.tzinfo is None:
            raise ValueError("signal_at must be an aware datetime (e.g. datetime.now(UTC))")
        text = (
            None
            if input is None
            else self.converter.dumps(
                input, what=f"input of operation {operation_name!r} on {target}"
            )
        )
        event = h.EventRaised(
            self.clock.now(), name=p.OPERATION, input=p.operation(operation_name, text)
        )
        visible = AT_ONCE if signal_at is None else signal_at
        message = Message(target.instance_id, event, visible, key=uuid.uuid4().hex)
        store = await self._ready()
        await store.enqueue_messages([message])

    async def read_entity_state(self, entity_id: EntityId | str) -> EntityStateResponse:
        """The entity's state, in one read (``entity_exists`` is False without state)."""
        store = await self._ready()
        record = await store.get_instance(EntityId.of(entity_id).instance_id)
        if record is None or record.custom_status is None:
            return EntityStateResponse(False, None)
        return EntityStateResponse(True, self.converter.loads(record.custom_status))

    async def query_entities(
        self,
        *,
        name_prefix: str | None = None,
        include_state: bool = True,
        page_size: int = 100,
        continuation_token: str | None = None,
    ) -> Page:
        """A page of the entities that have state, by entity name prefix (names ignore
        case); pass the page's ``continuation_token`` back for the next. A page may hold
        fewer than ``page_size`` items (entities without state are skipped)."""
        store = await self._ready()
        prefix = "@" + (name_prefix or "").lower()
        query = InstanceQuery(statuses=frozenset({Status.RUNNING}), instance_id_prefix=prefix)
        found = await store.query_instances(query, page_size, continuation_token)
        items = [
            EntityMetadata(
                EntityId.from_instance_id(r.instance_id),
                r.updated_at,
                self.converter.loads(r.custom_status) if include_state else None,
            )
            for r in found.records
            if r.custom_status is not None
        ]
        return Page(items, found.continuation_token)  # type: ignore[arg-type]

    async def clean_entity_storage(
        self, *, remove_empty: bool = True, release_orphaned_locks: bool = True
    ) -> CleanEntityStorageResult:
        """Release locks held by orchestrations that no longer run (or no longer exist),
        then remove entities without state, lock or pending operations."""
        store = await self._ready()
        released = 0
        if release_orphaned_locks:
            released = await self._release_orphaned_locks(store)
        removed = 0
        if remove_empty:
            query = InstanceQuery(statuses=frozenset({Status.COMPLETED}), instance_id_prefix="@")
            removed = await store.purge_instances(query)
        return CleanEntityStorageResult(removed, released)

    async def _release_orphaned_locks(self, store: Store) -> int:
        query = InstanceQuery(statuses=frozenset({Status.RUNNING}), instance_id_prefix="@")
        locked: list[tuple[InstanceRecord, p.Request]] = []
        token: str | None = None
        while True:
            page = await store.query_instances(query, 500, token)
            for record in page.records:
                lock = p.SchedulerState.loads(record.input).lock
                if lock is not None:
                    locked.append((record, lock))
            token = page.continuation_token
            if token is None:
                break
        releases: list[Message] = []
        for record, lock in locked:
            holder = await store.get_instance(str(lock.get("parent")))
            alive = (
                holder is not None
                and not holder.status.is_terminal
                and holder.status is not Status.CONTINUED_AS_NEW
                and (not lock.get("exec") or lock["exec"] == holder.execution_id)
            )
            if alive:
                continue
            body = p.release(str(lock.get("id")), str(lock.get("parent")))
            event = h.EventRaised(self.clock.now(), name=p.RELEASE, input=body)
            releases.append(Message(record.instance_id, event, AT_ONCE, key=uuid.uuid4().hex))
        if releases:
            await store.enqueue_messages(releases)
        return len(releases)


class EntitiesMixin:
    """The same methods, blocking, for :class:`~taskloom.client.Client`."""

    if TYPE_CHECKING:

        def _run(self, coro: Coroutine[Any, Any, T]) -> T: ...

    @property
    def _e(self) -> AsyncEntitiesMixin:
        client: AsyncEntitiesMixin = self.__dict__["_async"]
        return client

    def signal_entity(
        self,
        entity_id: EntityId | str,
        operation_name: str,
        input: Any = None,
        *,
        signal_at: datetime | None = None,
    ) -> None:
        self._run(self._e.signal_entity(entity_id, operation_name, input, signal_at=signal_at))

    def read_entity_state(self, entity_id: EntityId | str) -> EntityStateResponse:
        return self._run(self._e.read_entity_state(entity_id))

    def query_entities(
        self,
        *,
        name_prefix: str | None = None,
        include_state: bool = True,
        page_size: int = 100,
        continuation_token: str | None = None,
    ) -> Page:
        coro = self._e.query_entities(
            name_prefix=name_prefix,
            include_state=include_state,
            page_size=page_size,
            continuation_token=continuation_token,
        )
        return self._run(coro)

    def clean_entity_storage(
        self, *, remove_empty: bool = True, release_orphaned_locks: bool = True
    ) -> CleanEntityStorageResult:
        coro = self._e.clean_entity_storage(
            remove_empty=remove_empty, release_orphaned_locks=release_orphaned_locks
        )
        return self._run(coro)
