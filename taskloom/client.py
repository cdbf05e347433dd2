"""Clients: start and manage orchestration instances. ``AsyncClient`` is the one
implementation; ``Client`` runs it on a private event loop thread."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import threading
import uuid
from collections.abc import Callable, Coroutine, Sequence
from datetime import datetime, timedelta
from typing import Any, TypeVar

from taskloom import history as h
from taskloom import manage, payloads, security
from taskloom.clock import Clock, SystemClock
from taskloom.converter import DataConverter, default_converter
from taskloom.entities.client import AsyncEntitiesMixin, EntitiesMixin
from taskloom.entities.records import is_entity_id
from taskloom.errors import (
    ConfigurationError,
    InstanceNotFoundError,
    InvalidStateError,
    SerializationError,
)
from taskloom.events.projection import ProjectionSpec
from taskloom.events.store import AsyncEventStore, EventStore
from taskloom.models import OrchestrationState, Page, Status
from taskloom.observability import spans
from taskloom.storage import Store, open_store
from taskloom.storage.base import AT_ONCE, InstanceQuery, InstanceRecord, Message, NewInstance
from taskloom.storage.host_base import HostStore, QueueMessage, ScheduleRecord
from taskloom.topics.client_api import AsyncTopicsMixin, TopicsMixin
from taskloom.versioning import check_version
from taskloom.waiting import IdleHook, InstanceWatcher

T = TypeVar("T")

_TERMINAL = frozenset(s for s in Status if s.is_terminal)


class AsyncClient(AsyncTopicsMixin, AsyncEntitiesMixin):
    """Starts, queries and controls instances of one task hub."""

    def __init__(
        self,
        store: str | Store = "sqlite:///taskloom.db",
        hub: str = "default",
        *,
        converter: DataConverter | None = None,
        clock: Clock | None = None,
        base_url: str | None = None,
        projections: Sequence[ProjectionSpec] = (),
        default_version: str | None = None,
    ) -> None:
        self.store = open_store(store, hub=hub) if isinstance(store, str) else store
        #: The version of starts that name none (an app's ``default_version``, else its
        #: ``version``; see ``docs/semantics.md``, "Versioning").
        self.default_version = default_version
        self._projections = tuple(projections)
        self._events: AsyncEventStore | None = None
        self.base_url = base_url
        self.converter = converter or default_converter
        self.clock: Clock = clock or SystemClock()
        self.idle_hook: IdleHook | None = None
        self._opened = False
        self._watcher: InstanceWatcher | None = None

    async def _ready(self) -> Store:
        if not self._opened:
            await self.store.open()
            self._opened = True
        return self.store

    @property
    def events(self) -> AsyncEventStore:
        """The hub's event store, on this client's store (and its app's projections)."""
        if self._events is None:
            self._events = AsyncEventStore(
                self.store,
                converter=self.converter,
                clock=self.clock,
                projections=self._projections,
                _opener=self._ready,
            )
        return self._events

    async def close(self) -> None:
        if self._opened:
            await self.store.close()
            self._opened = False

    async def __aenter__(self) -> AsyncClient:
        await self._ready()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- starting -------------------------------------------------------------------

    async def start_new(
        self,
        name: str,
        input: Any = None,
        instance_id: str | None = None,
        *,
        start_at: datetime | None = None,
        version: str | None = None,
    ) -> str:
        """Start orchestration ``name``; return its instance id (random when not given).
        Without ``version`` the instance gets the client's ``default_version``."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"orchestration name must be a non-empty string, got {name!r}")
        version = check_version(version) or self.default_version
        if start_at is not None and start_at.tzinfo is None:
            raise ValueError("start_at must be an aware datetime (e.g. datetime.now(UTC))")
        text = (
            None
            if input is None
            else self.converter.dumps(input, what=f"input of orchestration {name!r}")
        )
        return await self._create(name, text, instance_id, start_at, version)

    async def _create(
        self,
        name: str,
        text: str | None,
        instance_id: str | None,
        start_at: datetime | None,
        version: str | None,
    ) -> str:
        store = await self._ready()
        new = self._new_instance(name, text, instance_id, start_at, version)
        if not spans.enabled():
            await store.create_instance(new)
            return new.record.instance_id
        # The Durable Task SDKs' producer span; its context travels in ExecutionStarted,
        # so the orchestration (on any host) is its child in the caller's trace.
        iid = new.record.instance_id
        attributes: dict[str, str | int | bool] = {
            spans.TYPE: "orchestration",
            spans.NAME: name,
            spans.INSTANCE_ID: iid,
            spans.EXECUTION_ID: new.record.execution_id,
        }
        if version:
            attributes[spans.VERSION] = version
        span_name = f"create_orchestration:{name}"
        with spans.live(span_name, "producer", attributes, ambient=True) as span:
            ctx = span.context if span is not None else None
            started = new.start.event
            if ctx is not None and isinstance(started, h.ExecutionStarted):
                event = dataclasses.replace(
                    started, trace_parent=ctx.traceparent, trace_state=ctx.state
                )
                new = dataclasses.replace(new, start=dataclasses.replace(new.start, event=event))
            await store.create_instance(new)
        return iid

    def _new_instance(
        self,
        name: str,
        text: str | None,
        instance_id: str | None,
        start_at: datetime | None,
        version: str | None,
    ) -> NewInstance:
        """The rows of a new instance (nothing is written)."""
        iid = instance_id or uuid.uuid4().hex
        if is_entity_id(iid):
            raise ValueError(
                f"instance id {iid!r} starts with '@', which marks entities (@name@key); "
                "choose another id for an orchestration"
            )
        now = self.clock.now()
        eid = uuid.uuid4().hex
        record = InstanceRecord(
            instance_id=iid,
            execution_id=eid,
            name=name,
            status=Status.PENDING,
            created_at=now,
            updated_at=now,
            version=version,
            input=text,
            scheduled_start_at=start_at,
        )
        event = h.ExecutionStarted(now, -1, name, iid, eid, text, version, None, start_at)
        visible = start_at if start_at is not None and start_at > now else AT_ONCE
        return NewInstance(record, Message(iid, event, visible))

    # -- reading --------------------------------------------------------------------

    async def get_status(
        self, instance_id: str, *, show_history: bool = False, show_input: bool = True
    ) -> OrchestrationState | None:
        """The instance's state, or None when the hub holds no such instance."""
        store = await self._ready()
        record = await store.get_instance(instance_id)
        if record is None:
            return None
        state = self._state(record, show_input)
        if show_history:
            state.history = await store.get_history(instance_id)
        return state

    def _state(self, rec: InstanceRecord, show_input: bool = True) -> OrchestrationState:
        return OrchestrationState(
            instance_id=rec.instance_id,
            name=rec.name,
            runtime_status=rec.status,
            input=self._decode(rec.input) if show_input else None,
            output=self._decode(rec.output),
            custom_status=self._decode(rec.custom_status),
            created_at=rec.created_at,
            last_updated_at=rec.updated_at,
            failure_details=rec.failure,
            parent_instance_id=rec.parent_instance_id,
            version=rec.version,
            scheduled_start_at=rec.scheduled_start_at,
        )

    def _decode(self, text: str | None) -> Any:
        try:
            return self.converter.loads(text)
        except SerializationError:
            # A class the client cannot import: show the stored JSON rather than fail.
            return json.loads(text) if text else None

    async def get_history(self, instance_id: str) -> list[h.HistoryEvent]:
        store = await self._ready()
        await self._require(instance_id)
        return await store.get_history(instance_id)

    async def query(
        self,
        *,
        statuses: Any = None,
        name: str | None = None,
        instance_id_prefix: str | None = None,
        created_from: datetime | None = None,
        created_to: datetime | None = None,
        page_size: int = 100,
        continuation_token: str | None = None,
    ) -> Page:
        """One page of instances, oldest first; pass the returned token for the next."""
        if page_size < 1:
            raise ValueError(f"page_size must be at least 1, got {page_size}")
        store = await self._ready()
        query = InstanceQuery(
            statuses=_statuses(statuses),
            name=name,
            instance_id_prefix=instance_id_prefix,
            created_from=created_from,
            created_to=created_to,
        )
        found = await store.query_instances(query, page_size, continuation_token)
        return Page([self._state(r) for r in found.records], found.continuation_token)

    # -- waiting --------------------------------------------------------------------

    async def wait_for_start(self, instance_id: str, timeout: float = 60.0) -> OrchestrationState:
        """Wait until the instance left Pending; ``TimeoutError`` after ``timeout`` seconds."""
        return await self._wait(instance_id, timeout, lambda s: s is not Status.PENDING, "start")

    async def wait_for_completion(
        self, instance_id: str, timeout: float = 60.0
    ) -> OrchestrationState:
        """Wait until the instance completed, failed or was terminated."""
        return await self._wait(instance_id, timeout, lambda s: s in _TERMINAL, "complete")

    async def _wait(
        self, iid: str, timeout: float, done: Callable[[Status], bool], what: str
    ) -> OrchestrationState:
        store = await self._ready()
        if self._watcher is None:
            self._watcher = InstanceWatcher(store, lambda: self.idle_hook)
        return self._state(await self._watcher.wait(iid, done, timeout, what))

    # -- controlling ----------------------------------------------------------------

    async def raise_event(self, instance_id: str, event_name: str, data: Any = None) -> None:
        """Deliver external event ``event_name`` with ``data`` to a running instance."""
        if not event_name:
            raise ValueError("event_name must be a non-empty string")
        text = (
            None
            if data is None
            else self.converter.dumps(data, what=f"data of event {event_name!r}")
        )
        event = h.EventRaised(self.clock.now(), name=event_name, input=text)
        if not spans.enabled():
            await self._send(instance_id, event)
            return
        attributes: dict[str, str | int | bool] = {
            spans.TYPE: "event",
            spans.NAME: event_name,
            spans.EVENT_TARGET: instance_id,
        }
        span_name = f"orchestration_event:{event_name}"
        with spans.live(span_name, "producer", attributes, ambient=True):
            await self._send(instance_id, event)

    async def terminate(
        self, instance_id: str, reason: Any = None, *, recursive: bool = True
    ) -> None:
        """Stop an instance (and, with ``recursive``, its running sub-orchestrations)."""
        event = h.ExecutionTerminated(self.clock.now(), reason=reason, recurse=recursive)
        await self._send(instance_id, event)

    async def suspend(self, instance_id: str, reason: str | None = None) -> None:
        await self._send(instance_id, h.ExecutionSuspended(self.clock.now(), reason=reason))

    async def resume(self, instance_id: str, reason: str | None = None) -> None:
        await self._send(instance_id, h.ExecutionResumed(self.clock.now(), reason=reason))

    async def rewind(self, instance_id: str, reason: str | None = None) -> None:
        """Re-run a Failed instance from its failed tasks, keeping what succeeded."""
        record = await self._require(instance_id)
        if record.status is not Status.FAILED:
            raise InvalidStateError(
                f"instance {instance_id!r} is {record.status.value}; only Failed instances "
                "can be rewound"
            )
        now = self.clock.now()
        rewound = h.ExecutionRewound(now, reason=reason)
        message = Message(instance_id, rewound, AT_ONCE, key=uuid.uuid4().hex)
        await self.store.enqueue_messages([message])

    async def restart(self, instance_id: str, *, new_instance_id: bool = True) -> str:
        """Start the instance's orchestration again with its input and version; under a
        new random id, or (``new_instance_id=False``) replacing the finished instance."""
        record = await self._require(instance_id)
        reuse = None if new_instance_id else instance_id
        # The stored input text is reused as is: it need not decode in this process.
        return await self._create(record.name, record.input, reuse, None, record.version)

    async def _send(self, instance_id: str, event: h.HistoryEvent) -> None:
        record = await self._require(instance_id)
        if record.status in _TERMINAL:
            raise InvalidStateError(
                f"instance {instance_id!r} already finished ({record.status.value}); "
                f"{event.kind} has no effect on it"
            )
        message = Message(instance_id, event, AT_ONCE, key=uuid.uuid4().hex)
        await self._enqueue(message)

    async def _enqueue(self, message: Message) -> None:
        await self.store.enqueue_messages([message])

    async def _require(self, instance_id: str) -> InstanceRecord:
        store = await self._ready()
        record = await store.get_instance(instance_id)
        if record is None:
            raise InstanceNotFoundError(
                f"no instance {instance_id!r} in hub {store.hub!r}; check the id "
                "(ids are case-sensitive) and the hub"
            )
        return record

    # -- purging --------------------------------------------------------------------

    async def purge(self, instance_id: str) -> int:
        """Delete a finished instance and its history; returns 1, or 0 if it is unknown."""
        store = await self._ready()
        record = await store.get_instance(instance_id)
        if record is None:
            return 0
        if record.status not in _TERMINAL:
            raise InvalidStateError(
                f"instance {instance_id!r} is {record.status.value}; terminate it (or wait "
                "for it to finish) before purging"
            )
        return await store.purge_instances(InstanceQuery(), [instance_id])

    async def purge_many(
        self,
        *,
        created_from: datetime | None = None,
        created_to: datetime | None = None,
        statuses: Any = None,
    ) -> int:
        """Delete finished instances created in the range; returns how many. Works a
        page at a time, so a large purge never holds the store in one long transaction."""
        return await manage.purge_in_pages(
            await self._ready(),
            statuses=_statuses(statuses),
            created_from=created_from,
            created_to=created_to,
        )

    # -- queues and HTTP helpers (the host issue) ------------------------------------

    async def enqueue(self, queue: str, message: Any, *, delay: timedelta | None = None) -> int:
        """Put ``message`` (any value the converter takes) on durable queue ``queue``."""
        if not queue:
            raise ValueError("queue must be a non-empty name")
        body = self.converter.dumps(message, what=f"message for queue {queue!r}")
        store = await self._host_store()
        now = self.clock.now()
        visible = now + delay if delay else AT_ONCE
        return await store.queue_put(queue, body, visible, now)

    async def _host_store(self) -> HostStore:
        store = await self._ready()
        if not isinstance(store, HostStore):
            raise ConfigurationError(f"{store!r} has no queues, schedules or keys")
        return store

    def create_http_management_payload(
        self, instance_id: str, *, base_url: str | None = None, code: str | None = None
    ) -> dict[str, str]:
        """The Durable Functions management URLs of an instance."""
        base = base_url or self.base_url
        if base is None:
            raise ConfigurationError(
                "no base URL: pass base_url= here or to the client (taskloom serve sets it)"
            )
        return payloads.management_urls(base, self.store.hub, instance_id, code)

    def create_check_status_response(self, request: Any, instance_id: str) -> Any:
        """A 202 response with the management payload, for a user's HTTP route."""
        payload = self.create_http_management_payload(
            instance_id, base_url=payloads.base_url_of(request), code=payloads.code_of(request)
        )
        return payloads.check_status_response(payload)

    async def wait_for_completion_or_create_check_status_response(
        self, request: Any, instance_id: str, timeout: float = 10.0
    ) -> Any:
        """200 with the output if the instance completes within ``timeout`` seconds (500
        if it failed), else the 202 check-status response."""
        try:
            state = await self.wait_for_completion(instance_id, timeout)
        except TimeoutError:
            return self.create_check_status_response(request, instance_id)
        return payloads.completed_response(state)

    async def create_event_link(
        self,
        instance_id: str,
        event_name: str,
        expires_in: timedelta | datetime,
        *,
        data: Any = None,
        base_url: str | None = None,
    ) -> str:
        """A URL that raises ``event_name`` (with ``data``) on ``instance_id`` when
        opened, with no key, until it expires: after ``expires_in`` (a timedelta) or at
        that moment (an aware datetime, say an orchestration's deadline). Tampered or
        expired links get 403."""
        base = base_url or self.base_url
        if base is None:
            raise ConfigurationError(
                "no base URL: pass base_url= here or to the client (taskloom serve sets it)"
            )
        if isinstance(expires_in, datetime):
            if expires_in.tzinfo is None:
                raise ValueError("a link's expiry must be an aware datetime or a timedelta")
            expires_at = expires_in
        else:
            expires_at = self.clock.now() + expires_in
        store = await self._host_store()
        secret = await store.secret("event-links", security.new_secret())
        expires = int(expires_at.timestamp())
        self.converter.dumps(data, what=f"data of event {event_name!r}")  # fail early
        token = security.sign_link(
            security.EventLink(instance_id, event_name, expires, data), secret
        )
        return f"{base.rstrip('/')}{payloads.PREFIX}/links/{token}"

    # -- schedules and queues ------------------------------------------------------

    async def list_schedules(self) -> list[ScheduleRecord]:
        return await manage.list_schedules(await self._ready())

    async def pause_schedule(self, name: str) -> None:
        await manage.pause_schedule(await self._ready(), name)

    async def resume_schedule(self, name: str) -> datetime:
        """Resume from the first tick after now (ticks during the pause do not run)."""
        return await manage.resume_schedule(await self._ready(), name, self.clock.now())

    async def trigger_schedule(self, name: str) -> int:
        """Run a schedule's handler once now, paused or not."""
        return await manage.trigger_schedule(await self._ready(), name, self.clock.now())

    async def peek_queue(self, queue: str, limit: int = 100) -> list[QueueMessage]:
        return await manage.peek_queue(await self._ready(), queue, limit)


def _statuses(statuses: Any) -> frozenset[Status] | None:
    if statuses is None:
        return None
    if isinstance(statuses, Status | str):
        statuses = [statuses]
    return frozenset(s if isinstance(s, Status) else Status.parse(s) for s in statuses)


class Client(TopicsMixin, EntitiesMixin):
    """The synchronous client: the same methods as :class:`AsyncClient`, blocking."""

    def __init__(
        self,
        store: str | Store = "sqlite:///taskloom.db",
        hub: str = "default",
        *,
        converter: DataConverter | None = None,
        clock: Clock | None = None,
        base_url: str | None = None,
        projections: Sequence[ProjectionSpec] = (),
        default_version: str | None = None,
        _async: AsyncClient | None = None,
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self._events: EventStore | None = None
        if _async is not None and _loop is not None:
            self._async, self._loop, self._thread = _async, _loop, None
            return
        # The client is built first, so a bad store URL raises before any thread starts.
        self._async = AsyncClient(
            store,
            hub,
            converter=converter,
            clock=clock,
            base_url=base_url,
            projections=projections,
            default_version=default_version,
        )
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="taskloom-client", daemon=True
        )
        self._thread.start()

    @property
    def async_client(self) -> AsyncClient:
        return self._async

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    @property
    def events(self) -> EventStore:
        """The hub's event store (blocking), on this client's store."""
        if self._events is None:
            self._events = EventStore(_async=self._async.events, _loop=self._loop)
        return self._events

    def close(self) -> None:
        self._run(self._async.close())
        if self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)
            self._loop.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start_new(
        self,
        name: str,
        input: Any = None,
        instance_id: str | None = None,
        *,
        start_at: datetime | None = None,
        version: str | None = None,
    ) -> str:
        return self._run(
            self._async.start_new(name, input, instance_id, start_at=start_at, version=version)
        )

    def get_status(
        self, instance_id: str, *, show_history: bool = False, show_input: bool = True
    ) -> OrchestrationState | None:
        coro = self._async.get_status(instance_id, show_history=show_history, show_input=show_input)
        return self._run(coro)

    def wait_for_start(self, instance_id: str, timeout: float = 60.0) -> OrchestrationState:
        return self._run(self._async.wait_for_start(instance_id, timeout))

    def wait_for_completion(self, instance_id: str, timeout: float = 60.0) -> OrchestrationState:
        return self._run(self._async.wait_for_completion(instance_id, timeout))

    def raise_event(self, instance_id: str, event_name: str, data: Any = None) -> None:
        self._run(self._async.raise_event(instance_id, event_name, data))

    def terminate(self, instance_id: str, reason: Any = None, *, recursive: bool = True) -> None:
        self._run(self._async.terminate(instance_id, reason, recursive=recursive))

    def suspend(self, instance_id: str, reason: str | None = None) -> None:
        self._run(self._async.suspend(instance_id, reason))

    def resume(self, instance_id: str, reason: str | None = None) -> None:
        self._run(self._async.resume(instance_id, reason))

    def rewind(self, instance_id: str, reason: str | None = None) -> None:
        self._run(self._async.rewind(instance_id, reason))

    def purge(self, instance_id: str) -> int:
        return self._run(self._async.purge(instance_id))

    def restart(self, instance_id: str, *, new_instance_id: bool = True) -> str:
        return self._run(self._async.restart(instance_id, new_instance_id=new_instance_id))

    def purge_many(
        self,
        *,
        created_from: datetime | None = None,
        created_to: datetime | None = None,
        statuses: Any = None,
    ) -> int:
        coro = self._async.purge_many(
            created_from=created_from, created_to=created_to, statuses=statuses
        )
        return self._run(coro)

    def query(self, **filters: Any) -> Page:
        """See :meth:`AsyncClient.query` for the keyword filters."""
        return self._run(self._async.query(**filters))

    def get_history(self, instance_id: str) -> list[h.HistoryEvent]:
        return self._run(self._async.get_history(instance_id))

    def enqueue(self, queue: str, message: Any, *, delay: timedelta | None = None) -> int:
        return self._run(self._async.enqueue(queue, message, delay=delay))

    def list_schedules(self) -> list[ScheduleRecord]:
        return self._run(self._async.list_schedules())

    def pause_schedule(self, name: str) -> None:
        self._run(self._async.pause_schedule(name))

    def resume_schedule(self, name: str) -> datetime:
        return self._run(self._async.resume_schedule(name))

    def trigger_schedule(self, name: str) -> int:
        return self._run(self._async.trigger_schedule(name))

    def peek_queue(self, queue: str, limit: int = 100) -> list[QueueMessage]:
        return self._run(self._async.peek_queue(queue, limit))

    def create_http_management_payload(
        self, instance_id: str, *, base_url: str | None = None, code: str | None = None
    ) -> dict[str, str]:
        return self._async.create_http_management_payload(instance_id, base_url=base_url, code=code)

    def create_check_status_response(self, request: Any, instance_id: str) -> Any:
        return self._async.create_check_status_response(request, instance_id)

    def wait_for_completion_or_create_check_status_response(
        self, request: Any, instance_id: str, timeout: float = 10.0
    ) -> Any:
        coro = self._async.wait_for_completion_or_create_check_status_response(
            request, instance_id, timeout
        )
        return self._run(coro)

    def create_event_link(
        self,
        instance_id: str,
        event_name: str,
        expires_in: timedelta | datetime,
        *,
        data: Any = None,
        base_url: str | None = None,
    ) -> str:
        coro = self._async.create_event_link(
            instance_id, event_name, expires_in, data=data, base_url=base_url
        )
        return self._run(coro)
