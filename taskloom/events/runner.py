"""The consumer runner: asynchronous projections and subscriptions follow the log.

One :class:`ConsumerRunner` per process runs every projection and subscription of the
app. Each consumer's partitions are leased (fenced, like episodes) and spread over the
processes that run the app: every ``lease_ttl / 3`` seconds a runner renews its leases,
counts the live owners and takes or gives back partitions to hold its fair share. A
process that dies loses its partitions when their leases lapse.

Each round, every consumer (concurrently: they are independent) reads the next batch of
each of its held partitions in one query (a partition's streams only), then per
partition:

- **projection**: applies the batch in one transaction fenced on the lease, the view
  writes and the new checkpoint together (inline projections too, to catch up on events
  appended by stores that do not know them);
- **subscription**: calls the handler for each event in order, with a client and an
  event store whose writes are buffered (:mod:`taskloom.events.effects`), then commits
  the buffered writes of the batch with the checkpoint.

A handler that raises stops its partition at that event: the events before it are
committed, the failure is recorded (attempts survive a restart) and the event is tried
again after ``backoff * 2**(attempts-1)`` seconds (at most ``max_backoff``) on the
runner's clock, virtual under ``TestEnv``. After ``max_attempts`` it is parked with the
error and the partition goes on. Parked events whose replay was asked for are delivered
again by the runner holding their partition.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import math
import os
import socket
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from taskloom.client import AsyncClient
from taskloom.clock import Clock, SystemClock
from taskloom.events.codec import decode
from taskloom.events.effects import Effects, call_handler
from taskloom.events.projection import ProjectionSpec, apply_batch
from taskloom.events.subscription import SubscriptionSpec
from taskloom.storage.base import LOG, SUBSCRIPTIONS
from taskloom.storage.events_base import (
    REPLAY,
    EventLogStore,
    EventTx,
    PartitionLease,
    StoredEvent,
    stream_bucket,
    view_name,
)

if TYPE_CHECKING:
    from taskloom.app import App
    from taskloom.storage.base import Store

__all__ = ["ConsumerRunner"]

log = logging.getLogger("taskloom.events")

Spec = ProjectionSpec | SubscriptionSpec


def _error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


class ConsumerRunner:
    """Runs one app's projections and subscriptions (see the module docstring)."""

    def __init__(
        self,
        app: App,
        store: Store,
        client: AsyncClient,
        *,
        clock: Clock | None = None,
        owner: str | None = None,
        poll_interval: float = 1.0,
        lease_ttl: float = 30.0,
        batch: int = 200,
        backoff: float = 1.0,
        max_backoff: float = 60.0,
    ) -> None:
        assert isinstance(store, EventLogStore)
        self.log: EventLogStore = store
        self.store = store
        self.client = client
        self.converter = app.converter
        self.clock: Clock = clock or SystemClock()
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.poll_interval = poll_interval
        self.lease_ttl = lease_ttl
        self.batch = batch
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.specs: dict[str, Spec] = {p.consumer: p for p in app.projections.values()}
        self.specs.update({s.consumer: s for s in app.subscriptions.values()})
        self._leases: dict[str, dict[int, PartitionLease]] = {c: {} for c in self.specs}
        self._retry_at: dict[tuple[str, int], datetime] = {}
        self._balanced_at = -math.inf
        self._replays_at = -math.inf
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._busy = 0

    # -- lifecycle ------------------------------------------------------------------

    async def start(self) -> None:
        if not self.specs:
            return
        now = self.clock.now()
        head = await self.log.log_head()
        for consumer, spec in self.specs.items():
            if isinstance(spec, ProjectionSpec):
                await self.log.consumer_ensure(consumer, 1, 0, now)
                if spec.indexes:
                    gen = await self.log.view_generation(spec.name)
                    await self.log.view_index(view_name(spec.name, gen), spec.indexes)
            else:
                start = head if spec.start == "end" else 0
                await self.log.consumer_ensure(consumer, spec.partitions, start, now)
        self.store.add_listener(self.wake, LOG)
        self.store.add_listener(self._reset_seen, SUBSCRIPTIONS)
        self._task = asyncio.create_task(self._loop(), name="consumers")
        log.info("consumer runner %s running %s", self.owner, ", ".join(self.specs))

    async def stop(self) -> None:
        if self._stopping:
            return
        self._stopping = True
        self.store.remove_listener(self.wake)
        self.store.remove_listener(self._reset_seen)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(Exception):
            for consumer, held in self._leases.items():
                await self.log.consumer_release(consumer, list(held.values()))

    def wake(self) -> None:
        self._wake.set()

    def _reset_seen(self) -> None:
        """A consumer was reset (its leases dropped): lease again now, not at the next
        balance."""
        self._balanced_at = -math.inf
        self._wake.set()

    @property
    def in_flight(self) -> int:
        """1 while the runner is handling a batch (``TestEnv`` waits for it)."""
        return self._busy

    def next_due(self) -> datetime | None:
        """When the earliest failed event is tried again (virtual time skips to it)."""
        return min(self._retry_at.values(), default=None)

    async def caught_up(self) -> bool:
        """Every consumer's checkpoint at the head, nothing waiting for a retry or a
        replay (``TestEnv.wait_for_consumers``)."""
        head = await self.log.log_head()
        for state in await self.log.consumer_states():
            if state.consumer not in self.specs:
                continue
            if state.failed_position is not None:
                return False
            part = (state.partition, state.partitions)
            if state.position < head and await self.log.read_log(state.position, 1, partition=part):
                return False
        for consumer in self.specs:
            if any(p.attempts == REPLAY for p in await self.log.consumer_parked(consumer)):
                return False
        return True

    # -- the loop -------------------------------------------------------------------

    async def _loop(self) -> None:
        while not self._stopping:
            self._wake.clear()
            progressed = False
            try:
                if time.monotonic() - self._balanced_at >= self.lease_ttl / 3:
                    await self._balance()
                replays = time.monotonic() - self._replays_at >= self.poll_interval
                if replays:
                    self._replays_at = time.monotonic()
                self._busy = 1
                # Consumers are independent: each takes its round at once, so a
                # subscription's handler does not wait for a projection's commit.
                rounds = [self._round(c, held, replays) for c, held in self._leases.items()]
                for outcome in await asyncio.gather(*rounds, return_exceptions=True):
                    if isinstance(outcome, KeyboardInterrupt | SystemExit):
                        raise outcome
                    if isinstance(outcome, BaseException):
                        log.error(
                            "consumer runner %s failed a round; retrying",
                            self.owner,
                            exc_info=outcome,
                        )
                    else:
                        progressed |= outcome
            except Exception:
                log.exception("consumer runner %s failed a round; retrying", self.owner)
            finally:
                self._busy = 0
            if not progressed:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.poll_interval)

    async def _round(self, consumer: str, held: dict[int, PartitionLease], replays: bool) -> bool:
        """One consumer's round: every held partition's next batch, read in one go."""
        progressed = False
        head, batches = await self._read_held(held, replays)
        for partition in list(held):
            if replays:
                progressed |= await self._replay(consumer, partition)
            progressed |= await self._work(consumer, partition, head, batches)
        return progressed

    async def _balance(self) -> None:
        """Renew what we hold, then take or give back partitions to hold a fair share."""
        self._balanced_at = time.monotonic()
        now = self.clock.now()
        for consumer, held in self._leases.items():
            kept = await self.log.consumer_renew(consumer, list(held.values()), now, self.lease_ttl)
            for partition in [p for p in held if p not in kept]:
                log.warning("consumer %s lost partition %d to another owner", consumer, partition)
                del held[partition]
            states = await self.log.consumer_states(consumer)
            if not states:
                continue
            owners = {
                s.lease_owner
                for s in states
                if s.lease_owner and s.lease_expires_at is not None and s.lease_expires_at > now
            } | {self.owner}
            share = math.ceil(states[0].partitions / len(owners))
            if len(held) > share:
                extra = sorted(held)[share:]
                await self.log.consumer_release(consumer, [held.pop(p) for p in extra])
            elif len(held) < share:
                for lease in await self.log.consumer_lease(
                    consumer, self.owner, now, self.lease_ttl, share - len(held)
                ):
                    held[lease.partition] = lease

    def _waiting(self, lease: PartitionLease, events: Sequence[StoredEvent]) -> bool:
        due = self._retry_at.get((lease.consumer, lease.partition))
        if due is None:
            return False
        if lease.failed_position == events[0].position and self.clock.now() < due:
            return True
        del self._retry_at[(lease.consumer, lease.partition)]
        return False

    async def _read_held(
        self, held: dict[int, PartitionLease], advance: bool
    ) -> tuple[int, dict[tuple[int, int], list[StoredEvent]]]:
        """The head (when idle partitions may advance to it; else 0), then the next batch
        of every held partition in one read, keyed by (partition, position read after).
        Every position up to a head read first is committed and visible to the read that
        follows (positions are assigned in commit order)."""
        head = await self.log.log_head() if advance and held else 0
        if not held:
            return head, {}
        count = next(iter(held.values())).partitions
        after = {p: lease.position for p, lease in held.items()}
        found = await self.log.read_partitions(after, count, self.batch)
        return head, {(p, after[p]): events for p, events in found.items()}

    async def _work(
        self,
        consumer: str,
        partition: int,
        head: int,
        batches: dict[tuple[int, int], list[StoredEvent]],
    ) -> bool:
        lease = self._leases[consumer].get(partition)
        if lease is None:  # lost by a replay's commit
            return False
        spec = self.specs[consumer]
        events = batches.get((partition, lease.position))
        if events is None:  # the checkpoint moved since the read (a replay's commit)
            part = (partition, lease.partitions)
            events = await self.log.read_log(lease.position, self.batch, partition=part)
        if not events:
            if head > lease.position:
                # A partition with nothing new moves to the head now and then, so its
                # lag reads true; rarely, so idle partitions do not write on every append.
                await self._advance(lease, head)
            return False
        if self._waiting(lease, events):
            return False
        if isinstance(spec, ProjectionSpec):
            done, failed, error = await self._project(spec, lease, events)
        else:
            done, failed, error = await self._deliver(spec, lease, events)
        if done is None:
            return False
        if failed is not None and error is not None:
            # The batch's commit cleared the failure on the lease; the attempts made on
            # this event before it count (they are the lease's as read before the batch).
            current = self._leases[consumer].get(partition)
            if current is not None and lease.failed_position == failed.position:
                current = dataclasses.replace(
                    current, failed_position=lease.failed_position, attempts=lease.attempts
                )
            await self._failed(spec, current, failed, error)
        return True

    async def _advance(self, lease: PartitionLease, head: int) -> None:
        position = await self.log.consumer_apply(lease, self.clock.now(), lambda tx: head)
        if position is None:
            self._lost(lease)
        else:
            self._commit(lease, position)

    def _commit(self, lease: PartitionLease, position: int) -> None:
        held = self._leases[lease.consumer]
        if lease.partition in held:
            held[lease.partition] = dataclasses.replace(
                lease, position=position, failed_position=None, attempts=0
            )

    def _lost(self, lease: PartitionLease) -> None:
        log.warning("consumer %s lost partition %d", lease.consumer, lease.partition)
        self._leases[lease.consumer].pop(lease.partition, None)
        self._balanced_at = -math.inf  # a reset or a rebuild freed it: lease again now

    # -- projections ----------------------------------------------------------------

    async def _project(
        self, spec: ProjectionSpec, lease: PartitionLease, events: list[StoredEvent]
    ) -> tuple[int | None, StoredEvent | None, str | None]:
        outcome: list[Any] = [None, None]

        def hook(tx: EventTx) -> int:
            # Inline appends may have moved the checkpoint since we read the batch.
            checkpoint = tx.checkpoint(spec.consumer) or 0
            todo = [e for e in events if e.position > checkpoint]
            physical = view_name(spec.name, tx.generation(spec.name))
            done, failed, error = apply_batch(spec, tx, physical, todo, self.converter)
            outcome[:] = [failed, error]
            if failed is None:
                return max(checkpoint, events[-1].position)
            return max(checkpoint, done)

        position = await self.log.consumer_apply(lease, self.clock.now(), hook)
        if position is None:
            self._lost(lease)
            return None, None, None
        self._commit(lease, position)
        return position, outcome[0], outcome[1]

    # -- subscriptions --------------------------------------------------------------

    async def _call(self, spec: SubscriptionSpec, event: StoredEvent, effects: Effects) -> None:
        recorded = decode(event, self.converter)
        await call_handler(
            spec.handler, spec.is_async, spec.wants_events, recorded, self.client, effects
        )

    async def _deliver(
        self, spec: SubscriptionSpec, lease: PartitionLease, events: list[StoredEvent]
    ) -> tuple[int | None, StoredEvent | None, str | None]:
        handled: list[tuple[StoredEvent, Effects]] = []
        failed: StoredEvent | None = None
        error: str | None = None
        for event in events:
            effects = Effects()
            if spec.types is None or event.type in spec.types:
                try:
                    await self._call(spec, event, effects)
                except Exception as exc:
                    failed, error = event, _error(exc)
                    break
            handled.append((event, effects))
        if handled:
            try:
                await self._settle(lease, handled)
            except _Lost:
                return None, None, None
            except Exception as exc:  # an effect was refused: find which, one at a time
                return await self._settle_singly(lease, handled, exc)
        return (handled[-1][0].position if handled else lease.position), failed, error

    async def _settle(
        self, lease: PartitionLease, handled: list[tuple[StoredEvent, Effects]]
    ) -> None:
        position = handled[-1][0].position

        def hook(tx: EventTx) -> int:
            for _, effects in handled:
                effects.apply(tx)
            return position

        if await self.log.consumer_apply(lease, self.clock.now(), hook) is None:
            self._lost(lease)
            raise _Lost
        self._commit(lease, position)

    async def _settle_singly(
        self, lease: PartitionLease, handled: list[tuple[StoredEvent, Effects]], first: Exception
    ) -> tuple[int | None, StoredEvent | None, str | None]:
        for event, effects in handled:
            lease = self._leases[lease.consumer].get(lease.partition) or lease
            try:
                await self._settle(lease, [(event, effects)])
            except _Lost:
                return None, None, None
            except Exception as exc:
                return lease.position, event, f"its writes were refused: {_error(exc)}"
        return lease.position, None, None

    # -- failures and replays -------------------------------------------------------

    async def _failed(
        self, spec: Spec, lease: PartitionLease | None, event: StoredEvent, error: str
    ) -> None:
        if lease is None:
            return
        attempts = (lease.attempts if lease.failed_position == event.position else 0) + 1
        now = self.clock.now()
        where = f"{lease.consumer} on event {event.position} ({event.type} of {event.stream_id!r})"
        if attempts >= spec.max_attempts:
            log.error("%s failed %d times; parked it: %s", where, attempts, error)

            def park(tx: EventTx) -> int:
                tx.park(lease.consumer, event, error, attempts)
                return event.position

            position = await self.log.consumer_apply(lease, now, park)
            if position is None:
                self._lost(lease)
            else:
                self._commit(lease, position)
            self._retry_at.pop((lease.consumer, lease.partition), None)
            return
        delay = min(self.backoff * 2 ** (attempts - 1), self.max_backoff)
        log.warning(
            "%s failed (attempt %d of %d), retrying in %g s: %s",
            where,
            attempts,
            spec.max_attempts,
            delay,
            error,
        )
        if await self.log.consumer_fail(lease, event.position, attempts, error, now):
            self._leases[lease.consumer][lease.partition] = dataclasses.replace(
                lease, failed_position=event.position, attempts=attempts
            )
            self._retry_at[(lease.consumer, lease.partition)] = now + timedelta(seconds=delay)

    async def _replay(self, consumer: str, partition: int) -> bool:
        lease = self._leases[consumer][partition]
        wanted = [
            p
            for p in await self.log.consumer_parked(consumer)
            if p.attempts == REPLAY and stream_bucket(p.stream_id) % lease.partitions == partition
        ]
        spec = self.specs[consumer]
        for parked in wanted:
            found = await self.log.read_log(parked.position - 1, 1)
            event = found[0] if found and found[0].position == parked.position else None
            effects = Effects()
            error: str | None = None
            if event is None:
                error = "the event is no longer in the log (purged or truncated)"
            elif isinstance(spec, SubscriptionSpec):
                try:
                    await self._call(spec, event, effects)
                except Exception as exc:
                    error = _error(exc)

            hook = self._settle_replay(spec, lease, parked.position, event, effects, error)
            if await self.log.consumer_apply(lease, self.clock.now(), hook) is None:
                self._lost(lease)
                return True
        return bool(wanted)

    def _settle_replay(
        self,
        spec: Spec,
        lease: PartitionLease,
        position: int,
        event: StoredEvent | None,
        effects: Effects,
        error: str | None,
    ) -> Callable[[EventTx], int]:
        """The transaction of one replayed event: unparked with its effects on success,
        parked again with the new error otherwise; the checkpoint stays."""

        def hook(tx: EventTx) -> int:
            problem = error
            if event is not None and problem is None and isinstance(spec, ProjectionSpec):
                physical = view_name(spec.name, tx.generation(spec.name))
                _, _, problem = apply_batch(spec, tx, physical, [event], self.converter)
            if event is not None and problem is not None:
                tx.park(lease.consumer, event, problem, 1)
                return lease.position
            if event is not None:
                effects.apply(tx)
            tx.unpark(lease.consumer, position)
            return lease.position

        return hook


class _Lost(Exception):
    """The partition's lease was taken over; its batch was not committed."""
