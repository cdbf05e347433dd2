"""Set-based write statements of the PostgreSQL store's hot paths.

Kept apart from :mod:`taskloom.storage.postgres`, which decides transactions and
retries, so that module stays readable. Nothing here is public API.

Each hot write is **one statement for the whole batch**, whatever its size: the per-row
values travel as parallel arrays that ``unnest`` turns back into rows, and
data-modifying CTEs apply the dependent writes to exactly the rows that passed the
fence. All CTEs of a statement run on one snapshot and none sees another's changes,
which is why the writes that must see an earlier write (replacing a history, creating
a child instance) stay out of these statements and run after them.

Rows whose order matters (messages and work items: their identity values order inboxes
and the activity queue) are inserted ``ORDER BY`` their position in the batch.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from typing import Any

from taskloom.history import dumps_event
from taskloom.models import FailureDetails
from taskloom.storage.base import (
    ActivityResult,
    EagerActivities,
    EpisodeCommit,
    Message,
    NewInstance,
    VersionFilter,
    WorkItem,
)

INSTANCE_COLUMNS = (
    "instance_id, execution_id, name, version, status, input, output, custom_status, "
    "failure, created_at, updated_at, completed_at, parent_instance_id, "
    "scheduled_start_at, history_len"
)


def failure_json(failure: FailureDetails | None) -> str | None:
    return None if failure is None else json.dumps(failure.to_dict(), separators=(",", ":"))


# -- episode commits ------------------------------------------------------------------


def commit_rounds(commits: Sequence[EpisodeCommit]) -> list[list[int]]:
    """Indices of ``commits`` in statements whose instance ids are unique.

    One round in practice (a lease batch holds each instance once). A batch holding an
    instance twice (a stale and a fresh lease) tries the first occurrence first, as one
    commit after another would, since an UPDATE ... FROM joining one row twice applies
    only one of the two, unpredictably. Within a round, commits are in instance id order
    so that concurrent batches lock instance rows in the same order.
    """
    rounds: list[list[int]] = []
    seen: dict[str, int] = {}
    for k in sorted(range(len(commits)), key=lambda k: commits[k].instance.instance_id):
        iid = commits[k].instance.instance_id
        n = seen.get(iid, 0)
        seen[iid] = n + 1
        if n == len(rounds):
            rounds.append([])
        rounds[n].append(k)
    return rounds


#: The fence of a leased episode (see the store's docstring): the instance's token equals
#: the commit's and a lease is still recorded. The commit releases the lease, so a retry
#: finds none.
LEASE_FENCE = "i.lease_token = c.lease_token AND i.lease_expires_at IS NOT NULL"


def commit_sql(
    s: str, fence: str = LEASE_FENCE, inputs: str = "", tail: str = "", returning: str = ""
) -> str:
    """Fence and apply a round of episode commits; returns the applied instance ids
    (``id, NULL, NULL``) and the work items leased eagerly (``instance, id, task``).

    The instances are also named by ``= ANY`` of the ids, so the row look-up is an index
    condition whatever the planner's estimates (statistics taken while a hub was empty
    otherwise make it scan the hub's instances once per commit).

    ``fence`` is the condition on the instance row ``i`` and the commit ``c``; ``inputs``
    adds CTEs after ``c``, ``tail`` CTEs after ``fenced`` (both start with a comma) and
    ``returning`` rows to the result (``UNION ALL ...``), for the inline episodes of
    :mod:`taskloom.storage.postgres_inline`.
    """
    return f"""
