"""``tl.AsyncEventStore`` and ``tl.EventStore``: versioned streams in the hub's log.

The async store is the implementation; the sync one runs it on a private event loop
thread (or on its client's). A store built with an app's projections
(``app.client(url).events``, ``TestEnv``) runs the inline ones in every append's
transaction and can rebuild any of them.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

from taskloom.clock import Clock, SystemClock
from taskloom.converter import DataConverter, default_converter
from taskloom.errors import ConfigurationError, InvalidEventError
from taskloom.events.codec import check_stream_id, decode, encode_append
from taskloom.events.projection import ProjectionSpec, inline_hook
from taskloom.events.records import ANY, AppendResult, NewEvent, RecordedEvent
from taskloom.storage import Store, open_store
from taskloom.storage.events_base import (
    VIEW_OPS,
    EventLogStore,
    StreamAppend,
    ViewFilter,
    check_field,
    view_name,
)

if TYPE_CHECKING:
    from taskloom.events.status import ConsumerStatus, RebuildReport

__all__ = ["AsyncEventStore", "AsyncView", "EventStore", "SyncView", "ViewRow"]

T = TypeVar("T")

_SUFFIXES = {"": "=", "ne": "!=", "lt": "<", "lte": "<=", "gt": ">", "gte": ">="}


class ViewRow(NamedTuple):
    key: str
    doc: dict[str, Any]


def _filters(
    where: Sequence[tuple[str, str, Any]] | None, equals: Mapping[str, Any]
) -> list[ViewFilter]:
    """``where`` triples and ``field=value`` / ``field__gte=value`` keywords as filters."""
    out: list[ViewFilter] = []
    triples = list(where or [])
    for name, value in equals.items():
        field, _, suffix = name.partition("__")
        if suffix not in _SUFFIXES:
            raise ValueError(
                f"unknown filter {name!r}: use field=value, or field__ne, __lt, __lte, __gt, __gte"
            )
        triples.append((field, _SUFFIXES[suffix], value))
    for field, op, value in triples:
        if op not in VIEW_OPS:
            raise ValueError(f"unknown operator {op!r} on {field!r}: use one of {VIEW_OPS}")
        if value is None or isinstance(value, dict | list):
            raise ValueError(
                f"filter on {field!r} compares with {value!r}: compare top-level fields with "
                "a string, a number or a bool"
            )
        out.append(ViewFilter(check_field(field), op, json.dumps(value)))
    return out


class AsyncView:
    """A projection's read model, read side: ``get`` a document, ``query`` by fields."""

    def __init__(self, events: AsyncEventStore, name: str) -> None:
        self._events = events
        self.name = name

    async def _physical(self) -> tuple[EventLogStore, str]:
        log = await self._events._ready()
        return log, view_name(self.name, await log.view_generation(self.name))

    async def get(self, key: str) -> dict[str, Any] | None:
        log, physical = await self._physical()
        doc = await log.view_get(physical, key)
        return None if doc is None else dict(json.loads(doc))

    async def query(
        self,
        where: Sequence[tuple[str, str, Any]] | None = None,
        *,
        limit: int = 1000,
        after_key: str | None = None,
        **equals: Any,
    ) -> list[ViewRow]:
        """Documents matching every condition, by key: ``where=[("due_at", "<=", t)]``
        triples and ``status="due"`` / ``attempts__gte=3`` keywords."""
        filters = _filters(where, equals)
        if not isinstance(limit, int) or limit < 1:
            raise ValueError(f"limit {limit!r} must be a positive int")
        log, physical = await self._physical()
        rows = await log.view_query(physical, filters, limit, after_key)
        return [ViewRow(k, dict(json.loads(d))) for k, d in rows]

    async def count(self) -> int:
        log, physical = await self._physical()
        return await log.view_count(physical)


