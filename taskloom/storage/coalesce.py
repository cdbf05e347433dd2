"""Calls made together: :class:`Coalescer` runs the items submitted while a batch is in
flight as the next batch, one batch at a time. A lone item goes at once; under load each
batch carries everything that queued behind the one before it, so concurrent callers
share one transaction (one round trip, one WAL flush) instead of one each.

Used for the PostgreSQL store's starts (:mod:`taskloom.storage.postgres_starts`) and the
gRPC sidecar's completions (:mod:`taskloom.grpc.batching`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

__all__ = ["Coalescer"]

T = TypeVar("T")
R = TypeVar("R")

#: Items per batch at most, unless the coalescer is told otherwise.
BATCH = 200


class Coalescer(Generic[T, R]):
    """Runs submitted items in batches through ``run`` (one result per item, in order),
    one batch in flight at a time."""

    def __init__(
        self, run: Callable[[list[T]], Awaitable[Sequence[R]]], name: str, limit: int = BATCH
    ) -> None:
        self._run = run
        self._name = name
        self._limit = limit
        self._waiting: list[tuple[T, asyncio.Future[R]]] = []
        self._task: asyncio.Task[None] | None = None

    async def submit(self, item: T) -> R:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, future))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._batches(), name=self._name)
        return await future

    async def _batches(self) -> None:
        while self._waiting:
            batch, self._waiting = self._waiting[: self._limit], self._waiting[self._limit :]
            try:
                results = await self._run([item for item, _ in batch])
            except BaseException as exc:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                if isinstance(exc, asyncio.CancelledError):
                    raise
                continue
            for (_, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)