WITH c AS (
    SELECT * FROM unnest(
        %(id)b::text[], %(token)b::bigint[], %(status)b::text[], %(output)b::text[],
        %(input)b::text[], %(custom_status)b::text[], %(failure)b::text[],
        %(execution_id)b::text[], %(completed_at)b::timestamptz[],
        %(updated_at)b::timestamptz[], %(history_len)b::int[], %(name)b::text[],
        %(version)b::text[], %(prior_len)b::int[], %(results)b::int[]
    ) AS c(instance_id, lease_token, status, output, input, custom_status, failure,
           execution_id, completed_at, updated_at, history_len, name, version,
           prior_len, results)
){inputs}, fenced AS (
    UPDATE {s}.instances i SET status = c.status, output = c.output, input = c.input,
        custom_status = c.custom_status, failure = c.failure,
        execution_id = c.execution_id, completed_at = c.completed_at,
        updated_at = c.updated_at, history_len = c.history_len, name = c.name,
        version = c.version, lease_owner = NULL, lease_expires_at = NULL
    FROM c
    WHERE i.hub = %(hub)s AND i.instance_id = ANY(%(id)b::text[])
        AND i.instance_id = c.instance_id AND {fence}
    RETURNING i.instance_id
){tail}, consumed AS (
    DELETE FROM {s}.messages m
    USING unnest(%(consumed_owner)b::text[], %(consumed_id)b::bigint[]) AS u(owner, id)
    WHERE m.id = u.id AND m.hub = %(hub)s AND m.instance_id = u.owner
        AND u.owner IN (SELECT instance_id FROM fenced)
), history AS (
    INSERT INTO {s}.history (hub, instance_id, seq, event)
    SELECT %(hub)s, u.owner, u.seq, u.event
    FROM unnest(%(history_owner)b::text[], %(history_seq)b::int[], %(history_event)b::text[])
        AS u(owner, seq, event)
    WHERE u.owner IN (SELECT instance_id FROM fenced)
), work AS (
    -- Items with a lease holder (eager dispatch) start leased, hidden until it lapses.
    INSERT INTO {s}.work_items
        (hub, instance_id, execution_id, task_id, name, input, visible_at, ready_at, attempt,
         lease_owner, lease_token, lease_expires_at, trace_parent, scheduled_at)
    SELECT %(hub)s, u.instance_id, u.execution_id, u.task_id, u.name, u.input,
        u.visible_at, coalesce(u.expires, u.visible_at),
        u.attempt + (u.holder IS NOT NULL)::int, u.holder, (u.holder IS NOT NULL)::int,
        u.expires, u.trace_parent, u.scheduled_at
    FROM unnest(
        %(work_owner)b::text[], %(work_instance)b::text[], %(work_execution)b::text[],
        %(work_task)b::int[], %(work_name)b::text[], %(work_input)b::text[],
        %(work_visible)b::timestamptz[], %(work_attempt)b::int[],
        %(work_holder)b::text[], %(work_expires)b::timestamptz[], %(work_trace)b::text[],
        %(work_scheduled)b::timestamptz[]
    ) WITH ORDINALITY AS u(owner, instance_id, execution_id, task_id, name, input,
                           visible_at, attempt, holder, expires, trace_parent, scheduled_at,
                           ord)
    WHERE u.owner IN (SELECT instance_id FROM fenced)
    ORDER BY u.ord
    RETURNING id, instance_id, task_id, lease_owner
), sent AS (
    INSERT INTO {s}.messages (hub, instance_id, execution_id, visible_at, event)
    SELECT %(hub)s, u.instance_id, u.execution_id, u.visible_at, u.event
    FROM unnest(
        %(message_owner)b::text[], %(message_instance)b::text[],
        %(message_execution)b::text[], %(message_visible)b::timestamptz[],
        %(message_event)b::text[]
    ) WITH ORDINALITY AS u(owner, instance_id, execution_id, visible_at, event, ord)
    WHERE u.owner IN (SELECT instance_id FROM fenced)
        AND EXISTS (SELECT 1 FROM {s}.instances t
                    WHERE t.hub = %(hub)s AND t.instance_id = u.instance_id)
    ORDER BY u.ord
)
SELECT instance_id, NULL::bigint, NULL::int FROM fenced
UNION ALL
SELECT instance_id, id, task_id FROM work WHERE lease_owner IS NOT NULL{returning}"""


def eager_items(
    rows: Sequence[tuple[Any, ...]], commits: Sequence[EpisodeCommit]
) -> list[WorkItem]:
    """The work items leased eagerly, from the ``(instance, id, task)`` rows of
    :func:`commit_sql` (rows without an id are fenced instances, not items)."""
    scheduled = {(w.instance_id, w.task_id): w for c in commits for w in c.work_items}
    items: list[WorkItem] = []
    for iid, item_id, task_id in rows:
        if iid is None or item_id is None:
            continue
        w = scheduled[iid, task_id]
        items.append(
            WorkItem(
                item_id,
                iid,
                w.execution_id,
                task_id,
                w.name,
                w.input,
                1,
                w.prior_attempts + 1,
                w.trace_parent,
                w.scheduled_at,
            )
        )
    return items


def history_rows(commits: Sequence[EpisodeCommit]) -> dict[str, list[Any]]:
    """History rows with explicit sequence numbers (1-based, as always on PostgreSQL).

    ``history_len`` is maintained by episode commits alone, so an append goes right
    after the ``history_len - len(history)`` events already stored; a replaced history
    starts again at 1 (after its old rows were deleted).
    """
    owners: list[str] = []
    seqs: list[int] = []
    events: list[str] = []
    for c in commits:
        start = 0 if c.replace_history else c.prior_len
        for seq, event in enumerate(c.history, start + 1):
            owners.append(c.instance.instance_id)
            seqs.append(seq)
            events.append(dumps_event(event))
    return {"history_owner": owners, "history_seq": seqs, "history_event": events}


def commit_params(
    hub: str, commits: Sequence[EpisodeCommit], eager: EagerActivities | None = None
) -> dict[str, Any]:
    """Parameters of :func:`commit_sql` for one round.

    Left out, for the caller to apply after the statement: the history of commits that
    replace it (the old rows must go first) and the messages of commits that create
    child instances (creating a child clears messages already sent to its id).
    """
    records = [c.instance for c in commits]
    work = [(c.instance.instance_id, w) for c in commits for w in c.work_items]
    # Which items to lease eagerly is chosen before the fence: items of a stale commit
    # are not inserted at all, so the worker may get fewer than it asked for.
    room = 0 if eager is None else max(0, eager.limit - len(eager.leased))
    holder = None if eager is None else eager.owner
    expires = None if eager is None else eager.expires
    sent = [(c.instance.instance_id, m) for c in commits if not c.new_instances for m in c.messages]
    consumed = [(c.instance.instance_id, mid) for c in commits for mid in c.consumed]
    return {
        "hub": hub,
        "id": [r.instance_id for r in records],
        "token": [c.lease_token for c in commits],
        "status": [r.status.value for r in records],
        "output": [r.output for r in records],
        "input": [r.input for r in records],
        "custom_status": [r.custom_status for r in records],
        "failure": [failure_json(r.failure) for r in records],
        "execution_id": [r.execution_id for r in records],
        "completed_at": [r.completed_at for r in records],
        "updated_at": [r.updated_at for r in records],
        "history_len": [r.history_len for r in records],
        "name": [r.name for r in records],
        "version": [r.version for r in records],
        "prior_len": [c.prior_len for c in commits],
        "results": [0] * len(commits),
        "consumed_owner": [owner for owner, _ in consumed],
        "consumed_id": [mid for _, mid in consumed],
        **history_rows([c for c in commits if not c.replace_history]),
        "work_owner": [owner for owner, _ in work],
        "work_instance": [w.instance_id for _, w in work],
        "work_execution": [w.execution_id for _, w in work],
        "work_task": [w.task_id for _, w in work],
        "work_name": [w.name for _, w in work],
        "work_input": [w.input for _, w in work],
        "work_visible": [w.visible_at for _, w in work],
        "work_attempt": [w.prior_attempts for _, w in work],
        "work_holder": [holder if k < room else None for k in range(len(work))],
        "work_expires": [expires if k < room else None for k in range(len(work))],
        "work_trace": [w.trace_parent for _, w in work],
        "work_scheduled": [w.scheduled_at for _, w in work],
        "message_owner": [owner for owner, _ in sent],
        **message_arrays([m for _, m in sent], "message_"),
    }


# -- leases ------------------------------------------------------------------------------


#: The version condition of the episode leases (a ``VersionFilter`` as ``version_params``).
#: Entities (ids ``@name@key``) have no version and are run by every worker.
VERSION_ADMITS = (
    "(left({alias}.instance_id, 1) = '@' OR ("
    "(%(only)s::text IS NULL OR COALESCE({alias}.version, '') = %(only)s::text) "
    "AND COALESCE({alias}.version, '') <> ALL(%(excluded)b::text[])))"
)


#: The name condition of the episode leases: ``%(names)s`` NULL admits every name, else
#: orchestration names and, for entities (ids ``@name@key``), ``@name``.
NAMES_ADMIT = (
    "(%(names)b::text[] IS NULL OR (CASE WHEN left({alias}.instance_id, 1) = '@' "
    "THEN '@' || {alias}.name ELSE {alias}.name END) = ANY(%(names)b::text[]))"
)


def version_params(
    versions: VersionFilter | None, names: Collection[str] | None = None
) -> dict[str, Any]:
    """The parameters of :data:`VERSION_ADMITS` and :data:`NAMES_ADMIT`."""
    chosen = None if names is None else sorted(set(names))
    if versions is None:
        return {"only": None, "excluded": [], "names": chosen}
    return {"only": versions.only, "excluded": sorted(versions.excluded), "names": chosen}


def lease_episodes_sql(s: str) -> str:
    """Lease up to ``limit`` free instances with visible messages, oldest message first.

    Only the oldest ``scan`` visible messages are looked at, read in index order, so a
    deep backlog costs a bounded scan, not all of it. Messages of leased instances are
    skipped inside the window, so one busy instance cannot crowd everyone else out of it.
    Rows other workers are leasing right now are skipped, not waited for, and the lease
    condition is re-checked on the locked row version.
    """
    returned = ", ".join(f"i.{c.strip()}" for c in INSTANCE_COLUMNS.split(","))
    return f"""
