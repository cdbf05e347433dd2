"""Completions made together: the CompleteOrchestratorTask calls of one hub that arrive
while an earlier one is being committed share one ``complete_episodes`` call (one
transaction, one WAL flush), and CompleteActivityTask calls one ``complete_activities``
call, as a native worker's batches do. A lone completion goes at once; under load each
store call carries everything that queued behind the one before it.

Each completion is still fenced on its own (a lost lease skips only itself), and each
caller gets its own outcome.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

from taskloom.clock import Clock
from taskloom.grpc.hubs import Hub
from taskloom.storage.base import ActivityResult, EpisodeCommit

__all__ = ["Coalescer", "activity_results", "episode_commits"]

T = TypeVar("T")
R = TypeVar("R")

#: Completions per store call at most.
BATCH = 200


class Coalescer(Generic[T, R]):
    """Runs submitted items in batches through ``run`` (one result per item, in order),
    one batch in flight at a time."""

    def __init__(self, run: Callable[[list[T]], Awaitable[Sequence[R]]], name: str) -> None:
        self._run = run
        self._name = name
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
            batch, self._waiting = self._waiting[:BATCH], self._waiting[BATCH:]
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


def episode_commits(hub: Hub, clock: Clock) -> Coalescer[EpisodeCommit, bool]:
    """The hub's coalescer of episode commits (made on first use)."""
    found = hub.extras.get("episode_commits")
    if found is None:

        async def run(commits: list[EpisodeCommit]) -> list[bool]:
            return await hub.store.complete_episodes(commits, clock.now())

        found = hub.extras["episode_commits"] = Coalescer(run, "taskloom-grpc-commits")
    return found


def activity_results(hub: Hub, clock: Clock) -> Coalescer[ActivityResult, bool]:
    """The hub's coalescer of activity results (made on first use)."""
    found = hub.extras.get("activity_results")
    if found is None:

        async def run(results: list[ActivityResult]) -> list[bool]:
            return await hub.store.complete_activities(results, clock.now())

        found = hub.extras["activity_results"] = Coalescer(run, "taskloom-grpc-results")
    return found
