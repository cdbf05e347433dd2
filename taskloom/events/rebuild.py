"""Rebuilding a projection: a fresh copy beside the live one, checked, swapped in.

1. The next generation's view is emptied (leftovers of an interrupted rebuild) and gets
   the projection's indexes.
2. A consumer ``rebuild:<name>`` replays the whole log into it in batches, each batch in
   a transaction fenced on that consumer's lease, while the live copy keeps serving reads
   and (inline or through its runner) keeps following appends.
3. Check: a handler that raises on an event the rebuild replays refuses the swap (unless
   ``force``) and leaves the live copy as it was, so a bug in a new handler cannot
   replace a good read model with a broken one.
4. Swap: one transaction holding the log's write lock applies the events appended
   since the last batch, makes the new generation live, moves the projection's checkpoint
   to the head and drops the old copy. Readers see the old copy or the new, never a mix.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from taskloom.errors import ConfigurationError, TaskloomError
from taskloom.events.projection import ProjectionSpec, apply_batch
from taskloom.events.status import RebuildReport
from taskloom.storage.events_base import EventTx, view_name

if TYPE_CHECKING:
    from taskloom.events.store import AsyncEventStore

__all__ = ["RebuildFailed", "rebuild"]

BATCH = 500


class RebuildFailed(TaskloomError):
    """The rebuilt copy failed its check; the live copy was left in place."""


def _spec(events: AsyncEventStore, name: str) -> ProjectionSpec:
    spec = events.projections.get(name)
    if spec is None:
        known = ", ".join(sorted(events.projections)) or "none"
        raise ConfigurationError(
            f"no projection {name!r} is registered with this store (known: {known}); "
            "rebuild through the app's client (app.client(url).events) or "
            "`taskloom projections rebuild MODULE:APP NAME`"
        )
    return spec


async def rebuild(events: AsyncEventStore, name: str, *, force: bool = False) -> RebuildReport:
    spec = _spec(events, name)
    log = await events._ready()
    converter = events.converter
    live = await log.view_generation(name)
    new = live + 1
    physical = view_name(name, new)
    await log.view_drop(physical)
    if spec.indexes:
        await log.view_index(physical, spec.indexes)
    builder = f"rebuild:{name}"
    now = events.clock.now()
    await log.consumer_ensure(builder, 1, 0, now)
    await log.consumer_reset(builder, 0, now)
    owner = f"rebuild-{uuid.uuid4().hex[:8]}"
    leases = await log.consumer_lease(builder, owner, now, 300.0, 1)
    if not leases:
        raise RebuildFailed(f"projection {name!r} is being rebuilt by another process")
    lease = leases[0]
    applied = 0
    failures: list[int] = []

    def replay(tx: EventTx, after: int, to_head: bool) -> int:
        nonlocal applied
        position = after
        while True:
            batch = tx.read_log(position, BATCH)
            if not batch:
                return position
            for event in batch:
                _, failed, error = apply_batch(spec, tx, physical, [event], converter)
                if failed is not None and error is not None:
                    failures.append(failed.position)
                    tx.park(builder, failed, error, 1)
                applied += 1
                position = event.position
            if not to_head:
                return position

    position = 0
    while True:
        before = position

        def step(tx: EventTx, after: int = before) -> int:
            return replay(tx, after, False)

        result = await log.consumer_apply(lease, events.clock.now(), step)
        if result is None:
            raise RebuildFailed(f"the rebuild of projection {name!r} lost its lease")
        position = result
        if failures and not force:
            break
        if position == before or position >= await log.log_head() - BATCH:
            break
    if failures and not force:
        await log.view_drop(physical)
        await log.consumer_release(builder, [lease])
        raise RebuildFailed(
            f"rebuilding projection {name!r}: the handler raised on events at positions "
            f"{failures[:10]} (parked under {builder!r}); the live copy was kept. "
            "Fix the handler, or rebuild with force=True to swap in a copy without them"
        )
    documents_before = await log.view_count(view_name(name, live))

    def finish(tx: EventTx) -> int:
        return replay(tx, position, True)

    reached = await log.view_swap(name, new, spec.consumer, events.clock.now(), finish)
    await log.consumer_release(builder, [lease])
    return RebuildReport(
        projection=name,
        generation=new,
        events_applied=applied,
        documents_before=documents_before,
        documents_after=await log.view_count(physical),
        position=reached,
        parked=tuple(failures),
    )