class AsyncEventStore:
    """The hub's event store: append, read, delete; views of projections."""

    def __init__(
        self,
        store: str | Store = "sqlite:///taskloom.db",
        hub: str = "default",
        *,
        converter: DataConverter | None = None,
        clock: Clock | None = None,
        projections: Sequence[ProjectionSpec] = (),
        _opener: Callable[[], Awaitable[Any]] | None = None,
    ) -> None:
        self.store = open_store(store, hub=hub) if isinstance(store, str) else store
        if not isinstance(self.store, EventLogStore):
            raise ConfigurationError(f"{self.store!r} has no event log")
        # A store given by URL is ours to open and close; a client's store is its own.
        self._owns = isinstance(store, str) and _opener is None
        self._opener = _opener
        self.converter = converter or default_converter
        self.clock: Clock = clock or SystemClock()
        self.projections = {p.name: p for p in projections}
        self._hook = inline_hook(list(self.projections.values()), self.converter)
        self._opened = False
        self._open_lock = asyncio.Lock()

    async def _ready(self) -> EventLogStore:
        if not self._opened:
            async with self._open_lock:
                if not self._opened:
                    if self._opener is not None:
                        await self._opener()
                    elif self._owns:
                        await self.store.open()
                    await self._register()
                    self._opened = True
        assert isinstance(self.store, EventLogStore)
        return self.store

    async def _register(self) -> None:
        """Register the projections (at checkpoint 0) and their indexes."""
        log = self.store
        assert isinstance(log, EventLogStore)
        now = self.clock.now()
        for spec in self.projections.values():
            await log.consumer_ensure(spec.consumer, 1, 0, now)
            if spec.indexes:
                gen = await log.view_generation(spec.name)
                await log.view_index(view_name(spec.name, gen), spec.indexes)

    async def close(self) -> None:
        if self._opened and self._owns:
            await self.store.close()
        self._opened = False

    async def __aenter__(self) -> AsyncEventStore:
        await self._ready()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- writing --------------------------------------------------------------------

    def encode(self, stream_id: str, events: Sequence[NewEvent], expected: Any) -> StreamAppend:
        return encode_append(stream_id, events, expected, self.converter)

    async def append(
        self, stream_id: str, events: Sequence[NewEvent], *, expected_version: Any = ANY
    ) -> AppendResult:
        """Append ``events`` atomically; see the API for ``expected_version``."""
        append = self.encode(stream_id, events, expected_version)
        log = self.store if self._opened else await self._ready()
        assert isinstance(log, EventLogStore)
        ((version, position),) = await log.append_events([append], self.clock.now(), self._hook)
        return AppendResult(version, position)

    async def append_many(
        self, writes: Sequence[tuple[str, Sequence[NewEvent]] | tuple[str, Sequence[NewEvent], Any]]
    ) -> list[AppendResult]:
        """Append to several streams in one transaction: all or nothing. Each write is
        ``(stream_id, events)`` or ``(stream_id, events, expected_version)``."""
        if not writes:
            raise InvalidEventError("append_many was given no writes: pass (stream_id, events)")
        appends = []
        for w in writes:
            if not isinstance(w, tuple) or len(w) not in (2, 3):
                raise InvalidEventError(
                    f"append_many takes (stream_id, events[, expected_version]) tuples, not {w!r}"
                )
            appends.append(self.encode(w[0], w[1], w[2] if len(w) == 3 else ANY))
        log = await self._ready()
        results = await log.append_events(appends, self.clock.now(), self._hook)
        return [AppendResult(v, p) for v, p in results]

    async def delete_stream(self, stream_id: str, *, expected_version: Any = ANY) -> bool:
        """Soft delete: the stream reads as absent and can be recreated (its versions go
        on from the last); its events stay in the log. False if it did not exist."""
        sid = check_stream_id(stream_id)
        expected = self.encode(sid, [NewEvent("x")], expected_version).expected
        return await (await self._ready()).delete_stream(sid, expected, purge=False)

    async def purge_stream(self, stream_id: str) -> bool:
        """Remove the stream and its events from the log for good."""
        sid = check_stream_id(stream_id)
        return await (await self._ready()).delete_stream(sid, ANY, purge=True)

    async def truncate_stream(self, stream_id: str, before_version: int) -> int:
        """Remove the stream's events older than ``before_version``; how many."""
        sid = check_stream_id(stream_id)
        if not isinstance(before_version, int) or before_version < 1:
            raise InvalidEventError(f"before_version {before_version!r} must be an int >= 1")
        return await (await self._ready()).truncate_stream(sid, before_version)

    # -- reading --------------------------------------------------------------------

    async def read_stream(
        self,
        stream_id: str,
        *,
        from_version: int | None = None,
        backwards: bool = False,
        limit: int | None = None,
    ) -> list[RecordedEvent]:
        sid = check_stream_id(stream_id)
        for name, value in (("from_version", from_version), ("limit", limit)):
            if value is not None and (not isinstance(value, int) or value < 0):
                raise InvalidEventError(f"{name} {value!r} must be an int >= 0 or None")
        stored = await (await self._ready()).read_stream(sid, from_version, backwards, limit)
        return [decode(e, self.converter) for e in stored]

    async def stream_version(self, stream_id: str) -> int:
        return await (await self._ready()).stream_version(check_stream_id(stream_id))

    async def read_all(
        self, *, after: int = 0, types: Sequence[str] | None = None, limit: int = 1000
    ) -> list[RecordedEvent]:
        """Up to ``limit`` events with ``position > after``, in commit order."""
        if not isinstance(after, int) or after < 0:
            raise InvalidEventError(f"after {after!r} must be a position (an int >= 0)")
        if not isinstance(limit, int) or limit < 1:
            raise InvalidEventError(f"limit {limit!r} must be a positive int")
        if isinstance(types, str):
            types = [types]
        stored = await (await self._ready()).read_log(after, limit, types)
        return [decode(e, self.converter) for e in stored]

    async def head(self) -> int:
        """The last position assigned in the hub's log."""
        return await (await self._ready()).log_head()

    # -- views and projections --------------------------------------------------------

    def view(self, name: str) -> AsyncView:
        return AsyncView(self, name)

    async def rebuild(self, name: str) -> RebuildReport:
        """Build a fresh copy of projection ``name`` beside the live one, check it and
        swap it in (see :mod:`taskloom.events.rebuild`)."""
        from taskloom.events.rebuild import rebuild

        return await rebuild(self, name)

    async def consumers(self) -> list[ConsumerStatus]:
        """Every projection and subscription of the hub with its lag and parked events."""
        from taskloom.events.status import consumer_statuses

        return await consumer_statuses(self)

    async def reset_consumer(self, consumer: str, position: int) -> int:
        """Move every partition of ``consumer`` (``subscription:NAME``, ...) to
        ``position``: events after it are delivered again. How many partitions moved."""
        if not isinstance(position, int) or position < 0:
            raise InvalidEventError(f"position {position!r} must be an int >= 0")
        log = await self._ready()
        known = {s.consumer for s in await log.consumer_states()}
        if consumer not in known:
            raise ConfigurationError(
                f"no consumer {consumer!r} in hub {self.store.hub!r}: known are "
                f"{sorted(known) or 'none'}"
            )
        return await log.consumer_reset(consumer, position, self.clock.now())

    async def replay_parked(self, consumer: str, positions: Sequence[int] | None = None) -> int:
        """Run a consumer's parked events through its handler again (see the runner)."""
        from taskloom.events.status import replay_parked

        return await replay_parked(self, consumer, positions)


