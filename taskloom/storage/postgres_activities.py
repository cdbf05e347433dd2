"""The PostgreSQL backend's activity work items: leasing them, completing them (with the
result messages, and the appends of results that carry them) and renewing their leases.
A mixin of :class:`~taskloom.storage.postgres.PostgresStore`, split out by concept."""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Collection, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from psycopg import AsyncConnection, AsyncCursor

from taskloom.history import loads_event
from taskloom.storage import large
from taskloom.storage.base import (
    EPISODES,
    ActivityResult,
    EagerEpisodes,
    EpisodeCommit,
    InlineEpisodes,
    LeasedEpisode,
    Message,
    WorkItem,
    inline_changes,
    inline_kinds,
    likely_commit_kinds,
    result_kinds,
)
from taskloom.storage.entity_rows import ensure_postgres
from taskloom.storage.postgres_batch import (
    INSTANCE_COLUMNS,
    activity_params,
    activity_sql,
    eager_lease_sql,
    lease_activities_sql,
    leased_inboxes_sql,
    version_params,
)
from taskloom.storage.postgres_inline import InlineOutcome, inline_params, inline_sql, read_outcome
from taskloom.storage.postgres_plans import plan_setting, planned
from taskloom.storage.postgres_reads import instance_from_row

__all__ = ["PostgresActivitiesMixin"]

T = TypeVar("T")
Conn = AsyncConnection[tuple[Any, ...]]
Cur = AsyncCursor[tuple[Any, ...]]


