"""Hello and GetWorkItems: orchestration episodes and activities leased for SDK workers.

One GetWorkItems call is one :class:`WorkStream`: it leases, from the caller's hub, what
the worker's ``workItemFilters`` name (every name when it sends none), as many as the
request's concurrency limits allow to be out at once, and sends each as a work item:
an ``OrchestratorRequest`` with the stored history as ``pastEvents`` and the episode's
messages as ``newEvents`` (after an ``orchestratorStarted``), or an ``ActivityRequest``.

It waits on the store's wake-ups (:meth:`Store.add_listener`), not by polling, with
timers as the store's :meth:`~Store.next_wakeup` says; an idle stream gets a
``healthPing`` every ``ping_interval`` seconds. While the stream lives it renews the
leases of what it sent, activities, orchestration episodes and entity batches (the
protocol has no renew call, and an open stream shows the worker is alive); when it
ends, what it sent stays leased until the lease lapses, so a worker that reconnects can
still complete it, and otherwise another worker gets it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from durabletask.internal import orchestrator_service_pb2 as pb
from google.protobuf import empty_pb2

from taskloom import history as h
from taskloom.entities.records import is_entity_id
from taskloom.grpc import tokens
from taskloom.grpc.base import SidecarBase, rpc, stream_rpc
from taskloom.grpc.client_convert import text
from taskloom.grpc.convert import request_events, span_context, trace_context
from taskloom.grpc.episode_events import fresh_events, start_order
from taskloom.grpc.hubs import Hub
from taskloom.runtime.episodes import current_messages, plan_without_code, rewind_due
from taskloom.runtime.heartbeat import Heartbeat, WorkerShape
from taskloom.storage.base import (
    ACTIVITIES,
    EPISODES,
    TIMERS,
    LeasedEpisode,
    VersionFilter,
    WorkItem,
)

log = logging.getLogger("taskloom.grpc")

#: Items out at once per stream when the request sets no limit.
DEFAULT_LIMIT = 100


@dataclass(frozen=True)
class Filters:
    """What a stream may lease: episode names (orchestrations, ``@name`` for entities),
    activity names (None: every name) and, when every orchestration filter names the
    same single version, only that version."""

    episodes: frozenset[str] | None = None
    activities: frozenset[str] | None = None
    versions: VersionFilter | None = None

    @classmethod
    def of(cls, request: pb.GetWorkItemsRequest) -> Filters:
        if not request.HasField("workItemFilters"):
            return cls()
        f = request.workItemFilters
        episodes = {o.name for o in f.orchestrations} | {f"@{e.name.lower()}" for e in f.entities}
        versions = {tuple(o.versions) for o in f.orchestrations}
        only = None
        if len(versions) == 1 and len(chosen := next(iter(versions))) == 1:
            only = VersionFilter(only=chosen[0])
        return cls(frozenset(episodes), frozenset(a.name for a in f.activities), only)


@dataclass
class OrchestrationWork:
    """What completing a dispatched episode needs."""

    hub: Hub
    episode: LeasedEpisode
    past: list[h.HistoryEvent]
    new: list[h.HistoryEvent]
    #: A rewind of a failed instance: the worker answers with ``rewindOrchestration``.
    rewinding: bool = False


@dataclass
class ActivityWork:
    hub: Hub
    item: WorkItem


@dataclass
class WorkStream:
    """One GetWorkItems call (see the module docstring)."""

    sidecar: WorkItemRpcs
    hub: Hub
    filters: Filters
    orchestration_limit: int
    activity_limit: int
    owner: str = field(default_factory=lambda: f"grpc-{uuid.uuid4().hex[:12]}")
    #: Orchestration episodes and entity batches out with the worker, by completion
    #: token: (instance id, lease token), for their slots and lease renewals.
    episodes: dict[str, tuple[str, int]] = field(default_factory=dict)
    activities: dict[str, WorkItem] = field(default_factory=dict)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    #: Set when the call ended (the worker cancelled it or went away): lease no more.
    closed: bool = False

    def close(self) -> None:
        self.closed = True
        self.wake.set()

    def finished(self, item: tokens.Dispatched) -> None:
        """An item this stream sent was completed or abandoned: its slot is free."""
        if item.token.kind == tokens.ACTIVITY:
            self.activities.pop(item.token.encode(), None)
        elif item.token.kind == tokens.ORCHESTRATION or item.token.kind == tokens.ENTITY:
            self.episodes.pop(item.token.encode(), None)
        self.wake.set()

    async def run(self) -> AsyncGenerator[pb.WorkItem, None]:
        store = self.hub.store
        store.add_listener(self.wake.set, EPISODES + ACTIVITIES + TIMERS)
        beat = Heartbeat(store, self.owner, self._shape, kind="grpc-sdk")
        await beat.start()
        sidecar = self.sidecar
        last_sent = last_renewal = time.monotonic()
        try:
            while not sidecar.stopping and not self.closed:
                self.wake.clear()
                items = [item async for item in self._lease()]
                for i, item in enumerate(items):
                    try:
                        yield item
                    except BaseException:  # the call is gone (closed or cancelled)
                        self._put_back(items[i:])
                        raise
                sent = len(items)
                now_mono = time.monotonic()
                renew_every = sidecar.lease_for / 3
                if now_mono - last_renewal >= renew_every:  # busy or not
                    await self._renew()
                    last_renewal = now_mono
                if sent:
                    last_sent = now_mono
                    continue
                if now_mono - last_sent >= sidecar.ping_interval:
                    yield pb.WorkItem(healthPing=pb.HealthPing())
                    last_sent = now_mono
                timeout = min(
                    sidecar.ping_interval - (now_mono - last_sent),
                    renew_every - (now_mono - last_renewal),
                )
                now = sidecar.clock.now()
                wakeup = await store.next_wakeup(now)
                if wakeup is not None:
                    timeout = min(timeout, (wakeup - now).total_seconds() + 0.001)
                # asyncio.timeout, not wait_for: wait_for can swallow the call's
                # cancellation when the wake-up comes at the same moment (Python 3.11).
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(max(0.001, timeout)):
                        await self.wake.wait()
        finally:
            store.remove_listener(self.wake.set)
            await beat.stop()

    def _shape(self) -> WorkerShape:
        """This stream in the worker registry: what it serves (``*``: every name)."""
        f = self.filters
        episodes = sorted(f.episodes) if f.episodes is not None else ["*"]
        return WorkerShape(
            orchestrations=tuple(n for n in episodes if not n.startswith("@")),
            activities=tuple(sorted(f.activities)) if f.activities is not None else ("*",),
            entities=tuple(n[1:] for n in episodes if n.startswith("@"))
            if f.episodes is not None
            else ("*",),
            slots=self.activity_limit,
            busy=len(self.activities),
        )

    async def _lease(self) -> AsyncIterator[pb.WorkItem]:
        sidecar, store, f = self.sidecar, self.hub.store, self.filters
        sidecar.inflight.sweep(time.monotonic())
        free = self.orchestration_limit - len(self.episodes)
        if free > 0:
            now = sidecar.clock.now()
            episodes = await store.lease_episodes(
                now, free, sidecar.lease_for, self.owner, f.versions, f.episodes
            )
            if episodes:
                ids = [e.instance.instance_id for e in episodes]
                histories = await store.load_histories(ids)
                for episode in episodes:
                    history = histories.get(episode.instance.instance_id, [])
                    item = await self._episode_item(episode, history)
                    if item is not None:
                        yield item
        free = self.activity_limit - len(self.activities)
        if free > 0:
            now = sidecar.clock.now()
            items = await store.lease_activities(
                now, free, sidecar.lease_for, self.owner, f.activities
            )
            for work in items:
                yield self._activity_item(work)

    async def _episode_item(
        self, episode: LeasedEpisode, history: list[h.HistoryEvent]
    ) -> pb.WorkItem | None:
        sidecar, store = self.sidecar, self.hub.store
        rec = episode.instance
        iid = rec.instance_id
        now = sidecar.clock.now()
        if is_entity_id(iid):
            token = tokens.Token(self.hub.name, tokens.ENTITY, iid, episode.lease_token)
            text_token = token.encode()
            item = sidecar.entity_work_item(self.hub, episode, history, text_token)
            if item is None:
                await store.abandon_episode(iid, episode.lease_token)
                return None
            # CompleteEntityTask pops this entry (``OrchestrationWork``, no new events).
            self._track(token, OrchestrationWork(self.hub, episode, history, []))
            return item
        rewinding = rewind_due(episode)
        if rewinding:
            # The SDK rewrites the history itself (taskloom.grpc.rewind): it gets it whole.
            past = history
            rewind = next(
                m.event for m in episode.messages if isinstance(m.event, h.ExecutionRewound)
            )
            new = [h.OrchestratorStarted(now), rewind]
        else:
            planned = plan_without_code(episode, history, now)
            if planned is not None:  # nothing for the worker: dropped or deferred
                await store.complete_episodes([planned.commit], now)
                return None
            past = history
            # OrchestratorStarted messages only wake the instance (after a rewind).
            messages = [
                m
                for m in current_messages(episode)
                if not isinstance(m.event, h.OrchestratorStarted)
            ]
            if any(isinstance(m.event, h.ExecutionStarted) for m in messages):
                messages.sort(key=lambda m: start_order(m, rec.execution_id))
            new = [h.OrchestratorStarted(now), *fresh_events(history, [m.event for m in messages])]
        token = tokens.Token(self.hub.name, tokens.ORCHESTRATION, iid, episode.lease_token)
        work = OrchestrationWork(self.hub, episode, past, new, rewinding)
        past_pb, new_pb = request_events(past, new)
        request = pb.OrchestratorRequest(
            instanceId=iid, executionId=text(rec.execution_id), pastEvents=past_pb, newEvents=new_pb
        )
        trace = span_context(history)  # recorded by CompleteOrchestratorTask
        if trace is not None:
            request.orchestrationTraceContext.CopyFrom(trace)
        text_token = self._track(token, work)
        return pb.WorkItem(completionToken=text_token, orchestratorRequest=request)

    def _put_back(self, items: Sequence[pb.WorkItem]) -> None:
        """Release at once the leases of items the stream could not send (the one being
        written when the call ended may have reached the worker: if so its completion
        is refused by the fence and the work done again, never lost for a lease term)."""
        dispatched = [d for i in items if (d := self.sidecar.inflight.pop(i.completionToken))]
        if dispatched:
            self.sidecar.spawn(_release(self.hub, dispatched, self.sidecar.clock.now()))

    def _track(self, token: tokens.Token, payload: Any) -> str:
        text_token = self.sidecar.inflight.add(
            tokens.Dispatched(token, payload, self, time.monotonic())
        )
        self.episodes[text_token] = (token.item, token.lease_token)
        return text_token

    def _activity_item(self, work: WorkItem) -> pb.WorkItem:
        detail = (work.instance_id, work.execution_id, work.task_id)
        token = tokens.Token(self.hub.name, tokens.ACTIVITY, str(work.id), work.lease_token, detail)
        text_token = self.sidecar.inflight.add(
            tokens.Dispatched(token, ActivityWork(self.hub, work), self, time.monotonic())
        )
        self.activities[text_token] = work
        request = pb.ActivityRequest(
            name=work.name,
            taskId=work.task_id,
            input=text(work.input),
            orchestrationInstance=pb.OrchestrationInstance(
                instanceId=work.instance_id, executionId=text(work.execution_id)
            ),
            # The scheduling action's trace context (the work item keeps its traceparent).
            parentTraceContext=trace_context(work.trace_parent, None),
        )
        return pb.WorkItem(completionToken=text_token, activityRequest=request)

    async def _renew(self) -> None:
        """Extend the leases of what this stream has out with the worker (activities,
        orchestration episodes, entity batches): an open stream shows the worker is alive,
        so a long activity or entity batch is not sent to another worker meanwhile."""
        store, now, lease_for = self.hub.store, self.sidecar.clock.now(), self.sidecar.lease_for
        if self.activities:
            keys = list(self.activities)  # completions may land during the await
            leases = [(w.id, w.lease_token) for w in self.activities.values()]
            kept = await store.renew_activities(leases, now, lease_for)
            for key, ok in zip(keys, kept, strict=True):
                if not ok:  # taken over elsewhere: its completion will be refused
                    self.activities.pop(key, None)
        if self.episodes:
            keys = list(self.episodes)
            held = await store.renew_episodes(list(self.episodes.values()), now, lease_for)
            for key, ok in zip(keys, held, strict=True):
                if not ok:
                    self.episodes.pop(key, None)
        # Renewed items stay in the in-flight table (it forgets items whose lease lapsed).
        renewed = self.activities.keys() | self.episodes.keys()
        at = time.monotonic()
        for item in self.sidecar.inflight.of_stream(self):
            if item.token.encode() in renewed:
                item.sent_at = at


async def _release(hub: Hub, items: list[tokens.Dispatched], now: datetime) -> None:
    store = hub.store
    activities = [
        (int(d.token.item), d.token.lease_token) for d in items if d.token.kind == tokens.ACTIVITY
    ]
    if activities:  # a lease renewed for no time ends now
        await store.renew_activities(activities, now, 0)
    for d in items:
        if d.token.kind != tokens.ACTIVITY:
            await store.abandon_episode(d.token.item, d.token.lease_token)
    log.info("put back %d work item(s) a closed stream could not send", len(items))


class WorkItemRpcs(SidecarBase):
    """Hello and the work-item stream."""

    @rpc
    async def Hello(self, request: Any, context: Any) -> empty_pb2.Empty:
        await self.caller(context, "read")
        return empty_pb2.Empty()

    @stream_rpc
    async def GetWorkItems(
        self, request: pb.GetWorkItemsRequest, context: Any
    ) -> AsyncIterator[pb.WorkItem]:
        caller = await self.caller(context, "work")
        stream = WorkStream(
            self,
            caller.hub,
            Filters.of(request),
            request.maxConcurrentOrchestrationWorkItems or DEFAULT_LIMIT,
            request.maxConcurrentActivityWorkItems or DEFAULT_LIMIT,
        )
        if request.worker_instance_id:  # the SDK's own name for the worker, if it sends one
            stream.owner = f"grpc-{request.worker_instance_id[:60]}-{stream.owner[5:]}"
        log.info("SDK worker connected to hub %r (%s)", caller.hub.name, stream.owner)
        if hasattr(context, "add_done_callback"):  # ends the stream even if the cancel is lost
            context.add_done_callback(lambda _: stream.close())
        try:
            async with contextlib.aclosing(stream.run()) as items:
                async for item in items:
                    yield item
        finally:
            log.info("SDK worker stream %s ended", stream.owner)

    def entity_work_item(
        self, hub: Hub, episode: LeasedEpisode, history: list[h.HistoryEvent], token: str
    ) -> pb.WorkItem | None:
        """The work item for a leased entity instance (id ``@name@key``), or None when
        entities are not served (the lease is then released). Overridden by
        :class:`taskloom.grpc.entity_rpcs.EntityWork`."""
        return None