class SyncView:
    """:class:`AsyncView`, blocking."""

    def __init__(self, events: EventStore, name: str) -> None:
        self._events = events
        self._view = events.async_store.view(name)
        self.name = name

    def get(self, key: str) -> dict[str, Any] | None:
        return self._events._run(self._view.get(key))

    def query(
        self,
        where: Sequence[tuple[str, str, Any]] | None = None,
        *,
        limit: int = 1000,
        after_key: str | None = None,
        **equals: Any,
    ) -> list[ViewRow]:
        return self._events._run(
            self._view.query(where, limit=limit, after_key=after_key, **equals)
        )

    def count(self) -> int:
        return self._events._run(self._view.count())


class EventStore:
    """The synchronous event store: the same methods as :class:`AsyncEventStore`."""

    def __init__(
        self,
        store: str | Store = "sqlite:///taskloom.db",
        hub: str = "default",
        *,
        converter: DataConverter | None = None,
        clock: Clock | None = None,
        projections: Sequence[ProjectionSpec] = (),
        _async: AsyncEventStore | None = None,
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self._thread: threading.Thread | None = None
        if _async is not None and _loop is not None:
            self._async, self._loop = _async, _loop
            return
        self._async = AsyncEventStore(
            store, hub, converter=converter, clock=clock, projections=projections
        )
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="taskloom-events", daemon=True
        )
        self._thread.start()

    @property
    def async_store(self) -> AsyncEventStore:
        return self._async

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def close(self) -> None:
        if self._thread is None:
            return
        self._run(self._async.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()
        self._thread = None

    def __enter__(self) -> EventStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def append(
        self, stream_id: str, events: Sequence[NewEvent], *, expected_version: Any = ANY
    ) -> AppendResult:
        return self._run(self._async.append(stream_id, events, expected_version=expected_version))

    def append_many(self, writes: Sequence[Any]) -> list[AppendResult]:
        return self._run(self._async.append_many(writes))

    def delete_stream(self, stream_id: str, *, expected_version: Any = ANY) -> bool:
        return self._run(self._async.delete_stream(stream_id, expected_version=expected_version))

    def purge_stream(self, stream_id: str) -> bool:
        return self._run(self._async.purge_stream(stream_id))

    def truncate_stream(self, stream_id: str, before_version: int) -> int:
        return self._run(self._async.truncate_stream(stream_id, before_version))

    def read_stream(
        self,
        stream_id: str,
        *,
        from_version: int | None = None,
        backwards: bool = False,
        limit: int | None = None,
    ) -> list[RecordedEvent]:
        return self._run(
            self._async.read_stream(
                stream_id, from_version=from_version, backwards=backwards, limit=limit
            )
        )

    def stream_version(self, stream_id: str) -> int:
        return self._run(self._async.stream_version(stream_id))

    def read_all(
        self, *, after: int = 0, types: Sequence[str] | None = None, limit: int = 1000
    ) -> list[RecordedEvent]:
        return self._run(self._async.read_all(after=after, types=types, limit=limit))

    def head(self) -> int:
        return self._run(self._async.head())

    def view(self, name: str) -> SyncView:
        return SyncView(self, name)

    def rebuild(self, name: str) -> RebuildReport:
        return self._run(self._async.rebuild(name))

    def consumers(self) -> list[ConsumerStatus]:
        return self._run(self._async.consumers())

    def reset_consumer(self, consumer: str, position: int) -> int:
        return self._run(self._async.reset_consumer(consumer, position))

    def replay_parked(self, consumer: str, positions: Sequence[int] | None = None) -> int:
        return self._run(self._async.replay_parked(consumer, positions))