WITH ready AS (
    SELECT instance_id, min(visible_at) AS first_at, min(id) AS first_id FROM (
        SELECT m.instance_id, m.visible_at, m.id
        FROM {s}.messages m JOIN {s}.instances o
            ON o.hub = m.hub AND o.instance_id = m.instance_id
        WHERE m.hub = %(hub)s AND m.visible_at <= %(now)s
            AND (o.lease_expires_at IS NULL OR o.lease_expires_at <= %(now)s)
            AND {VERSION_ADMITS.format(alias="o")} AND {NAMES_ADMIT.format(alias="o")}
        ORDER BY m.visible_at LIMIT %(scan)s
    ) oldest GROUP BY instance_id
), picked AS (
    SELECT i.instance_id, r.first_at, r.first_id
    FROM ready r JOIN {s}.instances i ON i.hub = %(hub)s AND i.instance_id = r.instance_id
    WHERE i.lease_expires_at IS NULL OR i.lease_expires_at <= %(now)s
    ORDER BY r.first_at, r.first_id LIMIT %(limit)s
    FOR UPDATE OF i SKIP LOCKED
)
UPDATE {s}.instances i SET lease_token = i.lease_token + 1,
    lease_owner = %(owner)s, lease_expires_at = %(expires)s
FROM picked p WHERE i.hub = %(hub)s AND i.instance_id = p.instance_id
RETURNING {returned}, i.lease_token, p.first_at, p.first_id"""


def lease_activities_sql(s: str) -> str:
    """Lease up to ``limit`` ready work items (of ``names``, if given), oldest first,
    skipping those other workers are leasing; hidden until the lease lapses."""
    return f"""
