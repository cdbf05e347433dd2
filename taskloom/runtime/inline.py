"""Inline episodes: the next episode planned with the activity results that cause it.

A worker that holds an instance's run in its sticky cache and finishes one of its
activities already knows everything the next episode needs: the history (its own last
commit) and the inbox (the result), unless something else arrived meanwhile. It plans
that episode before committing the result, and the store applies both in one
transaction if the instance is still exactly as the worker left it
(:class:`~taskloom.storage.base.InlineEpisodes` says what is checked). Otherwise the
result goes to the inbox as usual and the run is dropped from the cache, since planning
moved it on. Nothing here does I/O; the worker calls :func:`plan_inline` before
``Store.complete_activities`` and :func:`settle_inline` after it.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import OrderedDict
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field

from taskloom import history as h
from taskloom.core.executor import OrchestrationRun
from taskloom.entities.records import is_entity_id
from taskloom.runtime.episodes import Planned
from taskloom.storage.base import (
    ActivityResult,
    EagerActivities,
    EpisodeCommit,
    InlineEpisodes,
    InstanceRecord,
    LeasedEpisode,
)

__all__ = ["CachedRun", "InlinePlan", "plan_inline", "settle_inline"]

log = logging.getLogger("taskloom.worker")


@dataclass
class CachedRun:
    """A run in the worker's sticky cache, with the row and lease token of the commit
    that left it there (what an inline episode is fenced on)."""

    run: OrchestrationRun
    history: list[h.HistoryEvent]
    record: InstanceRecord
    token: int

    @property
    def execution_id(self) -> str:
        return self.record.execution_id


@dataclass
class InlinePlan:
    """The inline episodes of one results batch, and what the worker keeps of them."""

    episodes: InlineEpisodes
    planned: dict[str, Planned] = field(default_factory=dict)
    leased: dict[str, LeasedEpisode] = field(default_factory=dict)
    #: The history each episode was planned from.
    prior: dict[str, list[h.HistoryEvent]] = field(default_factory=dict)

    def restamp(self) -> None:
        """Take the (traced) commits of ``planned`` into the store's request."""
        for iid, planned in self.planned.items():
            self.episodes.commits[iid] = planned.commit


#: Plans one episode from a cached run: (episode, history, run) -> Planned.
Planner = Callable[[LeasedEpisode, list[h.HistoryEvent], OrchestrationRun], Planned]
#: Whether a commit may not be applied as it is (a payload above the store's limit).
Refuses = Callable[[EpisodeCommit], bool]


def plan_inline(
    results: Sequence[ActivityResult],
    cache: OrderedDict[str, CachedRun],
    held: Collection[str],
    plan: Planner,
    refuses: Refuses,
    activities: EagerActivities | None,
) -> InlinePlan | None:
    """Plan the inline episodes of ``results``: one per instance whose run is cached,
    not ``held`` by an episode batch, and whose results carry no appends. A planned
    instance leaves the cache until :func:`settle_inline` (its run has moved on)."""
    by_instance: dict[str, list[ActivityResult]] = {}
    for result in results:
        by_instance.setdefault(result.message.instance_id, []).append(result)
    out = InlinePlan(InlineEpisodes({}, activities=activities))
    for iid, mine in by_instance.items():
        cached = cache.get(iid)
        if cached is None or iid in held or is_entity_id(iid) or not _fits(cached, mine):
            continue
        del cache[iid]
        episode = LeasedEpisode(cached.record, [r.message for r in mine], cached.token)
        try:
            planned = plan(episode, cached.history, cached.run)
        except Exception:
            log.exception("planning the inline episode of %r failed; it runs as usual", iid)
            continue
        commit = planned.commit
        if commit.replace_history or commit.new_instances or refuses(commit):
            continue  # a leased episode does these (replanned from the stored history)
        commit = dataclasses.replace(commit, consumed=())
        out.planned[iid] = Planned(commit, planned.run, planned.history)
        out.leased[iid] = episode
        out.prior[iid] = cached.history
        out.episodes.commits[iid] = commit
        out.episodes.expected[iid] = len(mine)
    return out if out.planned else None


def _fits(cached: CachedRun, results: list[ActivityResult]) -> bool:
    """Whether the cached run is the results' execution, live, and fully known."""
    record = cached.record
    return (
        not record.status.is_terminal
        and len(cached.history) == record.history_len
        and all(
            not r.appends and r.message.execution_id in (None, cached.execution_id) for r in results
        )
    )


def settle_inline(
    plan: InlinePlan, remember: Callable[[str, Planned, bool], None]
) -> list[tuple[LeasedEpisode, Planned, bool]]:
    """After the store call: cache the runs that committed inline (the rest stay out);
    returns each episode with its plan and whether it was applied."""
    applied = plan.episodes.applied
    out: list[tuple[LeasedEpisode, Planned, bool]] = []
    for iid, planned in plan.planned.items():
        ok = iid in applied
        remember(iid, planned, ok)
        out.append((plan.leased[iid], planned, ok))
    return out
