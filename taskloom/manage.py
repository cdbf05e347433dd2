"""Management of a hub's schedules, queues, keys and bulk purges, on a store.

The client, the CLI, the HTTP API and the host's runners call these; each takes an
opened store (one that also implements :class:`~taskloom.storage.host_base.HostStore`)
and, where time matters, ``now`` from the caller's clock. The stored forms of
schedules live here too: their specs (:class:`Spec`) and the ``SCHEDULE_QUEUE``
message of each tick (:func:`tick_body`), so the client can manage schedules without
importing the host that runs them.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from taskloom import security
from taskloom.cron import Cron
from taskloom.errors import ConfigurationError, ScheduleNotFoundError, TaskloomError
from taskloom.models import Status
from taskloom.storage.base import AT_ONCE, InstanceQuery, Store
from taskloom.storage.host_base import (
    SCHEDULE_QUEUE,
    HostStore,
    KeyRecord,
    QueueMessage,
    ScheduleRecord,
)

TERMINAL = frozenset(s for s in Status if s.is_terminal)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def host_store(store: object) -> HostStore:
    """``store`` as a :class:`HostStore`, or a ConfigurationError saying it is not one."""
    if not isinstance(store, HostStore):
        raise ConfigurationError(
            f"{store!r} has no queues or schedules; use a SQLite or PostgreSQL store"
        )
    return store


# -- schedule specs ----------------------------------------------------------------


@dataclass(frozen=True)
class Spec:
    """A parsed schedule spec: ``"cron:<expression>"`` or ``"every:<seconds>"``."""

    text: str
    cron: Cron | None = None
    interval: float = 0.0

    @classmethod
    def parse(cls, text: str) -> Spec:
        kind, _, rest = text.partition(":")
        if kind == "cron":
            return cls(text, cron=Cron.parse(rest))
        if kind == "every":
            try:
                seconds = float(rest)
            except ValueError:
                seconds = 0.0
            if seconds > 0:
                return cls(text, interval=seconds)
        raise ConfigurationError(f"bad schedule spec {text!r}: use 'cron:EXPR' or 'every:SECONDS'")

    def after(self, moment: datetime) -> datetime:
        """The first tick strictly after ``moment``. Intervals are aligned to the Unix
        epoch, so hosts that start at different times agree on the ticks."""
        if self.cron is not None:
            return self.cron.next_after(moment)
        step = timedelta(seconds=self.interval)
        return _EPOCH + step * ((moment - _EPOCH) // step + 1)

    def at_or_after(self, moment: datetime) -> datetime:
        """The first tick at or after ``moment``."""
        return self.after(moment - timedelta(microseconds=1))

    def following(self, tick: datetime) -> datetime:
        """The tick after ``tick``."""
        if self.cron is not None:
            return self.cron.next_after(tick)
        return tick + timedelta(seconds=self.interval)


# -- queue message bodies ----------------------------------------------------------


def tick_body(name: str, tick: datetime, *, kind: str = "tick") -> str:
    """The ``SCHEDULE_QUEUE`` message for one run of schedule ``name`` at ``tick``.

    ``kind`` is ``"tick"`` (claimed by a runner), ``"manual"`` (triggered by hand) or
    ``"skip"`` (a missed tick dropped by ``missed="skip"``: acknowledged, not run).
    """
    return json.dumps({"schedule": name, "tick": tick.isoformat(), "kind": kind})


@dataclass(frozen=True)
class TickMessage:
    schedule: str
    tick: datetime
    kind: str


def parse_tick_body(body: str) -> TickMessage:
    data = json.loads(body)
    return TickMessage(
        str(data["schedule"]), datetime.fromisoformat(data["tick"]), str(data.get("kind", "tick"))
    )


# -- schedules ---------------------------------------------------------------------


async def list_schedules(store: Store) -> list[ScheduleRecord]:
    """The hub's schedules, by name."""
    return sorted(await host_store(store).schedule_list(), key=lambda r: r.name)


async def get_schedule(store: Store, name: str) -> ScheduleRecord:
    for record in await host_store(store).schedule_list():
        if record.name == name:
            return record
    raise ScheduleNotFoundError(
        f"no schedule {name!r} in hub {store.hub!r}; `taskloom schedules list` shows them "
        "(a schedule appears once a host serving its app has started)"
    )


