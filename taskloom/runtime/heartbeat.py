"""The worker registry's writer: a worker's heartbeat in the store.

A :class:`Heartbeat` upserts its worker's :class:`~taskloom.storage.host_base.WorkerRecord`
once at start, then every ``every`` seconds (one statement each), and deletes it on a
clean stop. The row expires ``ttl`` seconds after the last beat, so a worker killed
with SIGKILL drops out of :meth:`~taskloom.storage.host_base.HostStore.list_workers`
within ``ttl``. Times are wall-clock (the registry says which processes are alive, even
under a test's virtual clock). A store that is not a ``HostStore`` gets no heartbeat.

Any runner can use it (the native worker, an adapter serving gRPC SDK workers): it
passes a ``describe`` callable returning the record's changing parts at each beat.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from taskloom.storage.host_base import HostStore, WorkerRecord

__all__ = ["Heartbeat", "WorkerShape"]

log = logging.getLogger("taskloom.worker")


@dataclass(frozen=True)
class WorkerShape:
    """What a worker serves and how busy it is, as :class:`Heartbeat` asks each beat."""

    orchestrations: tuple[str, ...]
    activities: tuple[str, ...]
    entities: tuple[str, ...]
    slots: int
    busy: int
    version: str | None = None


def _now() -> datetime:
    return datetime.now(UTC)


class Heartbeat:
    """Keeps ``worker_id``'s row in the registry fresh while the worker runs."""

    def __init__(
        self,
        store: object,
        worker_id: str,
        describe: Callable[[], WorkerShape],
        *,
        kind: str = "native",
        every: float = 5.0,
        ttl: float | None = None,
    ) -> None:
        if every <= 0:
            raise ValueError(f"heartbeat interval must be > 0 seconds, not {every!r}")
        self.store = store if isinstance(store, HostStore) else None
        self.worker_id = worker_id
        self.describe = describe
        self.kind = kind
        self.every = every
        # Three missed beats (and a second of slack) before a worker counts as gone.
        self.ttl = ttl if ttl is not None else 3 * every + 1.0
        self.started_at = _now()
        self._task: asyncio.Task[None] | None = None
        self._failing = False

    def record(self, now: datetime) -> WorkerRecord:
        """The row a beat at ``now`` writes."""
        shape = self.describe()
        return WorkerRecord(
            worker_id=self.worker_id,
            host=socket.gethostname(),
            pid=os.getpid(),
            kind=self.kind,
            orchestrations=shape.orchestrations,
            activities=shape.activities,
            entities=shape.entities,
            slots=shape.slots,
            busy=shape.busy,
            started_at=self.started_at,
            last_seen=now,
            expires_at=now + timedelta(seconds=self.ttl),
            version=shape.version,
        )

    async def start(self) -> None:
        """Beat once (so the worker is listed as soon as it runs), then in the background."""
        if self.store is None or self._task is not None:
            return
        await self.beat()
        self._task = asyncio.create_task(self._loop(), name="worker-heartbeat")

    async def beat(self) -> None:
        """One upsert; a failure is logged (once per streak) and retried at the next beat."""
        if self.store is None:
            return
        try:
            await self.store.heartbeat_worker(self.record(_now()))
        except Exception as exc:
            if not self._failing:
                log.warning("worker %s: heartbeat failed (%s); retrying", self.worker_id, exc)
            self._failing = True
        else:
            if self._failing:
                log.info("worker %s: heartbeat recorded again", self.worker_id)
            self._failing = False

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.every)
            await self.beat()

    async def stop(self) -> None:
        """Stop beating and delete the row (a clean stop: the worker leaves the list now)."""
        task, self._task = self._task, None
        if task is None or self.store is None:
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        try:
            await self.store.remove_worker(self.worker_id)
        except Exception as exc:
            log.warning(
                "worker %s: could not remove itself from the registry (%s); "
                "its row expires in %s s",
                self.worker_id,
                exc,
                self.ttl,
            )
