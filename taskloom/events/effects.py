"""Effects that commit with a consumer's checkpoint: appends, starts and raised events.

A subscription handler gets a client (and, if it declares ``events``, an event store)
whose writes are *buffered*: ``start_new``, ``raise_event`` and ``events.append`` return
at once and take effect only in the transaction that moves the subscription's
checkpoint past the event. A handler that raises, or a process killed before that
commit, leaves no trace of them; the event is delivered again and they are made again,
once. Reads go to the store as usual. (A buffered ``start_new`` cannot be waited for
inside the same handler: the instance exists only after the handler returns.)
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from taskloom.client import AsyncClient, Client
from taskloom.events.records import ANY, AppendResult, NewEvent
from taskloom.events.store import AsyncEventStore, EventStore
from taskloom.storage.base import Message, NewInstance
from taskloom.storage.events_base import EventTx, StreamAppend

__all__ = ["BufferedClient", "BufferedEvents", "Effects", "call_handler"]


@dataclass
class Effects:
    appends: list[StreamAppend] = field(default_factory=list)
    instances: list[NewInstance] = field(default_factory=list)
    messages: list[Message] = field(default_factory=list)

    def apply(self, tx: EventTx) -> None:
        if self.appends:
            tx.append(self.appends)
        if self.instances or self.messages:
            tx.start(self.instances, self.messages)

    def clear(self) -> None:
        self.appends.clear()
        self.instances.clear()
        self.messages.clear()


class BufferedClient(AsyncClient):
    """An :class:`AsyncClient` whose starts and messages wait for the checkpoint."""

    def __init__(self, base: AsyncClient, effects: Effects) -> None:
        super().__init__(
            base.store,
            converter=base.converter,
            clock=base.clock,
            default_version=base.default_version,
        )
        self._opened = True
        self.base_url = base.base_url
        self._effects = effects
        self._events = BufferedEvents(base.events, effects)

    async def _create(
        self,
        name: str,
        text: str | None,
        instance_id: str | None,
        start_at: datetime | None,
        version: str | None,
    ) -> str:
        new = self._new_instance(name, text, instance_id, start_at, version)
        self._effects.instances.append(new)
        return new.record.instance_id

    async def _enqueue(self, message: Message) -> None:
        self._effects.messages.append(message)


class BufferedEvents(AsyncEventStore):
    """An event store whose appends wait for the checkpoint (they return ``None``)."""

    def __init__(self, base: AsyncEventStore, effects: Effects) -> None:
        super().__init__(
            base.store, converter=base.converter, clock=base.clock, _opener=base._ready
        )
        self._effects = effects

    async def append(  # type: ignore[override]
        self, stream_id: str, events: Sequence[NewEvent], *, expected_version: Any = ANY
    ) -> AppendResult | None:
        self._effects.appends.append(self.encode(stream_id, events, expected_version))
        return None

    async def append_many(self, writes: Sequence[Any]) -> list[AppendResult]:
        for w in writes:
            self._effects.appends.append(self.encode(w[0], w[1], w[2] if len(w) == 3 else ANY))
        return []


async def call_handler(
    handler: Callable[..., Any],
    is_async: bool,
    wants_events: bool,
    event: Any,
    base: AsyncClient,
    effects: Effects,
) -> None:
    """Call a consumer's handler ``(event, client)`` (and ``events=`` if it declares it)
    with a client and an event store whose writes go to ``effects``. A sync handler runs
    in a thread with blocking wrappers on this loop, in a copy of the current context."""
    buffered = BufferedClient(base, effects)
    if is_async:
        kwargs: dict[str, Any] = {"events": buffered.events} if wants_events else {}
        await handler(event, buffered, **kwargs)
        return
    loop = asyncio.get_running_loop()
    client = Client(_async=buffered, _loop=loop)
    kwargs = {"events": EventStore(_async=buffered.events, _loop=loop)} if wants_events else {}
    call = functools.partial(contextvars.copy_context().run, handler, event, client, **kwargs)
    await asyncio.to_thread(call)
