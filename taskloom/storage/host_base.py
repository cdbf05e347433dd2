"""The host's part of the storage protocol: durable queues, schedules, API keys, secrets.

Backends implement :class:`HostStore` next to their :class:`~taskloom.storage.base.Store`
(``sqlite_host.py``, ``postgres_host.py``), on the same connection and hub. Like the core
protocol, every method takes ``now`` from its caller and never reads the clock.

- **Queues** are at-least-once: a leased message is invisible until its visibility
  timeout lapses; ``queue_ack`` deletes it, ``queue_fail`` makes it visible again at
  ``retry_at`` or, once ``dequeue_count`` reached ``max_dequeue_count``, moves it to
  ``"<queue>-poison"`` with the error, in one transaction.
- **Schedules**: ``schedule_claim`` is a compare-and-set on ``next_tick``; the winner's
  transaction also puts the tick on the ``SCHEDULE_QUEUE`` queue, so each tick is claimed
  by exactly one host and its handler runs at least once even if that host dies.
- **Keys** are stored as SHA-256 hashes only; ``secrets`` hold e.g. the link-signing key.
- **Workers** register themselves: each live worker upserts its :class:`WorkerRecord`
  every few seconds (``heartbeat_worker``), deletes it on a clean stop
  (``remove_worker``); a killed one's row lapses at ``expires_at`` and ``list_workers``
  ignores and deletes it.
- **Backlog**: ``backlog`` counts what waits to be run, for metrics and the dashboard.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

SCHEDULE_QUEUE = "taskloom-schedules"


@dataclass(frozen=True)
class QueueMessage:
    id: int
    queue: str
    body: str
    dequeue_count: int
    lease_token: int
    inserted_at: datetime
    error: str | None = None


@dataclass(frozen=True)
class ScheduleRecord:
    name: str
    spec: str
    next_tick: datetime
    paused: bool = False
    last_tick: datetime | None = None


@dataclass(frozen=True)
class KeyRecord:
    id: str
    name: str
    role: str
    key_hash: str
    created_at: datetime
    revoked_at: datetime | None = None


@dataclass(frozen=True)
class WorkerRecord:
    """One live worker of the hub, as its last heartbeat left it.

    ``kind`` says what runs it (``"native"`` for taskloom's own worker, ``"grpc-sdk"``
    for a Durable Task SDK connected over gRPC). ``orchestrations``, ``activities`` and
    ``entities`` are the names it serves; ``slots`` its activity slots and ``busy`` how
    many of them ran an activity at the heartbeat. A row whose ``expires_at`` has passed
    belongs to a worker that died without removing itself.
    """

    worker_id: str
    host: str
    pid: int
    kind: str
    orchestrations: tuple[str, ...]
    activities: tuple[str, ...]
    entities: tuple[str, ...]
    slots: int
    busy: int
    started_at: datetime
    last_seen: datetime
    expires_at: datetime
    #: The app version the worker starts new orchestrations at (``None``: unversioned).
    version: str | None = None


@dataclass(frozen=True)
class BacklogFigure:
    """What waits to run, of one ``kind``: ``"orchestration"`` (visible inbox messages,
    entities' included) or ``"activity"`` (work items nobody holds). ``oldest_at`` is
    when the longest-waiting one became runnable (None when ``depth`` is 0)."""

    kind: str
    depth: int
    oldest_at: datetime | None = None


class HostStore(abc.ABC):
    """Queues, schedules and keys of one hub (see the module docstring)."""

    # -- queues ---------------------------------------------------------------------

    @abc.abstractmethod
    async def queue_put(self, queue: str, body: str, visible_at: datetime, now: datetime) -> int:
        """Add a message; returns its id."""

    @abc.abstractmethod
    async def queue_lease(
        self, queues: Sequence[str], now: datetime, limit: int, visibility: float, owner: str
    ) -> list[QueueMessage]:
        """Lease up to ``limit`` visible messages of ``queues``, oldest first; each lease
        increments ``dequeue_count`` and ``lease_token`` and hides it for ``visibility`` s."""

    @abc.abstractmethod
    async def queue_ack(self, message_id: int, lease_token: int) -> bool:
        """Delete a handled message if the lease is still ours."""

    @abc.abstractmethod
    async def queue_fail(
        self,
        message_id: int,
        lease_token: int,
        error: str,
        retry_at: datetime,
        max_dequeue_count: int,
        now: datetime,
    ) -> str:
        """Record a failed delivery: ``"retry"``, ``"poisoned"`` or ``"lost"`` (lease gone)."""

    @abc.abstractmethod
    async def queue_peek(self, queue: str, limit: int = 100) -> list[QueueMessage]:
        """Messages of ``queue`` (visible or not), oldest first, without leasing them."""

    # -- schedules ------------------------------------------------------------------

    @abc.abstractmethod
    async def schedule_upsert(self, name: str, spec: str, next_tick: datetime) -> ScheduleRecord:
        """Create the schedule, or keep it as stored if ``spec`` is unchanged, or reset its
        ``next_tick`` if the spec changed. Returns the stored record."""

    @abc.abstractmethod
    async def schedule_list(self) -> list[ScheduleRecord]: ...

    @abc.abstractmethod
    async def schedule_claim(
        self, name: str, tick: datetime, next_tick: datetime, body: str, now: datetime
    ) -> bool:
        """If the schedule is not paused and its ``next_tick`` is ``tick``, move it to
        ``next_tick``, set ``last_tick`` and put ``body`` on ``SCHEDULE_QUEUE``, atomically."""

    @abc.abstractmethod
    async def schedule_set_paused(
        self, name: str, paused: bool, next_tick: datetime | None
    ) -> bool:
        """Pause or resume (with a fresh ``next_tick`` when given); False if unknown."""

    # -- keys and secrets -----------------------------------------------------------

    @abc.abstractmethod
    async def key_create(self, key: KeyRecord) -> None: ...

    @abc.abstractmethod
    async def key_list(self) -> list[KeyRecord]: ...

    @abc.abstractmethod
    async def key_revoke(self, key_id: str, now: datetime) -> bool: ...

    @abc.abstractmethod
    async def key_lookup(self, key_hash: str) -> KeyRecord | None:
        """The unrevoked key with this hash, if any."""

    @abc.abstractmethod
    async def key_hubs(self) -> dict[str, int]:
        """Unrevoked keys per hub, for every hub of the store (not only this one): a
        host must not serve its hub open while the store holds keys for any hub."""

    @abc.abstractmethod
    async def secret(self, name: str, candidate: str) -> str:
        """The stored secret ``name``; stores ``candidate`` first if there is none (the
        first writer wins, so every host signs with the same key)."""

    # -- workers --------------------------------------------------------------------

    @abc.abstractmethod
    async def heartbeat_worker(self, record: WorkerRecord) -> None:
        """Insert or replace ``record`` (keyed by ``worker_id``): one upsert."""

    @abc.abstractmethod
    async def remove_worker(self, worker_id: str) -> bool:
        """Delete the worker's row (a clean stop); True if it was there."""

    @abc.abstractmethod
    async def list_workers(self, now: datetime) -> list[WorkerRecord]:
        """The live workers (``expires_at`` after ``now``), ordered by ``started_at``
        then ``worker_id``; rows expired at ``now`` are left out and deleted."""

    @abc.abstractmethod
    async def backlog(self, now: datetime) -> list[BacklogFigure]:
        """The orchestration and activity backlogs at ``now``: a count over each queue's
        visibility index, and the oldest entry by insertion order."""