async def pause_schedule(store: Store, name: str) -> None:
    """Stop claiming ticks of ``name`` until it is resumed."""
    await get_schedule(store, name)
    if not await host_store(store).schedule_set_paused(name, True, None):
        raise ScheduleNotFoundError(f"no schedule {name!r} in hub {store.hub!r}")


async def resume_schedule(store: Store, name: str, now: datetime) -> datetime:
    """Resume ``name`` from its first tick after ``now`` (the ticks of the pause are
    not run); returns that tick."""
    record = await get_schedule(store, name)
    next_tick = Spec.parse(record.spec).after(now)
    if not await host_store(store).schedule_set_paused(name, False, next_tick):
        raise ScheduleNotFoundError(f"no schedule {name!r} in hub {store.hub!r}")
    return next_tick


async def trigger_schedule(store: Store, name: str, now: datetime) -> int:
    """Run ``name`` once now, by hand (also when paused), leaving its ticks alone.
    The handler gets ``now`` as its scheduled time. Returns the queue message id."""
    await get_schedule(store, name)
    body = tick_body(name, now, kind="manual")
    return await host_store(store).queue_put(SCHEDULE_QUEUE, body, AT_ONCE, now)


# -- queues ------------------------------------------------------------------------


async def peek_queue(store: Store, queue: str, limit: int = 100) -> list[QueueMessage]:
    """Up to ``limit`` messages of ``queue``, oldest first, without leasing them; a
    poison queue (``<queue>-poison``) shows each message's ``error``."""
    return await host_store(store).queue_peek(queue, limit)


# -- keys --------------------------------------------------------------------------


@dataclass(frozen=True)
class CreatedKey:
    """A new key: ``key`` is shown once and never stored; ``record`` holds its hash."""

    key: str
    record: KeyRecord


class KeyNameTakenError(TaskloomError, ValueError):
    """An unrevoked key already has this name."""


async def create_key(store: Store, role: str, name: str | None, now: datetime) -> CreatedKey:
    """Make an API key with ``role``; only its SHA-256 is stored. Names of unrevoked
    keys are unique, so ``keys list`` and logs tell keys apart."""
    security.check_role(role)
    hosts = host_store(store)
    if name is not None and any(
        k.name == name and k.revoked_at is None for k in await hosts.key_list()
    ):
        raise KeyNameTakenError(f"a key named {name!r} exists; revoke it or pick another name")
    key = security.new_key()
    key_id = uuid.uuid4().hex[:12]
    record = KeyRecord(key_id, name or f"{role}-{key_id[:6]}", role, security.hash_key(key), now)
    await hosts.key_create(record)
    return CreatedKey(key, record)


async def list_keys(store: Store) -> list[KeyRecord]:
    return await host_store(store).key_list()


async def revoke_key(store: Store, key_id: str, now: datetime) -> None:
    if not await host_store(store).key_revoke(key_id, now):
        raise TaskloomError(
            f"no unrevoked key {key_id!r} in hub {store.hub!r}; `taskloom keys list` shows ids"
        )


# -- bulk purge ----------------------------------------------------------------------

Progress = Callable[[int, int], None]


async def purge_in_pages(
    store: Store,
    *,
    statuses: frozenset[Status] | None = None,
    created_from: datetime | None = None,
    created_to: datetime | None = None,
    page_size: int = 100,
    progress: Progress | None = None,
) -> int:
    """Delete finished instances matching the filters a page at a time, calling
    ``progress(done, total)`` after each page; returns how many were deleted.

    The ids are collected first (paging over the query), then purged in chunks, so a
    purge of millions neither holds one huge transaction nor pages over rows it is
    deleting. Instances that matched but changed meanwhile are left alone.
    """
    wanted = TERMINAL if statuses is None else statuses & TERMINAL
    if not wanted:  # only unfinished statuses asked for: nothing may be purged
        if progress is not None:
            progress(0, 0)
        return 0
    query = InstanceQuery(
        statuses=frozenset(wanted), created_from=created_from, created_to=created_to
    )
    ids: list[str] = []
    token: str | None = None
    while True:
        found = await store.query_instances(query, max(page_size, 500), token)
        ids.extend(r.instance_id for r in found.records)
        token = found.continuation_token
        if token is None:
            break
    total, done, deleted = len(ids), 0, 0
    if progress is not None:
        progress(0, total)
    for start in range(0, total, page_size):
        chunk = ids[start : start + page_size]
        deleted += await store.purge_instances(query, chunk)
        done += len(chunk)
        if progress is not None:
            progress(done, total)
    return deleted