class PostgresActivitiesMixin:
    """Activity leases and results for :class:`~taskloom.storage.postgres.PostgresStore`."""

    if TYPE_CHECKING:  # provided by PostgresStore and its other mixins
        hub: str
        _s: str
        payloads: large.Payloads

        async def _run(self, op: Callable[[Conn], Awaitable[T]]) -> T: ...

        def _notify(self, kinds: str = ..., changed: Collection[str] | None = ...) -> None: ...

        def _claim(self, kinds: str) -> str: ...

        async def _notify_within(self, conn: Conn, kinds: str) -> None: ...

        def _settled(
            self, sent: str, kinds: str, changed: Collection[str] | None = ...
        ) -> None: ...

        async def _put_payloads(self, cur: Cur, pending: dict[tuple[str, str], str]) -> None: ...

        async def _resolved(self, conn: Conn, objs: list[Any]) -> list[Any]: ...

        async def _complete_with_appends(
            self, results: Sequence[ActivityResult], now: datetime
        ) -> list[bool]: ...

    # -- activities -----------------------------------------------------------------

    async def lease_activities(
        self,
        now: datetime,
        limit: int,
        lease_for: float,
        owner: str,
        names: Collection[str] | None = None,
    ) -> list[WorkItem]:
        if limit < 1:
            return []
        s = self._s
        expires = now + timedelta(seconds=lease_for)
        params = {
            "hub": self.hub,
            "now": now,
            "limit": limit,
            "owner": owner,
            "expires": expires,
            "names": None if names is None else sorted(set(names)),
        }

        async def op(conn: Conn) -> list[WorkItem]:
            cur = await planned(conn, limit, lease_activities_sql(s), params)
            rows = sorted(await cur.fetchall(), key=lambda r: (r[10], r[0]))
            return await self._resolved(conn, [WorkItem(*row[:10]) for row in rows])

        return await self._run(op)

    async def complete_activities(
        self,
        results: Sequence[ActivityResult],
        now: datetime,
        eager: EagerEpisodes | None = None,
        *,
        inline: InlineEpisodes | None = None,
    ) -> list[bool]:
        if not results:
            return []
        given, results = results, self.payloads.within_limit(results)
        planned = {} if inline is None else inline.usable(given, results)
        if inline is not None:
            inline.applied.clear()
        if any(r.appends for r in results):
            return await self._complete_mixed(results, now, eager, inline, planned)
        return await self._complete_batch(results, now, eager, inline, planned)

    async def _complete_batch(
        self,
        results: Sequence[ActivityResult],
        now: datetime,
        eager: EagerEpisodes | None,
        inline: InlineEpisodes | None,
        planned: dict[str, EpisodeCommit],
    ) -> list[bool]:
        # Each (id, token) once: a repeat can never apply (the first deletes the item).
        first: dict[tuple[int, int], int] = {}
        for k, r in enumerate(results):
            first.setdefault((r.work_item_id, r.lease_token), k)
        sent = list(first.values())
        payloads = self.payloads.fork()
        stored = [_with_message(r, payloads.message(r.message)) for r in results]
        inlined = [k for k in sent if results[k].message.instance_id in planned]
        rest = [k for k in sent if results[k].message.instance_id not in planned]
        targets = {results[k].message.instance_id for k in inlined}
        commits = [payloads.commit(c) for iid, c in planned.items() if iid in targets]
        params = activity_params(self.hub, [stored[k] for k in rest])
        iparams: dict[str, Any] = {}
        if commits and inline is not None:
            iparams = inline_params(
                self.hub,
                commits,
                inline.expected,
                [stored[k] for k in inlined],
                inline.activities,
                now,
            )

        leasing = eager is not None and bool(rest)

        async def op(conn: Conn) -> tuple[set[int], InlineOutcome]:
            # One round trip: BEGIN, the fenced delete-and-enqueue, the inline episodes,
            # the eager lease of the receiving instances (it sees the messages just
            # inserted), COMMIT.
            outcome = InlineOutcome()
            async with conn.pipeline():
                cur, icur = conn.cursor(), conn.cursor()
                lease, inboxes = conn.cursor(), conn.cursor()
                async with conn.transaction():
                    await conn.execute(*plan_setting(len(results)))
                    await self._notify_within(conn, noted)
                    if rest:
                        await cur.execute(activity_sql(self._s), params)
                    if iparams:
                        messages = [m for c in commits for m in c.messages]
                        await ensure_postgres(conn, self._s, self.hub, messages)
                        await icur.execute(inline_sql(self._s), iparams)
                    if leasing:
                        assert eager is not None
                        eager.leased.clear()  # a retried attempt starts over
                        # Not the inline instances: their episodes are in this commit
                        # (one whose fence fails is leased by the worker's own loop).
                        ids = [results[k].message.instance_id for k in rest]
                        lease_params = self._eager_params(eager, ids)
                        await lease.execute(eager_lease_sql(self._s), lease_params)
                        await inboxes.execute(leased_inboxes_sql(self._s), lease_params)
                    if payloads.pending:
                        async with conn.cursor() as put:
                            await self._put_payloads(put, payloads.pending)
                done = {rest[row[0] - 1] for row in await cur.fetchall()} if rest else set()
                if iparams:
                    outcome = read_outcome(await icur.fetchall(), commits)
                    done |= {inlined[n] for n in outcome.results}
                if leasing:
                    assert eager is not None
                    leased = await lease.fetchall()
                    rows = await inboxes.fetchall()
                    eager.leased.extend(await self._with_inboxes(conn, leased, rows))
            return done, outcome

        # What to notify inside the transaction: the inline episodes' wake-ups as if all
        # apply, and the results' if no eager lease is asked for (one usually takes them).
        likely = likely_commit_kinds(commits, None if inline is None else inline.activities)
        noted = self._claim(likely + (EPISODES if rest and not leasing else ""))
        try:
            done, outcome = await self._run(op)
        except BaseException:
            if noted:
                self._settled("", "")
            raise
        if inline is not None:
            inline.applied |= outcome.committed
            if inline.activities is not None:
                inline.activities.leased[:] = outcome.leased
        applied = [k in done for k in range(len(results))]
        took = [r for r, ok in zip(results, applied, strict=True) if ok]
        kinds = inline_kinds(inline)
        rest_took = [r for r in took if r.message.instance_id not in outcome.committed]
        if rest_took:
            kinds += result_kinds(rest_took, eager)
        if noted:
            self._settled(noted, kinds, inline_changes(inline))
        elif kinds:
            self._notify(kinds, inline_changes(inline))
        return applied

    async def _complete_mixed(
        self,
        results: Sequence[ActivityResult],
        now: datetime,
        eager: EagerEpisodes | None,
        inline: InlineEpisodes | None,
        planned: dict[str, EpisodeCommit],
    ) -> list[bool]:
        """Results with event appends go one by one; the rest take the batch path."""
        slow = [k for k, r in enumerate(results) if r.appends]
        fast = [k for k, r in enumerate(results) if not r.appends]
        done: dict[int, bool] = {}
        applied = await self._complete_with_appends([results[k] for k in slow], now)
        done.update(zip(slow, applied, strict=True))
        if fast:
            subset = [results[k] for k in fast]
            rest = await self._complete_batch(subset, now, eager, inline, planned)
            done.update(zip(fast, rest, strict=True))
        return [done[k] for k in range(len(results))]

    def _eager_params(self, eager: EagerEpisodes, targets: list[str]) -> dict[str, Any]:
        return {
            "hub": self.hub,
            "ids": sorted(set(targets)),
            "now": eager.now,
            "owner": eager.owner,
            "expires": eager.now + timedelta(seconds=eager.lease_for),
            **version_params(eager.versions, eager.names),
        }

    async def _with_inboxes(
        self, conn: Conn, leased: list[tuple[Any, ...]], rows: list[tuple[Any, ...]]
    ) -> list[LeasedEpisode]:
        """Episodes from lease rows (instance columns, then the token) and the rows of
        :func:`leased_inboxes_sql`. A lease without messages (consumed between the lease
        statement's snapshot and its lock) is freed again."""
        token_at = len(INSTANCE_COLUMNS.split(","))
        inbox: dict[str, list[Message]] = {row[0]: [] for row in leased}
        for mid, iid, eid, visible, event in rows:
            if iid in inbox:
                inbox[iid].append(Message(iid, loads_event(event), visible, eid, mid))
        episodes: list[LeasedEpisode] = []
        emptied: list[tuple[str, int]] = []
        for row in leased:
            if inbox[row[0]]:
                episodes.append(LeasedEpisode(instance_from_row(row), inbox[row[0]], row[token_at]))
            else:
                emptied.append((row[0], row[token_at]))
        if emptied:
            await self._release(conn, emptied)
        records = [e.instance for e in episodes]
        messages = [m for e in episodes for m in e.messages]
        if large.refs(records) or large.refs(messages):
            records = await self._resolved(conn, records)
            by_id = {m.id: m for m in await self._resolved(conn, messages)}
            episodes = [
                LeasedEpisode(r, [by_id[m.id] for m in e.messages], e.lease_token)
                for r, e in zip(records, episodes, strict=True)
            ]
        return episodes

    async def _release(self, conn: Conn, leases: list[tuple[str, int]]) -> None:
        """Free instance leases given as (instance id, token) that found no messages."""
        await conn.execute(
            f"UPDATE {self._s}.instances i SET lease_owner = NULL, lease_expires_at = NULL "
            "FROM unnest(%b::text[], %b::bigint[]) AS u(id, token) "
            "WHERE i.hub = %s AND i.instance_id = u.id AND i.lease_token = u.token",
            [[e[0] for e in leases], [e[1] for e in leases], self.hub],
        )

    async def renew_activities(
        self, leases: Sequence[tuple[int, int]], now: datetime, lease_for: float
    ) -> list[bool]:
        if not leases:
            return []
        expires = now + timedelta(seconds=lease_for)

        async def op(conn: Conn) -> set[int]:
            cur = await planned(
                conn,
                len(leases),
                f"UPDATE {self._s}.work_items w SET lease_expires_at = %s, ready_at = %s "
                "FROM unnest(%b::bigint[], %b::bigint[]) AS u(id, token) "
                "WHERE w.id = u.id AND w.lease_token = u.token AND w.hub = %s RETURNING w.id",
                [expires, expires, [i for i, _ in leases], [t for _, t in leases], self.hub],
            )
            return {row[0] for row in await cur.fetchall()}

        renewed = await self._run(op)
        return [item_id in renewed for item_id, _ in leases]


def _with_message(result: ActivityResult, message: Message) -> ActivityResult:
    """``result`` with its message as stored (itself when no payload was moved out)."""
    return result if message is result.message else dataclasses.replace(result, message=message)
