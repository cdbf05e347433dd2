"""Inline episodes on PostgreSQL (:class:`~taskloom.storage.base.InlineEpisodes`).

An activity result and the episode its worker planned from it commit in one statement
of the results' transaction: the statement deletes the results' work items (their
fence), applies each planned commit whose instance is as the worker left it, and sends
the results of the others to their inboxes, as :func:`~taskloom.storage.postgres_batch.
activity_sql` would have. It is :func:`~taskloom.storage.postgres_batch.commit_sql` with
another fence, so an inline commit writes exactly what a leased one writes.

All CTEs run on one snapshot, so the fence's look at the inbox does not see the results
the same statement sends. A message another transaction commits after that snapshot is
not waited for: it stays in the inbox, visible, and its sender's notification brings a
worker to it, as for a message arriving just after any episode's commit.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from taskloom.storage.base import ActivityResult, EagerActivities, EpisodeCommit, WorkItem
from taskloom.storage.postgres_batch import (
    commit_params,
    commit_sql,
    eager_items,
    message_arrays,
    results_ctes,
)

__all__ = ["InlineOutcome", "inline_params", "inline_sql", "read_outcome"]


#: The row as the planner's last commit left it, for the commits in ``ok``.
_FENCE = (
    "i.lease_token = c.lease_token AND i.lease_expires_at IS NULL "
    "AND i.history_len = c.prior_len AND i.execution_id = c.execution_id "
    "AND c.instance_id IN (SELECT instance_id FROM ok)"
)


def inline_sql(s: str) -> str:
    """Results (``r``, fenced by deleting their work items) and the commits planned from
    them; returns :func:`commit_sql`'s rows and ``NULL, ord, NULL`` per applied result."""
    inputs = f""", {results_ctes(s, "rid", "rtoken", "r.ord, r.instance_id")}, ok AS MATERIALIZED (
    -- Every result counted applied, and no other message is visible (looked up by the
    -- ids, so an index condition whatever the estimates).
    SELECT c.instance_id FROM c
    JOIN (SELECT instance_id, count(*) AS n FROM done GROUP BY instance_id) k
        ON k.instance_id = c.instance_id AND k.n = c.results
    WHERE c.instance_id NOT IN (
        SELECT v.instance_id FROM {s}.messages v
        WHERE v.hub = %(hub)s AND v.instance_id = ANY(%(id)b::text[])
            AND v.visible_at <= %(now)s)
)"""
    tail = f""", kept AS (
    INSERT INTO {s}.messages (hub, instance_id, execution_id, visible_at, event)
    SELECT %(hub)s, r.instance_id, r.execution_id, r.visible_at, r.event
    FROM r JOIN done ON done.ord = r.ord
    WHERE r.instance_id NOT IN (SELECT instance_id FROM fenced)
    ORDER BY r.ord
)"""
    returning = "\nUNION ALL\nSELECT NULL, ord, NULL FROM done"
    return commit_sql(s, _FENCE, inputs, tail, returning)


def inline_params(
    hub: str,
    commits: Sequence[EpisodeCommit],
    expected: dict[str, int],
    results: Sequence[ActivityResult],
    activities: EagerActivities | None,
    now: datetime,
) -> dict[str, Any]:
    """Parameters of :func:`inline_sql`: the commits (as :func:`commit_params`, with how
    many results each was planned from) and the results for their instances."""
    params = commit_params(hub, commits, activities)
    params["results"] = [expected.get(c.instance.instance_id, -1) for c in commits]
    params["rid"] = [r.work_item_id for r in results]
    params["rtoken"] = [r.lease_token for r in results]
    params["now"] = now
    params.update(message_arrays([r.message for r in results], "result_"))
    return params


class InlineOutcome:
    """What :func:`inline_sql` did: the results applied (0-based positions among those
    sent), the instances committed inline and the work items leased eagerly."""

    def __init__(self) -> None:
        self.results: set[int] = set()
        self.committed: set[str] = set()
        self.leased: list[WorkItem] = []


def read_outcome(
    rows: Sequence[tuple[Any, ...]], commits: Sequence[EpisodeCommit]
) -> InlineOutcome:
    out = InlineOutcome()
    for iid, item_id, _task in rows:
        if iid is None:
            out.results.add(item_id - 1)
        elif item_id is None:
            out.committed.add(iid)
    out.leased = eager_items(rows, commits)
    return out
