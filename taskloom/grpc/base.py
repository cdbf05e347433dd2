"""The servicer's foundation: hubs, clock, and errors turned into gRPC statuses.

:class:`SidecarBase` is what every part of the ``TaskHubSidecarService`` builds on. The
worker-facing RPCs (:mod:`taskloom.grpc.work_items`, :mod:`taskloom.grpc.completion`,
entity work in ``entity_*``) are mixins of it; client RPCs are tables of handlers
installed by :func:`install_rpcs`; :mod:`taskloom.grpc.server` combines them.

A mixin method is an ``async def`` named as the RPC, taking ``(request, context)``. It
calls ``await self.caller(context, "read" | "write" | "work")`` first, and raises
:class:`~taskloom.grpc.hubs.RpcError` (``invalid``, ``not_found``, ``precondition``) for a
client's mistake; :func:`rpc` turns those, and taskloom's own errors, into statuses.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping
from typing import Any, TypeVar

import grpc

from taskloom import errors
from taskloom.clock import Clock, SystemClock
from taskloom.grpc.hubs import Caller, Hub, HubRegistry, RpcError
from taskloom.grpc.tokens import InFlight

log = logging.getLogger("taskloom.grpc")

F = TypeVar("F", bound=Callable[..., Any])


def status_of(exc: BaseException) -> tuple[grpc.StatusCode, str] | None:
    """The status a client's mistake is answered with; None for a server fault."""
    if isinstance(exc, RpcError):
        return exc.code, exc.message
    if isinstance(exc, errors.InstanceNotFoundError):
        return grpc.StatusCode.NOT_FOUND, str(exc)
    if isinstance(exc, errors.InstanceExistsError):
        return grpc.StatusCode.ALREADY_EXISTS, str(exc)
    if isinstance(exc, errors.InvalidStateError):
        return grpc.StatusCode.FAILED_PRECONDITION, str(exc)
    if isinstance(exc, errors.PayloadTooLargeError):
        return grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc)
    if isinstance(exc, errors.ConfigurationError | ValueError):
        return grpc.StatusCode.INVALID_ARGUMENT, str(exc)
    return None


async def _abort(context: Any, exc: BaseException, name: str) -> None:
    found = status_of(exc)
    if found is None:
        log.exception("gRPC %s failed", name, exc_info=exc)
        await context.abort(grpc.StatusCode.UNAVAILABLE, f"{name} failed on the server: {exc}")
    else:
        await context.abort(found[0], found[1])


def rpc(method: F) -> F:
    """Wrap a unary ``async def Name(self, request, context)``: errors become statuses."""

    @functools.wraps(method)
    async def wrapper(self: Any, request: Any, context: Any) -> Any:
        try:
            return await method(self, request, context)
        except (RpcError, errors.TaskloomError, ValueError) as exc:
            await _abort(context, exc, method.__name__)
        except Exception as exc:  # a store hiccup: retryable, never INTERNAL
            await _abort(context, exc, method.__name__)

    return wrapper  # type: ignore[return-value]


def stream_rpc(method: F) -> F:
    """Like :func:`rpc` for a server-streaming ``async def`` generator."""

    @functools.wraps(method)
    async def wrapper(self: Any, request: Any, context: Any) -> AsyncIterator[Any]:
        try:
            async with contextlib.aclosing(method(self, request, context)) as items:
                async for item in items:
                    yield item
        except (RpcError, errors.TaskloomError, ValueError) as exc:
            await _abort(context, exc, method.__name__)
        except Exception as exc:
            await _abort(context, exc, method.__name__)

    return wrapper  # type: ignore[return-value]


Handler = Callable[[Hub, Any, Any], Awaitable[Any]]
StreamHandler = Callable[[Hub, Any, Any], AsyncIterator[Any]]


def install_rpcs(
    cls: type,
    unary: Mapping[str, tuple[str, Handler]],
    streams: Mapping[str, tuple[str, StreamHandler]] = {},
) -> None:
    """Add to ``cls`` one method per RPC of the tables (``name -> (permission,
    handler(hub, request, context))``): it checks the caller's role, then calls the
    handler with the caller's hub; errors become statuses (:func:`rpc`)."""
    for name, (permission, handler) in unary.items():
        setattr(cls, name, rpc(_unary(name, permission, handler)))
    for name, (permission, stream) in streams.items():
        setattr(cls, name, stream_rpc(_stream(name, permission, stream)))


def _unary(name: str, permission: str, handler: Handler) -> Callable[..., Any]:
    async def method(self: SidecarBase, request: Any, context: Any) -> Any:
        caller = await self.caller(context, permission)
        return await handler(caller.hub, request, context)

    method.__name__ = name
    return method


def _stream(name: str, permission: str, handler: StreamHandler) -> Callable[..., Any]:
    async def method(self: SidecarBase, request: Any, context: Any) -> AsyncIterator[Any]:
        caller = await self.caller(context, permission)
        async for item in handler(caller.hub, request, context):
            yield item

    method.__name__ = name
    return method


class SidecarBase:
    """State shared by all RPC mixins: the hubs, the clock, lease settings."""

    def __init__(
        self,
        hubs: HubRegistry,
        *,
        clock: Clock | None = None,
        lease_for: float = 30.0,
        ping_interval: float = 10.0,
    ) -> None:
        self.hubs = hubs
        self.clock: Clock = clock or SystemClock()
        #: How long a work item sent to an SDK worker stays leased to it.
        self.lease_for = lease_for
        #: How often an idle GetWorkItems stream gets a health ping.
        self.ping_interval = ping_interval
        #: Callbacks run by :meth:`close` (plug-ins register their own cleanup here).
        self.on_close: list[Callable[[], Awaitable[None]]] = []
        #: Set when the server stops: open work-item streams end.
        self.stopping = False
        #: Work items out with SDK workers, by completion token.
        self.inflight = InFlight(keep_for=lease_for * 2)
        #: Tasks started by :meth:`spawn`, kept until they finish.
        self.tasks: set[asyncio.Task[None]] = set()

    async def caller(self, context: Any, permission: str) -> Caller:
        """The hub and role of this call; raises unless the role has ``permission``."""
        return await self.hubs.caller(context, permission)

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` in the background (cleanup that must not wait for, or be
        cancelled with, the call that needed it); failures are logged."""
        task = asyncio.get_running_loop().create_task(work)
        self.tasks.add(task)
        task.add_done_callback(self._spawned_done)

    def _spawned_done(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("background work of the sidecar failed", exc_info=task.exception())

    async def close(self) -> None:
        for callback in self.on_close:
            await callback()
        if self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)
