"""The worker's metrics (:mod:`taskloom.observability.metrics`): what it observes while
leasing, planning, committing and running, in one call per step."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from taskloom import history as h
from taskloom.entities.records import is_entity_id
from taskloom.models import Status
from taskloom.observability import metrics as m
from taskloom.storage.base import ActivityResult, EpisodeCommit, LeasedEpisode, WorkItem

if TYPE_CHECKING:
    from taskloom.runtime.worker import Worker


def _seconds(later: datetime, earlier: datetime) -> float:
    return max(0.0, (later - earlier).total_seconds())


@contextlib.contextmanager
def store_op(operation: str) -> Iterator[None]:
    """Time one store call."""
    started = time.perf_counter()
    try:
        yield
    finally:
        m.STORE_LATENCY.observe(time.perf_counter() - started, operation)


def leased(episodes: Sequence[LeasedEpisode], now: datetime) -> None:
    """Queue wait of each episode (its oldest message) and the lag of fired timers."""
    for episode in episodes:
        ready = [max(msg.event.timestamp, msg.visible_at) for msg in episode.messages]
        if ready:
            m.EPISODE_LAG.observe(_seconds(now, min(ready)))
        for msg in episode.messages:
            event = msg.event
            if isinstance(event, h.TimerFired) and event.fire_at is not None:
                m.TIMER_LAG.observe(_seconds(now, event.fire_at))


def replayed(episode: LeasedEpisode, hit: bool) -> None:
    """One planned episode: from the sticky cache, or replaying its stored history."""
    count = episode.instance.history_len
    m.EPISODES.inc("hit" if hit else ("miss" if count else "new"))
    m.REPLAYED.observe(0 if hit else count)


def committed(commits: Sequence[EpisodeCommit], applied: Sequence[bool]) -> None:
    """Lost leases, and the executions a batch of commits ended."""
    for commit, ok in zip(commits, applied, strict=True):
        if not ok:
            m.LEASE_EXPIRIES.inc("episode")
            continue
        rec, before = commit.instance, commit.prior_status
        ended = rec.status.is_terminal or rec.status is Status.CONTINUED_AS_NEW
        if not ended or is_entity_id(rec.instance_id):
            continue
        if before is not None and before.is_terminal:
            continue  # a message to a finished instance, consumed without effect
        m.ORCHESTRATIONS.inc(rec.name, rec.status.value)
        end = rec.completed_at or rec.updated_at
        m.ORCHESTRATION_DURATION.observe(_seconds(end, rec.created_at), rec.name, rec.status.value)


def activity_started(item: WorkItem, now: datetime) -> None:
    if item.scheduled_at is not None:
        m.ACTIVITY_LAG.observe(_seconds(now, item.scheduled_at), item.name)


def activity_finished(item: WorkItem, result: ActivityResult, seconds: float) -> None:
    outcome = "completed" if isinstance(result.message.event, h.TaskCompleted) else "failed"
    m.ACTIVITIES.inc(item.name, outcome)
    m.ACTIVITY_DURATION.observe(seconds, item.name, outcome)


def results_committed(applied: Sequence[bool]) -> None:
    lost = sum(1 for ok in applied if not ok)
    if lost:
        m.LEASE_EXPIRIES.inc("activity", amount=lost)


def track_slots(worker: Worker) -> None:
    """Report the worker's slots at every scrape while it runs."""
    opts = worker.options
    m.SLOTS.track(
        worker,
        lambda: {
            ("activity",): opts.max_concurrent_activities,
            ("orchestration",): opts.max_concurrent_orchestrations,
        },
    )
    m.SLOTS_BUSY.track(
        worker,
        lambda: {("activity",): worker.busy_activities, ("orchestration",): worker.busy_episodes},
    )


def untrack_slots(worker: Worker) -> None:
    m.SLOTS.untrack(worker)
    m.SLOTS_BUSY.untrack(worker)
