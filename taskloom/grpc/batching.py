"""Completions made together: the CompleteOrchestratorTask calls of one hub that arrive
while an earlier one is being committed share one ``complete_episodes`` call (one
transaction, one WAL flush), and CompleteActivityTask calls one ``complete_activities``
call, as a native worker's batches do (:class:`~taskloom.storage.coalesce.Coalescer`).

Each completion is still fenced on its own (a lost lease skips only itself), and each
caller gets its own outcome.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from taskloom.clock import Clock
from taskloom.grpc.hubs import Hub
from taskloom.storage.base import ActivityResult, EpisodeCommit
from taskloom.storage.coalesce import Coalescer

__all__ = ["activity_results", "episode_commits"]


def _hub_group(hub: Hub, key: str, run: Callable[[list[Any]], Awaitable[list[bool]]]) -> Any:
    """The hub's coalescer named ``key``, made on first use."""
    found = hub.extras.get(key)
    if found is None:
        found = hub.extras[key] = Coalescer(run, f"taskloom-grpc-{key}")
    return found


def episode_commits(hub: Hub, clock: Clock) -> Coalescer[EpisodeCommit, bool]:
    """The hub's coalescer of episode commits."""

    async def run(commits: list[EpisodeCommit]) -> list[bool]:
        return await hub.store.complete_episodes(commits, clock.now())

    group: Coalescer[EpisodeCommit, bool] = _hub_group(hub, "commits", run)
    return group


def activity_results(hub: Hub, clock: Clock) -> Coalescer[ActivityResult, bool]:
    """The hub's coalescer of activity results."""

    async def run(results: list[ActivityResult]) -> list[bool]:
        return await hub.store.complete_activities(results, clock.now())

    group: Coalescer[ActivityResult, bool] = _hub_group(hub, "results", run)
    return group