WITH picked AS (
    SELECT id FROM {s}.work_items
    WHERE hub = %(hub)s AND ready_at <= %(now)s
        AND (%(names)b::text[] IS NULL OR name = ANY(%(names)b::text[]))
    ORDER BY ready_at, id LIMIT %(limit)s FOR UPDATE SKIP LOCKED
)
UPDATE {s}.work_items w SET lease_token = w.lease_token + 1, attempt = w.attempt + 1,
    lease_owner = %(owner)s, lease_expires_at = %(expires)s, ready_at = %(expires)s
FROM picked WHERE w.id = picked.id
RETURNING w.id, w.instance_id, w.execution_id, w.task_id, w.name, w.input, w.lease_token,
    w.attempt, w.trace_parent, w.scheduled_at, w.visible_at"""


def leased_inboxes_sql(s: str) -> str:
    """The visible messages of the instances a lease statement of this transaction just
    took (found by owner and expiry); a statement of its own, so on a fresh snapshot."""
    return f"""
SELECT m.id, m.instance_id, m.execution_id, m.visible_at, m.event
FROM {s}.instances i JOIN {s}.messages m ON m.hub = i.hub AND m.instance_id = i.instance_id
WHERE i.hub = %(hub)s AND i.lease_owner = %(owner)s AND i.lease_expires_at = %(expires)s
    AND m.visible_at <= %(now)s
ORDER BY m.id"""


def eager_lease_sql(s: str) -> str:
    """Lease the free instances among ``ids`` that have visible messages (eager
    episodes, in the activity-result transaction); their inboxes are read after it by
    :func:`leased_inboxes_sql`."""
    returned = ", ".join(f"i.{c.strip()}" for c in INSTANCE_COLUMNS.split(","))
    return f"""
WITH picked AS (
    SELECT o.instance_id FROM {s}.instances o
    WHERE o.hub = %(hub)s AND o.instance_id = ANY(%(ids)b::text[])
        AND (o.lease_expires_at IS NULL OR o.lease_expires_at <= %(now)s)
        AND {VERSION_ADMITS.format(alias="o")} AND {NAMES_ADMIT.format(alias="o")}
        AND EXISTS (SELECT 1 FROM {s}.messages v WHERE v.hub = %(hub)s
                    AND v.instance_id = o.instance_id AND v.visible_at <= %(now)s)
    ORDER BY o.instance_id FOR UPDATE SKIP LOCKED
)
UPDATE {s}.instances i SET lease_token = i.lease_token + 1, lease_owner = %(owner)s,
    lease_expires_at = %(expires)s
