"""How clients wait for instances: one watcher per client checks every awaited instance
with one status query per wake-up.

A client that waits for 2,000 instances at once (``asyncio.gather`` over
``wait_for_completion``) must not send 2,000 queries each time the store says something
changed. The watcher keeps the awaited ids and listens for status changes
(:meth:`Store.add_status_listener`). When the store's own writes changed some statuses
(a worker sharing the client's store object), it says which, and the next check reads
only those of them that are awaited and whose new status ends a wait (a start that
made an instance Running wakes nobody waiting for its completion), plus the ids awaited
since the last check. When a
change came from elsewhere (doorbells of other processes on SQLite, ``LISTEN/NOTIFY`` on
PostgreSQL, another store object on the same file), it reads all awaited statuses in one
:meth:`Store.get_statuses` call. Either way it resolves the waiters whose condition holds,
reading the full record only for those. Wake-ups that arrive while a check runs fold
into one more check.

Without a wake-up it checks again after ``fallback`` seconds, in case a notification was
lost (a process outside the reach of doorbells, a LISTEN connection being re-made); under
virtual time (an idle hook, as :class:`taskloom.testing.TestEnv` sets) it backs off from
5 ms instead, giving the hook its chance to skip the clock once the worker is idle.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass, field

from taskloom.errors import InstanceNotFoundError
from taskloom.models import Status
from taskloom.storage.base import InstanceRecord, Store

IdleHook = Callable[[], Awaitable[bool]]

#: Seconds between checks when no wake-up came (a safety net, not the hot path).
FALLBACK = 1.0
#: Up to this many awaited instances, a check reads their records directly.
_DIRECT = 2


@dataclass
class _Waiter:
    done: Callable[[Status], bool]
    future: asyncio.Future[InstanceRecord]
    last: Status | None = field(default=None)


class _Expired(Exception):
    """A wait's timeout passed (turned into a TimeoutError naming the instance)."""


def _expire(future: asyncio.Future[InstanceRecord]) -> None:
    if not future.done():
        future.set_exception(_Expired())


class InstanceWatcher:
    """Resolves waits on instances of one store (see the module docstring)."""

    def __init__(
        self, store: Store, idle_hook: Callable[[], IdleHook | None], fallback: float = FALLBACK
    ) -> None:
        self.store = store
        self._idle_hook = idle_hook
        self._fallback = fallback
        self._waiters: dict[str, list[_Waiter]] = {}
        self._changed = asyncio.Event()
        # The ids to look at in the next check; ``_all`` when any status may have changed.
        self._dirty: set[str] = set()
        self._all = True
        self._task: asyncio.Task[None] | None = None
        #: Status checks made (tests and diagnostics).
        self.checks = 0

    async def wait(
        self, instance_id: str, done: Callable[[Status], bool], timeout: float, what: str
    ) -> InstanceRecord:
        """The instance's record once ``done(status)`` holds; ``TimeoutError`` (naming the
        last status seen) after ``timeout`` seconds; ``InstanceNotFoundError`` if the
        instance does not exist."""
        loop = asyncio.get_running_loop()
        waiter = _Waiter(done, loop.create_future())
        self._waiters.setdefault(instance_id, []).append(waiter)
        self._dirty.add(instance_id)
        self._changed.set()
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._pump(), name="taskloom-wait")
        # A timer on the waiter's own future rather than wait_for(shield(...)), which
        # costs a task and two futures per wait (thousands of waits are normal).
        timer = loop.call_later(timeout, _expire, waiter.future)
        try:
            return await waiter.future
        except _Expired:
            status = "unknown" if waiter.last is None else waiter.last.value
            raise TimeoutError(
                f"instance {instance_id!r} did not {what} within {timeout} s (status {status})"
            ) from None
        finally:
            timer.cancel()
            self._discard(instance_id, waiter)

    def _discard(self, instance_id: str, waiter: _Waiter) -> None:
        waiters = self._waiters.get(instance_id)
        if waiters is not None and waiter in waiters:
            waiters.remove(waiter)
            if not waiters:
                del self._waiters[instance_id]
        if not waiter.future.done():
            waiter.future.cancel()

    def _status_changed(self, changed: Collection[str] | None) -> None:
        if changed is None:
            self._all = True
        elif isinstance(changed, Mapping):
            # The new statuses are known: look again only where a waiter would be done.
            wanted = False
            for iid, status in changed.items():
                waiters = self._waiters.get(iid, ())
                for waiter in waiters:
                    waiter.last = status
                if any(waiter.done(status) for waiter in waiters):
                    self._dirty.add(iid)
                    wanted = True
            if not wanted:
                return
        else:
            self._dirty.update(changed)
        self._changed.set()

    async def _pump(self) -> None:
        self._all = True  # changes made while nobody listened are unknown
        self.store.add_status_listener(self._status_changed)
        delay = 0.005
        try:
            while self._waiters:
                self._changed.clear()
                try:
                    await self._check()
                except Exception as exc:  # the store failed: every waiter hears of it
                    for waiters in list(self._waiters.values()):
                        for waiter in waiters:
                            if not waiter.future.done():
                                waiter.future.set_exception(exc)
                    return
                if not self._waiters:
                    return
                hook = self._idle_hook()
                if hook is None:
                    timeout = self._fallback
                elif await hook():
                    delay = 0.005
                    self._all = True
                    continue
                else:
                    timeout, delay = delay, min(delay * 2, 0.25)
                try:
                    await asyncio.wait_for(self._changed.wait(), timeout)
                except TimeoutError:
                    self._all = True  # no wake-up: look at everything, in case one was lost
        finally:
            self.store.remove_status_listener(self._status_changed)

    def _not_found(self, iid: str) -> InstanceNotFoundError:
        return InstanceNotFoundError(f"no instance {iid!r} in hub {self.store.hub!r}")

    async def _check(self) -> None:
        if self._all:
            ids = list(self._waiters)
        else:
            ids = [iid for iid in self._dirty if iid in self._waiters]
        self._all = False
        self._dirty.clear()
        if not ids:
            return
        self.checks += 1
        if len(ids) <= _DIRECT:
            # A few waiters: read their records at once (one round trip, not two).
            records = {iid: await self.store.get_instance(iid) for iid in ids}
            statuses = {iid: r.status for iid, r in records.items() if r is not None}
        else:
            records = {}
            statuses = await self.store.get_statuses(ids)
        # Most awaited instances are unchanged at any one check: only those resolved
        # here (ready, or gone) are looked at again below.
        settled: list[str] = []
        ready: list[str] = []
        for iid in ids:
            waiters = self._waiters.get(iid)
            if not waiters:
                continue
            status = statuses.get(iid)
            hit = False
            for waiter in waiters:
                waiter.last = status
                if status is None:
                    if not waiter.future.done():
                        waiter.future.set_exception(self._not_found(iid))
                elif not hit and waiter.done(status):
                    hit = True
            if status is None:
                settled.append(iid)
            elif hit:
                ready.append(iid)
        for iid in ready:
            record = records[iid] if iid in records else await self.store.get_instance(iid)
            for waiter in self._waiters.get(iid, ()):
                if waiter.future.done():
                    continue
                if record is None:
                    waiter.future.set_exception(self._not_found(iid))
                elif waiter.done(record.status):
                    waiter.future.set_result(record)
        # Resolved waiters leave at once: the pump must not skip virtual time for a wait
        # that is over but whose caller has not resumed yet.
        for iid in (*settled, *ready):
            pending = [w for w in self._waiters.get(iid, ()) if not w.future.done()]
            if pending:
                self._waiters[iid] = pending
            else:
                self._waiters.pop(iid, None)
