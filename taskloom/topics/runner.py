"""The topic runner: fans a topic's events out to its subscriptions and delivers them.

One :class:`TopicRunner` per process serves the app's event triggers and, where asked
(``taskloom serve``), the hub's webhook subscriptions. Per subscription it

1. holds the **fan-out consumer** when no other process does (a one-partition log
   consumer, leased and fenced like any other): it reads the topic's new events, keeps
   those that pass the subscription's filter and, in one transaction with its new
   checkpoint, adds a delivery row for each, due at once;
2. **delivers** due rows, which any process may lease (``SKIP LOCKED`` on PostgreSQL):
   an event trigger's handler runs with a client and an event store whose writes are
   buffered and commit with the acknowledgement (the row's deletion); a webhook gets an
   HTTP POST. A failure sets the row's next attempt on Event Grid's schedule, judged on
   this runner's clock (virtual under ``TestEnv``); after the last attempt, or once the
   event's time to live is over, the row becomes a dead letter. A failing event waits for
   its retry without holding up the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import math
import os
import socket
import time
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

from taskloom.client import AsyncClient
from taskloom.clock import Clock, SystemClock
from taskloom.cloudevents.event import CloudEvent
from taskloom.events.effects import Effects, call_handler
from taskloom.storage.base import AT_ONCE, DELIVERIES, LOG, SUBSCRIPTIONS
from taskloom.storage.events_base import EventLogStore, EventTx, PartitionLease
from taskloom.storage.topics_base import (
    Delivery,
    SubscriptionRecord,
    TopicStore,
    fanout_consumer,
    topic_stream,
)
from taskloom.topics.filters import EventFilter
from taskloom.topics.policy import DeadLetterReason, Outcome, RetryPolicy
from taskloom.topics.publish import decode_event
from taskloom.topics.specs import EventTriggerSpec, WebhookSpec

if TYPE_CHECKING:
    from taskloom.app import App
    from taskloom.storage.base import Store

__all__ = ["TopicRunner", "WebhookSender"]

log = logging.getLogger("taskloom.topics")

#: How long a leased trigger delivery stays hidden from other hosts.
TRIGGER_VISIBILITY = 300.0
#: A webhook delivery stays hidden for the endpoint's timeout plus this many seconds.
WEBHOOK_MARGIN = 10.0
#: How many requests a runner has in flight to one webhook at a time.
WEBHOOK_PARALLEL = 16
#: The longest an idle subscription worker sleeps without a wake-up (seconds).
IDLE_POLL = 5.0
#: How often the subscriptions are reloaded even without a wake-up of kind ``u``.
LIST_EVERY = 30.0


class WebhookSender(Protocol):
    """Posts a batch of events to a webhook and says how it went."""

    async def send(
        self,
        spec: WebhookSpec,
        subscription: str,
        topic: str,
        events: Sequence[CloudEvent],
        *,
        attempt: int = 1,
    ) -> Outcome: ...

    async def aclose(self) -> None: ...


@dataclasses.dataclass
class _Sub:
    name: str
    topic: str
    filter: EventFilter
    retry: RetryPolicy
    trigger: EventTriggerSpec | None = None
    webhook: WebhookSpec | None = None
    lease: PartitionLease | None = None


def _error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:1000]


class TopicRunner:
    """Runs one app's event triggers and the hub's webhooks (see the module docstring)."""

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
        webhooks: bool = False,
        sender: WebhookSender | None = None,
    ) -> None:
        assert isinstance(store, TopicStore) and isinstance(store, EventLogStore)
        self.topics: TopicStore = store
        self.log: EventLogStore = store
        self.store = store
        self.client = client
        self.clock: Clock = clock or SystemClock()
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.poll_interval = poll_interval
        self.lease_ttl = lease_ttl
        self.batch = batch
        self.webhooks = webhooks
        self._sender = sender
        self.triggers: dict[str, EventTriggerSpec] = dict(app.event_triggers)
        self._subs: dict[str, _Sub] = {}
        self._listed_at: float | None = None
        self._balanced_at = -math.inf
        self._workers: dict[str, asyncio.Task[None]] = {}
        self._sub_wake: dict[str, asyncio.Event] = {}
        self._due: dict[str, datetime | None] = {}
        # Per subscription: the highest position leased here, and when the last lease
        # from the start was (see _lease).
        self._cursor: dict[str, int] = {}
        self._full_at: dict[str, float] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._busy = 0

    # -- lifecycle ------------------------------------------------------------------

    async def start(self) -> None:
        now = self.clock.now()
        head = await self.log.log_head()
        for spec in self.triggers.values():
            record = SubscriptionRecord(
                spec.name, spec.topic, "trigger", spec.spec_json(), now, now
            )
            await self.topics.subscription_put(record)
            start = head if spec.start == "end" else 0
            await self.log.consumer_ensure(fanout_consumer(spec.name), 1, start, now)
        await self._list()
        await self._balance()
        self.store.add_listener(self.wake, LOG + DELIVERIES)
        self.store.add_listener(self._changed, SUBSCRIPTIONS)
        self._task = asyncio.create_task(self._loop(), name="topics")
        log.info("topic runner %s serving %s", self.owner, ", ".join(self._subs) or "nothing yet")

    async def stop(self) -> None:
        if self._stopping:
            return
        self._stopping = True
        self.store.remove_listener(self.wake)
        self.store.remove_listener(self._changed)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        workers = list(self._workers.values())
        for worker in workers:
            worker.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        with contextlib.suppress(Exception):
            for sub in self._subs.values():
                if sub.lease is not None:
                    await self.log.consumer_release(sub.lease.consumer, [sub.lease])
        if self._sender is not None:
            await self._sender.aclose()

    def wake(self) -> None:
        self._wake.set()
        for event in self._sub_wake.values():
            event.set()

    @property
    def in_flight(self) -> int:
        """Deliveries being made now (``TestEnv`` waits for them)."""
        return self._busy

    def next_due(self) -> datetime | None:
        """When the earliest delivery waiting for a retry is due (virtual time skips)."""
        return min((due for due in self._due.values() if due is not None), default=None)

    async def caught_up(self) -> bool:
        """Every subscription fanned out to its topic's end and no delivery waiting,
        retries included (dead letters do not count), with nothing appended meanwhile:
        the checks are separate reads, so a fan-out or a handler's publish between them
        shows as a moved log head."""
        head = await self.log.log_head()
        for sub in self._subs.values():
            states = await self.log.consumer_states(fanout_consumer(sub.name))
            position = min((s.position for s in states), default=0)
            if await self.log.read_log(position, 1, stream=topic_stream(sub.topic)):
                return False
        names = list(self._subs)
        if names and await self.topics.delivery_next_due(names) is not None:
            return False
        return await self.log.log_head() == head

    # -- the loop -------------------------------------------------------------------

    async def _loop(self) -> None:
        """The controller: reloads subscriptions, holds fan-out leases, and keeps one
        worker task per subscription (so a slow webhook never holds up the others)."""
        while not self._stopping:
            self._wake.clear()
            try:
                clock = time.monotonic()
                if self._listed_at is None or clock - self._listed_at >= LIST_EVERY:
                    await self._list()
                unleased = any(sub.lease is None for sub in self._subs.values())
                every = self.poll_interval if unleased else self.lease_ttl / 3
                if clock - self._balanced_at >= every:
                    await self._balance()
                self._sync_workers()
            except Exception:
                log.exception("topic runner %s failed a round; retrying", self.owner)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll_interval)

    def _sync_workers(self) -> None:
        for name in self._subs:
            if name not in self._workers:
                self._sub_wake[name] = asyncio.Event()
                self._sub_wake[name].set()
                self._workers[name] = asyncio.create_task(self._work(name), name=f"topic:{name}")
        for name in [n for n in self._workers if n not in self._subs]:
            self._workers.pop(name).cancel()
            self._sub_wake.pop(name, None)
            self._due.pop(name, None)

    async def _work(self, name: str) -> None:
        """One subscription's worker: fan out, deliver, until nothing is left; then wait
        for a wake-up or its next retry."""
        wake = self._sub_wake[name]
        while not self._stopping:
            wake.clear()
            sub = self._subs.get(name)
            if sub is None:
                return
            progressed = False
            try:
                progressed = await self._fan_out(sub)
                progressed |= await self._deliver(sub)
                self._due[name] = await self.topics.delivery_next_due([name])
            except Exception:
                log.exception("topic subscription %s failed a round; retrying", name)
            if not progressed:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), self._sleep_for(self._due.get(name)))

    def _sleep_for(self, due: datetime | None) -> float:
        """How long an idle subscription worker waits for a wake-up: until its next row
        is due, and at most IDLE_POLL (wake-ups reach it from every process; the poll
        only catches rows another host's lapsed lease gave back)."""
        idle = max(self.poll_interval, IDLE_POLL)
        if due is None:
            return idle
        ahead = (due - self.clock.now()).total_seconds()
        return max(0.0, min(idle, ahead))

    def _changed(self) -> None:
        """A subscription was created, changed or deleted, or a consumer reset (a replay
        adds rows below the cursors), here or in another process."""
        self._cursor.clear()
        self._listed_at = None
        self._balanced_at = -math.inf
        self._wake.set()

    async def _list(self) -> None:
        """Reload the subscriptions this runner serves (webhooks come and go)."""
        self._listed_at = time.monotonic()
        wanted: dict[str, _Sub] = {}
        for record in await self.topics.subscription_list():
            if record.kind == "trigger" and record.name in self.triggers:
                spec = self.triggers[record.name]
                wanted[record.name] = _Sub(spec.name, spec.topic, spec.filter, spec.retry, spec)
            elif record.kind == "webhook" and self.webhooks:
                try:
                    hook = WebhookSpec.from_json(json.loads(record.spec))
                except ValueError as exc:
                    log.error("webhook subscription %s is unreadable: %s", record.name, exc)
                    continue
                wanted[record.name] = _Sub(
                    record.name, record.topic, hook.filter, hook.retry, webhook=hook
                )
        for name, sub in wanted.items():
            old = self._subs.get(name)
            if old is not None:  # workers hold the object: change it in place
                old.topic, old.filter, old.retry = sub.topic, sub.filter, sub.retry
                old.trigger, old.webhook = sub.trigger, sub.webhook
                wanted[name] = old
        for name, old in self._subs.items():
            if name not in wanted and old.lease is not None:
                with contextlib.suppress(Exception):
                    await self.log.consumer_release(old.lease.consumer, [old.lease])
        self._subs = wanted

    async def _balance(self) -> None:
        """Renew the fan-out leases we hold; take the ones nobody holds."""
        self._balanced_at = time.monotonic()
        now = self.clock.now()
        for sub in list(self._subs.values()):
            consumer = fanout_consumer(sub.name)
            if sub.lease is not None:
                kept = await self.log.consumer_renew(consumer, [sub.lease], now, self.lease_ttl)
                if not kept:
                    log.warning("topic subscription %s lost its fan-out lease", sub.name)
                    sub.lease = None
            if sub.lease is None:
                got = await self.log.consumer_lease(consumer, self.owner, now, self.lease_ttl, 1)
                sub.lease = got[0] if got else None

    # -- fan-out ----------------------------------------------------------------------

    async def _fan_out(self, sub: _Sub) -> bool:
        lease = sub.lease
        if lease is None:
            return False
        events = await self.log.read_log(lease.position, self.batch, stream=topic_stream(sub.topic))
        if not events:
            return False
        matching = []
        for event in events:
            try:
                body = json.loads(event.data)
            except ValueError:
                log.error("topic %s: event at %d is not JSON; skipped", sub.topic, event.position)
                continue
            if sub.filter.matches(body):
                matching.append(event)
        last = events[-1].position

        def hook(tx: EventTx) -> int:
            tx.schedule_deliveries(sub.name, sub.topic, matching, AT_ONCE)
            return last

        position = await self.log.consumer_apply(lease, self.clock.now(), hook)
        if position is None:
            log.warning("topic subscription %s lost its fan-out lease", sub.name)
            if sub.lease is lease:  # not one the controller has taken since
                sub.lease = None
            self._balanced_at = -math.inf
            self._wake.set()
            return False
        if sub.lease is lease:
            sub.lease = dataclasses.replace(lease, position=position)
        return True

    # -- delivery ---------------------------------------------------------------------

    async def _lease(self, sub: _Sub, visibility: float, limit: int) -> list[Delivery]:
        """Lease due rows: above the last position this runner leased (fresh fan-out),
        or from the start when a retry may be due, a replay may have added rows below, or
        at most once per poll interval (rows other hosts gave back)."""
        now = self.clock.now()
        cursor = self._cursor.get(sub.name, 0)
        due = self._due.get(sub.name)
        stale = time.monotonic() - self._full_at.get(sub.name, -math.inf) >= self.poll_interval
        # Rows the fan-out adds are due at AT_ONCE and lie above the cursor; a row due at
        # a real time (a retry, a redrive) may lie below it.
        if cursor and (stale or (due is not None and AT_ONCE < due <= now)):
            cursor = 0
        if not cursor:
            self._full_at[sub.name] = time.monotonic()
        leased = await self.topics.delivery_lease(
            sub.name, self.owner, now, visibility, limit, after=cursor
        )
        if leased:
            self._cursor[sub.name] = max(cursor, max(d.position for d in leased))
        return leased

    async def _deliver(self, sub: _Sub) -> bool:
        if sub.trigger is not None:
            spec = sub.trigger
            leased = await self._lease(sub, TRIGGER_VISIBILITY, spec.concurrency)
            ready = [d for d in leased if await self._deliverable(sub, d)]
            self._busy += len(ready)
            try:
                results = await asyncio.gather(*(self._run_trigger(sub, spec, d) for d in ready))
                await self._ack(sub, [d for d in results if d is not None])
            finally:
                self._busy -= len(ready)
            return bool(leased)
        if sub.webhook is not None:
            hook = sub.webhook
            size = hook.max_events_per_batch
            leased = await self._lease(sub, hook.timeout + WEBHOOK_MARGIN, size * WEBHOOK_PARALLEL)
            ready = [d for d in leased if await self._deliverable(sub, d)]
            batches = [ready[i : i + size] for i in range(0, len(ready), size)]
            self._busy += len(ready)
            try:
                await asyncio.gather(*(self._run_webhook(sub, hook, b) for b in batches))
            finally:
                self._busy -= len(ready)
            return bool(leased)
        return False

    async def _deliverable(self, sub: _Sub, delivery: Delivery) -> bool:
        """False (and the row settled) for a purged event or one past its time to live."""
        now = self.clock.now()
        if delivery.event is None:
            log.warning("%s: event %d was purged; dropped", sub.name, delivery.position)
            await self.topics.delivery_settle(delivery, now)
            return False
        if now > sub.retry.expires_at(delivery.published_at):
            reason = DeadLetterReason.TIME_TO_LIVE_EXCEEDED
            outcome = delivery.last_outcome or "NotAttempted"
            await self.topics.delivery_dead_letter(delivery, reason, outcome, now)
            return False
        return True

    async def _ack(self, sub: _Sub, done: list[Delivery]) -> None:
        """Delete the rows of successful deliveries that wrote nothing, together."""
        if done and await self.topics.delivery_ack(done) < len(done):
            log.warning("%s lost some leases before acknowledging; delivered again", sub.name)

    async def _run_trigger(
        self, sub: _Sub, spec: EventTriggerSpec, delivery: Delivery
    ) -> Delivery | None:
        """Run the handler; a success without effects is returned for :meth:`_ack`, one
        with effects is settled here, in the transaction of its effects."""
        assert delivery.event is not None
        effects = Effects()
        try:
            event = decode_event(delivery.event)
            await call_handler(
                spec.handler, spec.is_async, spec.wants_events, event, self.client, effects
            )
        except Exception as exc:
            await self._failed(sub, delivery, Outcome.handler_error(), _error(exc))
            return None
        if not (effects.appends or effects.instances or effects.messages):
            return delivery
        try:
            settled = await self.topics.delivery_settle(delivery, self.clock.now(), effects.apply)
        except Exception as exc:  # an effect was refused (e.g. a wrong expected version)
            await self._failed(sub, delivery, Outcome.handler_error(), f"effects: {_error(exc)}")
            return None
        if not settled:
            log.warning(
                "%s lost the lease of event %d; it is delivered again", sub.name, delivery.position
            )
        return None

    async def _run_webhook(self, sub: _Sub, hook: WebhookSpec, batch: list[Delivery]) -> None:
        if self._sender is None:
            from taskloom.topics.webhook import HttpSender

            self._sender = HttpSender()
        events = [decode_event(d.event) for d in batch if d.event is not None]
        try:
            attempt = max(d.attempts for d in batch)
            outcome = await self._sender.send(hook, sub.name, sub.topic, events, attempt=attempt)
        except Exception as exc:
            log.exception("webhook %s: the sender failed", sub.name)
            outcome, detail = Outcome.connection_error(), _error(exc)
        else:
            detail = ""
        if outcome.succeeded:
            await self._ack(sub, batch)
            return
        for delivery in batch:
            await self._failed(sub, delivery, outcome, detail)

    async def _failed(self, sub: _Sub, delivery: Delivery, outcome: Outcome, detail: str) -> None:
        now = self.clock.now()
        label = f"{outcome.label}: {detail}" if detail else outcome.label
        decision = sub.retry.decide(delivery.attempts, delivery.published_at, now, outcome)
        where = f"{sub.name} on event {delivery.position} of topic {sub.topic!r}"
        if decision.retry and decision.retry_at is not None:
            log.warning(
                "%s failed (attempt %d of %d), next at %s: %s",
                where,
                delivery.attempts,
                sub.retry.max_delivery_attempts,
                decision.retry_at.isoformat(),
                label,
            )
            await self.topics.delivery_retry(delivery, decision.retry_at, label, now)
            return
        reason = decision.reason or DeadLetterReason.MAX_DELIVERY_ATTEMPTS_EXCEEDED
        log.error(
            "%s dead-lettered after %d attempt(s) (%s): %s", where, delivery.attempts, reason, label
        )
        await self.topics.delivery_dead_letter(delivery, str(reason), label, now)