FROM picked p WHERE i.hub = %(hub)s AND i.instance_id = p.instance_id
RETURNING {returned}, i.lease_token"""


def message_arrays(messages: Sequence[Message], prefix: str) -> dict[str, list[Any]]:
    return {
        f"{prefix}instance": [m.instance_id for m in messages],
        f"{prefix}execution": [m.execution_id for m in messages],
        f"{prefix}visible": [m.visible_at for m in messages],
        f"{prefix}event": [dumps_event(m.event) for m in messages],
    }


def insert_history_sql(s: str) -> str:
    """Insert :func:`history_rows` unconditionally (replaced histories)."""
    return (
        f"INSERT INTO {s}.history (hub, instance_id, seq, event) "
        "SELECT %(hub)s, * FROM unnest("
        "%(history_owner)b::text[], %(history_seq)b::int[], %(history_event)b::text[])"
    )


# -- activity results -----------------------------------------------------------------


def results_ctes(s: str, ids: str, tokens: str, returning: str) -> str:
    """The CTEs ``r`` (activity results: work item ids and tokens from the parameters
    named ``ids`` and ``tokens``, and their ``result_*`` messages) and ``done`` (the
    fenced delete of their work items, returning ``returning``)."""
    return f"""r AS (
    SELECT * FROM unnest(
        %({ids})b::bigint[], %({tokens})b::bigint[], %(result_instance)b::text[],
        %(result_execution)b::text[], %(result_visible)b::timestamptz[],
        %(result_event)b::text[]
    ) WITH ORDINALITY AS r(id, token, instance_id, execution_id, visible_at, event, ord)
), done AS (
    DELETE FROM {s}.work_items w USING r
    WHERE w.id = r.id AND w.lease_token = r.token AND w.hub = %(hub)s
    RETURNING {returning}
)"""


def activity_sql(s: str) -> str:
    """Fence and apply activity results; returns the (1-based) positions applied.

    The DELETE is the fence: only the current lease holder finds its row, and a retried
    result finds it gone. The caller sends each (id, token) once.
    """
    return f"""
WITH {results_ctes(s, "id", "token", "r.ord")}, sent AS (
    INSERT INTO {s}.messages (hub, instance_id, execution_id, visible_at, event)
    SELECT %(hub)s, r.instance_id, r.execution_id, r.visible_at, r.event
    FROM r JOIN done ON done.ord = r.ord
    ORDER BY r.ord
)
SELECT ord FROM done"""


def activity_params(hub: str, results: Sequence[ActivityResult]) -> dict[str, Any]:
    return {
        "hub": hub,
        "id": [r.work_item_id for r in results],
        "token": [r.lease_token for r in results],
        **message_arrays([r.message for r in results], "result_"),
    }


# -- instance creation ------------------------------------------------------------------


def create_sql(s: str) -> str:
    """Create an instance whose id is free, in one statement; returns 1 if created.

    Leftovers under the id (events sent to it before it existed) are cleared; the
    DELETEs run on the statement's snapshot, so they never see the start message the
    same statement inserts. An id that is taken changes nothing (the caller then takes
    the slow path: lock the row, replace it if terminal).
    """
    marks = ", ".join(["%s"] * 16)
    key = "hub = %s AND instance_id = %s AND EXISTS (SELECT 1 FROM created)"
    return (
        f"WITH created AS (INSERT INTO {s}.instances (hub, {INSTANCE_COLUMNS}) "
        f"VALUES ({marks}) ON CONFLICT (hub, instance_id) DO NOTHING RETURNING 1), "
        f"h AS (DELETE FROM {s}.history WHERE {key}), "
        f"m AS (DELETE FROM {s}.messages WHERE {key}), "
        f"w AS (DELETE FROM {s}.work_items WHERE {key}), "
        f"start AS (INSERT INTO {s}.messages (hub, instance_id, execution_id, visible_at, "
        "event) SELECT %s, %s, %s, %s, %s FROM created) "
        "SELECT count(*) FROM created"
    )


def record_values(new: NewInstance) -> list[Any]:
    """The columns of ``new.record`` after ``instance_id``, in INSTANCE_COLUMNS order."""
    r = new.record
    return [
        r.execution_id, r.name, r.version, r.status.value, r.input, r.output,
        r.custom_status, failure_json(r.failure), r.created_at, r.updated_at,
        r.completed_at, r.parent_instance_id, r.scheduled_start_at, r.history_len,
    ]  # fmt: skip


def create_params(hub: str, new: NewInstance) -> list[Any]:
    iid, m = new.record.instance_id, new.start
    key = [hub, iid]
    return [
        hub, iid, *record_values(new),
        *key, *key, *key,
        hub, m.instance_id, m.execution_id, m.visible_at, dumps_event(m.event),
    ]  # fmt: skip
