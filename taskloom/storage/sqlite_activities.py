"""The SQLite backend's activity work items: leasing them, completing them (with the
result messages, the appends of results that carry them, and inline episodes) and
renewing their leases. A mixin of :class:`~taskloom.storage.sqlite.SqliteStore`, split
out by concept as on PostgreSQL."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Collection, Sequence
from contextlib import AbstractContextManager
from dataclasses import fields
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from taskloom.errors import WrongExpectedVersionError
from taskloom.storage import large
from taskloom.storage import sqlite_codec as codec
from taskloom.storage.base import (
    LOG,
    ActivityResult,
    EagerActivities,
    EagerEpisodes,
    EpisodeCommit,
    InlineEpisodes,
    LeasedEpisode,
    Message,
    WorkItem,
    inline_changes,
    inline_kinds,
    refused,
    result_kinds,
)
from taskloom.storage.sqlite_codec import QUERIES as _Q
from taskloom.storage.sqlite_codec import name_params as _name_params
from taskloom.storage.sqlite_codec import version_params as _version_params

__all__ = ["SqliteActivitiesMixin"]

T = TypeVar("T")


def _work_item(row: sqlite3.Row) -> WorkItem:
    values = {f.name: row[f.name] for f in fields(WorkItem)}
    values["scheduled_at"] = codec.dt_or_none(values["scheduled_at"])
    return WorkItem(**values)


class SqliteActivitiesMixin:
    """Activity leases and results for :class:`~taskloom.storage.sqlite.SqliteStore`."""

    if TYPE_CHECKING:  # provided by SqliteStore and its other mixins
        hub: str
        payloads: large.Payloads

        def _write(self, action: str) -> AbstractContextManager[sqlite3.Connection]: ...

        def _scalar(self, action: str, sql: str, params: Sequence[Any] | dict[str, Any]) -> Any: ...

        def _resolved(self, conn: sqlite3.Connection, objs: list[T]) -> list[T]: ...

        def _notify(self, kinds: str = ..., changed: Collection[str] | None = ...) -> None: ...

        def _insert_messages(
            self, conn: sqlite3.Connection, messages: Sequence[Message]
        ) -> None: ...

        def _apply_commit(
            self,
            conn: sqlite3.Connection,
            commit: EpisodeCommit,
            now: datetime,
            eager: EagerActivities | None,
            inline: bool = False,
        ) -> bool: ...

        def _lease_instances(
            self,
            conn: sqlite3.Connection,
            ids: Sequence[str],
            at: int,
            lease_for: float,
            owner: str,
        ) -> list[LeasedEpisode]: ...

        def _append(
            self, conn: sqlite3.Connection, appends: Sequence[Any], now: datetime
        ) -> Any: ...

    async def lease_activities(
        self,
        now: datetime,
        limit: int,
        lease_for: float,
        owner: str,
        names: Collection[str] | None = None,
    ) -> list[WorkItem]:
        at = codec.us(now)
        params = (self.hub, at, *_name_params(names), limit)
        if limit < 1 or not self._scalar("look for work", _Q["activity_candidates"], params):
            return []
        expires = at + codec.seconds_to_us(lease_for)
        with self._write("lease activities") as conn:
            ids = [r[0] for r in conn.execute(_Q["activity_candidates"], params)]
            rows: list[sqlite3.Row] = []
            for chunk in codec.chunks(ids):
                # Moving visible_at to the expiry hides the item until its lease lapses.
                rows += conn.execute(
                    "UPDATE work_items SET lease_owner = ?, lease_token = lease_token + 1, "
                    "lease_expires = ?, visible_at = ?, attempt = attempt + 1 "
                    f"WHERE hub = ? AND id IN ({codec.marks(len(chunk))}) RETURNING *",
                    (owner, expires, expires, self.hub, *chunk),
                ).fetchall()
            position = {work_item_id: n for n, work_item_id in enumerate(ids)}
            rows.sort(key=lambda r: position[r["id"]])
            items = [_work_item(r) for r in rows]
            return self._resolved(conn, items)

    async def complete_activities(
        self,
        results: Sequence[ActivityResult],
        now: datetime,
        eager: EagerEpisodes | None = None,
        *,
        inline: InlineEpisodes | None = None,
    ) -> list[bool]:
        done: list[bool] = []
        appended = False
        given, results = results, self.payloads.within_limit(results)
        planned = {} if inline is None else inline.usable(given, results)
        held: dict[str, list[Message]] = {}  # results of inline candidates, not yet sent
        with self._write("complete activities") as conn:
            if inline is not None:
                inline.applied.clear()
            for result in results:
                params = (self.hub, result.work_item_id, result.lease_token)
                deleted = conn.execute(_Q["complete_activity"], params).rowcount == 1
                iid = result.message.instance_id
                if iid in planned:
                    # A lost result leaves fewer than the plan counted: no inline episode.
                    if deleted:
                        held.setdefault(iid, []).append(result.message)
                elif deleted:
                    message = result.message
                    if result.appends:
                        message, wrote = self._append_for(conn, result, now)
                        appended = appended or wrote
                    self._insert_messages(conn, [message])
                done.append(deleted)
            if inline is not None:
                self._apply_inline(conn, inline, planned, held, now)
            took = [r for r, ok in zip(results, done, strict=True) if ok]
            if eager is not None:
                sent = (r.message.instance_id for r in took)
                targets = dict.fromkeys(
                    i for i in sent if inline is None or i not in inline.applied
                )
                self._lease_free(conn, list(targets), eager)
        kinds = (LOG if appended else "") + inline_kinds(inline)
        rest = [r for r in took if inline is None or r.message.instance_id not in inline.applied]
        if rest:
            kinds += result_kinds(rest, eager)
        if kinds:
            self._notify(kinds, inline_changes(inline))
        return done

    def _apply_inline(
        self,
        conn: sqlite3.Connection,
        inline: InlineEpisodes,
        planned: dict[str, EpisodeCommit],
        held: dict[str, list[Message]],
        now: datetime,
    ) -> None:
        """Commit each planned inline episode whose fence holds (InlineEpisodes); send the
        results of the others to their inboxes."""
        for iid, messages in held.items():
            commit = planned.get(iid)
            if (
                commit is not None
                and len(messages) == inline.expected.get(iid, -1)
                and self._apply_commit(conn, commit, now, inline.activities, inline=True)
            ):
                inline.applied.add(iid)
            else:
                self._insert_messages(conn, messages)

    def _append_for(
        self, conn: sqlite3.Connection, result: ActivityResult, now: datetime
    ) -> tuple[Message, bool]:
        """Write an activity's appends in a savepoint; a refusal fails the activity."""
        conn.execute("SAVEPOINT activity_appends")
        try:
            self._append(conn, result.appends, now)
        except WrongExpectedVersionError as exc:
            conn.execute("ROLLBACK TO activity_appends")
            conn.execute("RELEASE activity_appends")
            return refused(result.message, exc), False
        conn.execute("RELEASE activity_appends")
        return result.message, True

    def _lease_free(self, conn: sqlite3.Connection, ids: list[str], eager: EagerEpisodes) -> None:
        at = codec.us(eager.now)
        if (eager.versions is not None or eager.names is not None) and ids:
            params = (
                self.hub,
                json.dumps(ids),
                *_version_params(eager.versions),
                *_name_params(eager.names),
            )
            admitted = {r[0] for r in conn.execute(_Q["version_admitted"], params)}
            ids = [i for i in ids if i in admitted]
        for chunk in codec.chunks(ids):
            leased = self._lease_instances(conn, chunk, at, eager.lease_for, eager.owner)
            eager.leased += [e for e in leased if e.messages]

    async def renew_activities(
        self, leases: Sequence[tuple[int, int]], now: datetime, lease_for: float
    ) -> list[bool]:
        expires = codec.us(now) + codec.seconds_to_us(lease_for)
        with self._write("renew activity leases") as conn:
            return [
                conn.execute(_Q["renew_activity"], (expires, expires, self.hub, i, t)).rowcount == 1
                for i, t in leases
            ]
