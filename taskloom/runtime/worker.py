"""The worker: leases episodes and activities from a store and runs them.

Three loops share one asyncio loop: the episode loop (lease a batch, plan every episode,
commit the batch in one call), the activity loop (lease up to the free slots, run each
as a task) with a committer that writes finished results in groups, and a renewer that
extends activity leases. Local writes wake the loops through the store's listeners;
a slow poll covers work written by other processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from taskloom import history as h
from taskloom.client import AsyncClient, Client
from taskloom.clock import Clock, SystemClock
from taskloom.core.executor import OrchestrationRun
from taskloom.entities.episodes import plan_entity_episode
from taskloom.entities.records import is_entity_id
from taskloom.errors import ConfigurationError, PayloadTooLargeError
from taskloom.models import FailureDetails
from taskloom.observability import spans
from taskloom.runtime import measure
from taskloom.runtime.activities import run_activity
from taskloom.runtime.episodes import Planned, plan_episode, plan_version_failure
from taskloom.runtime.heartbeat import Heartbeat, WorkerShape
from taskloom.runtime.inline import CachedRun, InlinePlan, plan_inline, settle_inline
from taskloom.runtime.threads import ActivityThreads
from taskloom.runtime.tracing import Emit, EpisodeTraces, emit_all, trace_batch
from taskloom.storage.base import (
    ACTIVITIES,
    EPISODES,
    TIMERS,
    ActivityResult,
    EagerActivities,
    EagerEpisodes,
    EpisodeCommit,
    LeasedEpisode,
    Store,
    VersionFilter,
    WorkItem,
)

if TYPE_CHECKING:
    from taskloom.app import App

log = logging.getLogger("taskloom.worker")


@dataclass(frozen=True)
class WorkerOptions:
    """Tuning knobs, named after host.json where Durable Functions has them."""

    max_concurrent_orchestrations: int = 200
    max_concurrent_activities: int = 100
    lease_for: float = 30.0
    # Only a safety net (a wake-up lost with a killed process, a lapsed activity lease):
    # work written anywhere wakes workers at once (see docs/architecture.md).
    poll_interval: float = 1.0
    cache_size: int = 10_000
    activity_threads: int = 32
    #: Lease scheduled activities and the next episode to ourselves in the commits that
    #: create them (see ``docs/architecture.md``, "Eager dispatch").
    eager: bool = True
    #: Seconds between the worker's heartbeats in the worker registry (0: none); its
    #: row expires after three missed beats (see ``docs/observability.md``).
    heartbeat_every: float = 5.0
    #: Lease only the orchestrations, entities and activities the app registered, leaving
    #: the rest to other workers of the hub (``taskloom serve --grpc`` with an app, where
    #: SDK workers share the hub; see ``docs/grpc.md``). Off by default: a lone worker
    #: takes everything, so work nobody registered fails visibly instead of waiting.
    registered_only: bool = False


class Worker:
    """Runs one app's orchestrations and activities against one store."""

    def __init__(
        self,
        app: App,
        store: Store,
        *,
        clock: Clock | None = None,
        options: WorkerOptions | None = None,
        owner: str | None = None,
        client: AsyncClient | None = None,
    ) -> None:
        # Every worker runs the built-in bulk job, so a job a dashboard started is run by
        # whichever host of the hub leases it (taskloom/dashboard/bulk_job.py).
        from taskloom.dashboard.bulk_job import install

        install(app)
        self.app = app
        self.store = store
        self.clock: Clock = clock or SystemClock()
        # The client activities get as the built-in ``client`` service; the host passes
        # its own (which knows the HTTP base URL for links).
        self.client = client or AsyncClient(
            store,
            store.hub,
            converter=app.converter,
            clock=self.clock,
            default_version=app.versioning.start_version,
        )
        # Versions seen on instances this worker may not run and leaves for another
        # (version_mismatch="wait"): later leases skip them (see _versions).
        self._foreign: set[str] = set()
        self._clients: tuple[AsyncClient, Client] | None = None
        self.options = options or WorkerOptions()
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self._cache: OrderedDict[str, CachedRun] = OrderedDict()
        self._episode_wake = asyncio.Event()
        self._activity_wake = asyncio.Event()
        self._results_ready = asyncio.Event()
        self._results: list[ActivityResult] = []
        # Keyed by (id, lease token): a lapsed lease may come back to this same worker.
        self._inflight: dict[tuple[int, int], WorkItem] = {}
        self._committing = 0
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        self._planning = 0
        # The next moment something becomes visible, as last read from the store; read
        # again only after a wake-up or a poll, not after every idle turn.
        self._next_due: datetime | None = None
        self._timers_dirty = True
        self._late = False
        self._saturated = False
        self._eager_tasks: set[asyncio.Task[None]] = set()
        self._leasing = 0
        self._pool = ActivityThreads(self.options.activity_threads, "taskloom-activity")
        self._traces = EpisodeTraces(self.options.cache_size)
        self._episodes_in_hand = 0
        #: Instances in an episode batch of this worker (leased, planned or committing).
        self._held: set[str] = set()
        self._heartbeat: Heartbeat | None = None
        if self.options.heartbeat_every < 0:
            raise ConfigurationError(
                f"heartbeat_every must be >= 0 seconds (0 turns the heartbeat off), "
                f"not {self.options.heartbeat_every!r}"
            )
        if self.options.heartbeat_every > 0:
            self._heartbeat = Heartbeat(
                store, self.owner, self._shape, every=self.options.heartbeat_every
            )

    # -- lifecycle ------------------------------------------------------------------

    async def start(self) -> None:
        # Sync activities run in the pool and reach the async client through this loop.
        self._clients = (self.client, Client(_async=self.client, _loop=asyncio.get_running_loop()))
        self.store.add_listener(self._wake_episodes, EPISODES)
        self.store.add_listener(self._timers_changed, TIMERS)
        self.store.add_listener(self._activity_wake.set, ACTIVITIES)
        loops = (self._episode_loop, self._activity_loop, self._commit_loop, self._renew_loop)
        self._tasks = [asyncio.create_task(loop(), name=loop.__name__) for loop in loops]
        if self._heartbeat is not None:
            await self._heartbeat.start()
        measure.track_slots(self)
        log.info("worker %s started for hub %r", self.owner, self.store.hub)

    @property
    def busy_activities(self) -> int:
        """Activities running now (the registry's and the metrics' busy slots)."""
        return len(self._inflight)

    @property
    def busy_episodes(self) -> int:
        """Episodes leased and not yet committed."""
        return self._episodes_in_hand

    def _shape(self) -> WorkerShape:
        """What the registry shows of this worker (see :class:`Heartbeat`)."""
        app = self.app
        return WorkerShape(
            orchestrations=tuple(app.orchestrators),
            activities=tuple(app.activities),
            entities=tuple(app.entities),
            slots=self.options.max_concurrent_activities,
            busy=self.busy_activities,
            version=app.versioning.version,
        )

    async def stop(self, *, drain_timeout: float = 30.0) -> None:
        """Stop leasing, let running activities finish (up to ``drain_timeout``), flush."""
        if self._stopping:
            return
        self._stopping = True
        self.store.remove_listener(self._wake_episodes)
        self.store.remove_listener(self._timers_changed)
        self.store.remove_listener(self._activity_wake.set)
        self.wake()
        deadline = asyncio.get_running_loop().time() + drain_timeout
        while (self._inflight or self._results) and asyncio.get_running_loop().time() < deadline:
            self._results_ready.set()
            await asyncio.sleep(0.01)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._results:
            await self._flush()
        if self._eager_tasks:  # episodes leased with the last results: let them commit
            await asyncio.wait(list(self._eager_tasks), timeout=max(1.0, drain_timeout))
        self._pool.shutdown()
        if self._heartbeat is not None:
            await self._heartbeat.stop()
        measure.untrack_slots(self)
        log.info("worker %s stopped", self.owner)

    def wake(self) -> None:
        """New work may be visible: run the loops now rather than at the next poll."""
        self._wake_episodes()
        self._activity_wake.set()

    def _wake_episodes(self) -> None:
        if self._planning:
            # The message may be for an instance we hold right now: look again once the
            # batch in flight has committed and released it (see _after_batch).
            self._late = True
        self._episode_wake.set()

    def _timers_changed(self) -> None:
        self._timers_dirty = True
        self._episode_wake.set()

    def _after_batch(self) -> None:
        if self._late:
            self._late = False
            self._episode_wake.set()

    @property
    def is_idle(self) -> bool:
        """Nothing in hand: no episode being planned, no activity running or unflushed."""
        busy = self._planning or self._leasing or self._committing
        return not (busy or self._inflight or self._results)

    # -- episodes -------------------------------------------------------------------

    async def _episode_loop(self) -> None:
        while not self._stopping:
            self._episode_wake.clear()
            try:
                count = await self._episode_batch()
            except Exception:
                log.exception("episode batch failed; retrying after the poll interval")
                count = 0
            # A full batch may have left work behind: look again at once. Otherwise wait
            # for a wake-up; one that came during the batch (a message for an instance
            # we held, see _after_batch) is already set, so no message is left behind.
            if count < self.options.max_concurrent_orchestrations:
                await self._idle(self._episode_wake)

    async def _episode_batch(self) -> int:
        opts = self.options
        now = self.clock.now()
        self._planning += 1
        try:
            with measure.store_op("lease_episodes"):
                episodes = await self.store.lease_episodes(
                    now,
                    opts.max_concurrent_orchestrations,
                    opts.lease_for,
                    self.owner,
                    self._versions(),
                    self._episode_names(),
                )
            if episodes:
                await self._run_or_release(episodes)
            return len(episodes)
        finally:
            self._planning -= 1

    async def _run_or_release(self, episodes: list[LeasedEpisode]) -> None:
        measure.leased(episodes, self.clock.now())
        self._episodes_in_hand += len(episodes)
        held = [e.instance.instance_id for e in episodes]
        self._held.update(held)  # no inline episode for these meanwhile
        try:
            await self._run_episodes(episodes)
            self._after_batch()
        except Exception:
            # The store failed mid-batch: release the leases now rather than leave
            # these instances idle until the leases expire. Our cached runs may
            # have moved ahead of what was stored, so they go too.
            for episode in episodes:
                self._cache.pop(episode.instance.instance_id, None)
                with contextlib.suppress(Exception):
                    await self.store.abandon_episode(
                        episode.instance.instance_id, episode.lease_token
                    )
            raise
        finally:
            self._episodes_in_hand -= len(episodes)
            self._held.difference_update(held)

    async def _run_eager(self, episodes: list[LeasedEpisode]) -> None:
        """Episodes leased with activity results: run now, as a batch of their own."""
        try:
            await self._run_or_release(episodes)
        except Exception:
            log.exception("eager episode batch failed; its instances were released")
        finally:
            self._planning -= 1

    def _episode_names(self) -> frozenset[str] | None:
        """With ``registered_only``: the app's orchestrations, and ``@name`` of its entities."""
        if not self.options.registered_only:
            return None
        entities = (f"@{name.lower()}" for name in self.app.entities)
        return frozenset((*self.app.orchestrators, *entities))

    def _activity_names(self) -> frozenset[str] | None:
        return frozenset(self.app.activities) if self.options.registered_only else None

    def _versions(self) -> VersionFilter | None:
        """What leases may take: with version_mismatch="wait", only instances this
        worker may run (exactly its version, or none of the foreign versions seen)."""
        policy = self.app.versioning
        if not policy.filters:
            return None
        if policy.match == "exact":
            return VersionFilter(only=policy.version or "")
        return VersionFilter(excluded=frozenset(self._foreign))

    async def _foreign_episodes(self, episodes: list[LeasedEpisode]) -> list[LeasedEpisode]:
        """Release (mismatch "wait") the episodes of instances whose version this worker
        may not run; return the rest. Failing them (mismatch "fail") is planned later."""
        policy = self.app.versioning
        if policy.match == "any" or policy.mismatch != "wait":
            return episodes
        mine: list[LeasedEpisode] = []
        for episode in episodes:
            rec = episode.instance
            if _versioned(rec.instance_id) and not policy.may_run(rec.version):
                if len(self._foreign) < 10_000:
                    self._foreign.add(rec.version or "")
                log.info(
                    "instance %r has version %r, which this worker (version %r, "
                    "version_match=%r) leaves for another worker",
                    rec.instance_id,
                    rec.version,
                    policy.version,
                    policy.match,
                )
                self._cache.pop(rec.instance_id, None)
                await self.store.abandon_episode(rec.instance_id, episode.lease_token)
            else:
                mine.append(episode)
        return mine

    async def _run_episodes(self, episodes: list[LeasedEpisode]) -> None:
        episodes = await self._foreign_episodes(episodes)
        if not episodes:
            return
        histories = await self._histories(episodes)
        planned: dict[str, Planned] = {}
        for episode in episodes:
            iid = episode.instance.instance_id
            try:
                planned[iid] = self._plan(episode, histories.get(iid, []))
            except Exception:
                # Not abandoned: the lease running out is the back-off, so a fault that
                # repeats cannot spin a worker.
                log.exception(
                    "episode of instance %r failed inside taskloom; it is retried when its "
                    "lease expires in %s s (please report this with the traceback)",
                    iid,
                    self.options.lease_for,
                )
                self._cache.pop(iid, None)
        for iid, plan in list(planned.items()):
            too_big = self._oversize(plan.commit)
            if too_big is not None:
                episode = next(e for e in episodes if e.instance.instance_id == iid)
                planned[iid] = self._fail_oversize(episode, histories.get(iid, []), too_big)
        traced = trace_batch(self._traces, episodes, histories, planned) if spans.enabled() else {}
        commits = [p.commit for p in planned.values()]
        now = self.clock.now()
        eager = self._eager_activities(now)
        with measure.store_op("complete_episodes"):
            applied = await self.store.complete_episodes(commits, now, eager)
        measure.committed(commits, applied)
        for (iid, plan), ok in zip(planned.items(), applied, strict=True):
            self._remember(iid, plan, ok)
            if ok and iid in traced:
                emit_all(traced[iid])
        if eager is not None:
            self._dispatch(eager.leased)

    def _eager_activities(self, now: datetime) -> EagerActivities | None:
        """Lease the activities a commit schedules to ourselves while we have free slots
        (not with ``registered_only``: an orchestration may call an activity only another
        worker of the hub registered)."""
        opts = self.options
        free = opts.max_concurrent_activities - len(self._inflight)
        if self._stopping or not opts.eager or opts.registered_only or free <= 0:
            return None
        return EagerActivities(self.owner, now + timedelta(seconds=opts.lease_for), free)

    async def _histories(self, episodes: list[LeasedEpisode]) -> dict[str, list[h.HistoryEvent]]:
        # A new instance (history_len 0) has nothing stored to read.
        missing = [
            e.instance.instance_id
            for e in episodes
            if e.instance.history_len and self._cached(e) is None
        ]
        loaded = {}
        if missing:
            with measure.store_op("load_histories"):
                loaded = await self.store.load_histories(missing)
        for episode in episodes:
            cached = self._cached(episode)
            measure.replayed(episode, cached is not None)
            if cached is not None:
                loaded[episode.instance.instance_id] = cached.history
        return loaded

    def _cached(self, episode: LeasedEpisode) -> CachedRun | None:
        rec = episode.instance
        cached = self._cache.get(rec.instance_id)
        if cached is None:
            return None
        if cached.execution_id != rec.execution_id or len(cached.history) != rec.history_len:
            del self._cache[rec.instance_id]
            return None
        return cached

    def _plan(self, episode: LeasedEpisode, history: list[h.HistoryEvent]) -> Planned:
        rec, policy = episode.instance, self.app.versioning
        if (
            not rec.status.is_terminal
            and _versioned(rec.instance_id)
            and not policy.may_run(rec.version)
        ):
            failure = policy.mismatch_failure(rec.instance_id, rec.version)
            log.warning("failing instance %r: %s", rec.instance_id, failure.message)
            self._cache.pop(rec.instance_id, None)
            return plan_version_failure(episode, history, failure, self.clock.now())
        if is_entity_id(episode.instance.instance_id):
            return self._plan_entity(episode)
        cached = self._cached(episode)
        return plan_episode(
            episode,
            history,
            cached.run if cached else None,
            self._new_run,
            self.clock.now(),
            sub_version=self.app.versioning.start_version,
        )

    def _oversize(self, commit: EpisodeCommit) -> PayloadTooLargeError | None:
        """The error the store would raise for a value of ``commit`` above its payload
        limit (an output, a custom status, an activity input, a message), if any."""
        payloads = getattr(self.store, "payloads", None)
        if payloads is None:
            return None
        iid = commit.instance.instance_id
        parts: list[object] = [commit.instance, *commit.history]
        parts += [m.event for m in commit.messages] + list(commit.work_items)
        for part in parts:
            found = payloads.oversize(iid, part)
            if isinstance(found, PayloadTooLargeError):
                return found
        return None

    def _fail_oversize(
        self, episode: LeasedEpisode, history: list[h.HistoryEvent], exc: PayloadTooLargeError
    ) -> Planned:
        """Fail the instance instead of committing a value the store refuses (retrying
        the same episode would refuse it again for ever)."""
        iid = episode.instance.instance_id
        log.error("failing instance %r: %s", iid, exc)
        self._cache.pop(iid, None)
        failure = FailureDetails(type(exc).__name__, str(exc))
        return plan_version_failure(episode, history, failure, self.clock.now())

    def _plan_entity(self, episode: LeasedEpisode) -> Planned:
        app = self.app
        commit, result = plan_entity_episode(
            episode, app.entities.get, self.clock.now(), app.converter, lambda: list(app.entities)
        )
        for outcome in result.outcomes:
            if outcome.failure is not None and outcome.request_id is None:
                # A signal has no caller to tell: the log is where its failure shows.
                log.warning(
                    "operation %r signalled to entity %r failed: %s",
                    outcome.operation,
                    episode.instance.instance_id,
                    outcome.failure.message,
                )
        return Planned(commit)

    def _new_run(self, instance_id: str) -> OrchestrationRun:
        app = self.app
        return OrchestrationRun(
            instance_id, app.orchestrators.get, app.converter, lambda: list(app.orchestrators)
        )

    def _remember(self, iid: str, plan: Planned, applied: bool) -> None:
        if not applied or plan.run is None:
            self._cache.pop(iid, None)
            return
        commit = plan.commit
        self._cache[iid] = CachedRun(plan.run, plan.history, commit.instance, commit.lease_token)
        self._cache.move_to_end(iid)
        while len(self._cache) > self.options.cache_size:
            self._cache.popitem(last=False)

    # -- activities -----------------------------------------------------------------

    async def _activity_loop(self) -> None:
        while not self._stopping:
            self._activity_wake.clear()
            free = self.options.max_concurrent_activities - len(self._inflight)
            items: list[WorkItem] = []
            if free > 0:
                self._leasing += 1
                try:
                    with measure.store_op("lease_activities"):
                        items = await self.store.lease_activities(
                            self.clock.now(),
                            free,
                            self.options.lease_for,
                            self.owner,
                            self._activity_names(),
                        )
                except Exception:
                    log.exception("leasing activities failed; retrying")
                finally:
                    self._leasing -= 1
                self._dispatch(items)
            # Full: a finishing activity frees a slot and wakes the loop (see _activity).
            self._saturated = len(self._inflight) >= self.options.max_concurrent_activities
            if not items or self._saturated:
                await self._idle(self._activity_wake, timers=False)

    def _dispatch(self, items: list[WorkItem]) -> None:
        now = self.clock.now()
        for item in items:
            measure.activity_started(item, now)
            self._inflight[item.id, item.lease_token] = item
            task = asyncio.create_task(self._activity(item))
            task.add_done_callback(_log_crash)

    async def _activity(self, item: WorkItem) -> None:
        started = time.perf_counter()
        try:
            result = await run_activity(self.app, item, self.clock, self._pool, self._clients)
            measure.activity_finished(item, result, time.perf_counter() - started)
            self._results.append(result)
            self._results_ready.set()
        finally:
            self._inflight.pop((item.id, item.lease_token), None)
            if self._saturated:
                self._activity_wake.set()

    async def _commit_loop(self) -> None:
        while True:
            await self._results_ready.wait()
            self._results_ready.clear()
            try:
                await self._flush()
            except Exception:
                log.exception("committing activity results failed; retrying")
                await asyncio.sleep(self.options.poll_interval)
                self._results_ready.set()

    async def _flush(self) -> None:
        batch, self._results = self._results, []
        self._committing += 1  # results in flight to the store still count as work in hand
        opts = self.options
        now = self.clock.now()
        eager = inline = None
        if opts.eager and not self._stopping:
            eager = EagerEpisodes(
                self.owner,
                now,
                opts.lease_for,
                versions=self._versions(),
                names=self._episode_names(),
            )
            inline = plan_inline(
                batch,
                self._cache,
                self._held,
                self._plan_cached,
                lambda c: self._oversize(c) is not None,
                self._eager_activities(now),
            )
        traced: dict[str, list[Emit]] = {}
        if inline is not None and spans.enabled():
            leased = inline.leased.values()
            traced = trace_batch(self._traces, leased, inline.prior, inline.planned)
            inline.restamp()
        try:
            with measure.store_op("complete_activities"):
                applied = await self.store.complete_activities(
                    batch, now, eager, inline=None if inline is None else inline.episodes
                )
            measure.results_committed(applied)
        except BaseException:
            self._results = batch + self._results
            if inline is not None:  # planned runs moved on: they stay out of the cache
                inline.episodes.applied.clear()
                settle_inline(inline, self._remember)
            raise
        finally:
            self._committing -= 1
        if inline is not None:
            self._settle(inline, traced)
        if eager is not None and eager.leased:
            self._planning += 1  # released by _run_eager
            task = asyncio.create_task(self._run_eager(eager.leased))
            self._eager_tasks.add(task)
            task.add_done_callback(self._eager_tasks.discard)
            task.add_done_callback(_log_crash)
        for result, ok in zip(batch, applied, strict=True):
            if not ok:
                log.warning(
                    "result of work item %d (instance %r) dropped: its lease was lost",
                    result.work_item_id,
                    result.message.instance_id,
                )

    def _plan_cached(
        self, episode: LeasedEpisode, history: list[h.HistoryEvent], run: OrchestrationRun
    ) -> Planned:
        """An inline episode's plan, from the run the cache held (see runtime/inline.py)."""
        return plan_episode(
            episode,
            history,
            run,
            self._new_run,
            self.clock.now(),
            sub_version=self.app.versioning.start_version,
        )

    def _settle(self, inline: InlinePlan, traced: dict[str, list[Emit]]) -> None:
        """After the results' commit: cache, measure and trace the inline episodes, and
        run the activities they scheduled."""
        settled = settle_inline(inline, self._remember)
        measure.leased([episode for episode, _, _ in settled], self.clock.now())
        for episode, _, _ in settled:
            measure.replayed(episode, True)
        commits = [plan.commit for _, plan, _ in settled]
        measure.committed(commits, [ok for _, _, ok in settled])
        for episode, _, ok in settled:
            if ok and episode.instance.instance_id in traced:
                emit_all(traced[episode.instance.instance_id])
        if inline.episodes.activities is not None:
            self._dispatch(inline.episodes.activities.leased)

    async def _renew_loop(self) -> None:
        every = self.options.lease_for / 3
        while True:
            await asyncio.sleep(every)
            leases = [(item.id, item.lease_token) for item in self._inflight.values()]
            if not leases:
                continue
            try:
                with measure.store_op("renew_activities"):
                    await self.store.renew_activities(
                        leases, self.clock.now(), self.options.lease_for
                    )
            except Exception:
                log.exception("renewing activity leases failed")

    # -- waiting --------------------------------------------------------------------

    async def _idle(self, wake: asyncio.Event, *, timers: bool = True) -> None:
        # The activity loop needs no timer look-up: work items carry no delay, and a
        # lapsed lease of a crashed worker is found at the poll.
        timeout = self.options.poll_interval
        if timers and not self.clock.is_virtual:
            if self._timers_dirty:
                self._timers_dirty = False
                try:
                    self._next_due = await self.store.next_wakeup(self.clock.now())
                except Exception:
                    self._next_due = None
            if self._next_due is not None:
                left = (self._next_due - self.clock.now()).total_seconds()
                timeout = min(timeout, max(0.0, left))
        try:
            await asyncio.wait_for(wake.wait(), timeout)
        except TimeoutError:
            if timers:  # a poll, or a timer came due: look again
                self._timers_dirty = True


def _versioned(instance_id: str) -> bool:
    """Orchestrations have versions; entities (ids ``@name@key``) do not, and every
    worker runs them."""
    return not instance_id.startswith("@")


def _log_crash(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("activity task crashed", exc_info=task.exception())
