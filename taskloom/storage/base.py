"""The storage protocol: the domain operations every backend implements, documented once.

A store holds one task hub. Every operation is a coroutine and takes the current time
``now`` from its caller (the worker's or the client's clock), so tests and
:class:`taskloom.testing.TestEnv` control time; a store never reads the wall clock.

Records (all frozen dataclasses, payloads as the converter's JSON text):

- :class:`InstanceRecord`: one row per instance: identity, status, input/output, lease.
- :class:`Message`: an event in an instance's inbox, visible from ``visible_at`` on.
  Work meant for "now" (starts, events, results, replies) is stamped :data:`AT_ONCE`,
  so it is visible to every worker at once whatever the sender's clock says; only
  timers and delayed starts carry a real time (``TimerFired`` messages are visible from
  the fire time, judged on the leasing worker's clock). A message
  carrying ``execution_id`` is meant for that execution only (results of a run that
  continued as new are dropped by the worker).
- :class:`WorkItem`: an activity invocation on the work queue.

The two transactions of the design (see ``docs/architecture.md``):

1. :meth:`Store.complete_episodes`: for each :class:`EpisodeCommit`, in one transaction
   and only while the instance's ``lease_token`` still equals the commit's: append (or
   replace) history, delete consumed messages, insert work items, messages and child
   instances, update the instance row, release the lease.
2. :meth:`Store.complete_activities`: for each :class:`ActivityResult`, delete the work
   item if its lease token still matches and insert the result message, atomically.

Leases carry a fencing token that grows on every lease, so a worker whose lease expired
and was taken over can never commit.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from taskloom.history import ExecutionStarted, HistoryEvent, TaskFailed
from taskloom.models import FailureDetails, Status

if TYPE_CHECKING:
    from taskloom.storage.events_base import StreamAppend

#: ``visible_at`` of messages, work items and queue messages meant for "now": the epoch,
#: which is in every clock's past, so a sender whose clock runs ahead of a worker's (another
#: host, or a virtual clock standing still) never hides work from it.
AT_ONCE = datetime(1970, 1, 1, tzinfo=UTC)
#: How the stored text of every ``ExecutionStarted`` begins (``history.dumps_event``
#: writes the kind first): stores find start events by it without decoding the others.
START_PREFIX = '{"kind":"ExecutionStarted"'


@dataclass(frozen=True)
class InstanceRecord:
    """The stored row of one instance."""

    instance_id: str
    execution_id: str
    name: str
    status: Status
    created_at: datetime
    updated_at: datetime
    version: str | None = None
    input: str | None = None
    output: str | None = None
    custom_status: str | None = None
    failure: FailureDetails | None = None
    completed_at: datetime | None = None
    parent_instance_id: str | None = None
    scheduled_start_at: datetime | None = None
    history_len: int = 0


@dataclass(frozen=True)
class Message:
    """An event waiting in ``instance_id``'s inbox. ``id`` is assigned by the store."""

    instance_id: str
    event: HistoryEvent
    visible_at: datetime
    execution_id: str | None = None
    id: int = 0
    # Chosen by clients: a message whose key is already in the inbox is not added again,
    # so a call retried after a lost COMMIT cannot deliver an event twice.
    key: str | None = None


@dataclass(frozen=True)
class NewWorkItem:
    """An activity to run, as scheduled by an episode."""

    instance_id: str
    execution_id: str
    task_id: int
    name: str
    input: str | None
    visible_at: datetime
    # Leases before this one: a retry's n-th attempt starts at n - 1, so the first
    # lease reports attempt n (and a redelivery after a crash counts as one more).
    prior_attempts: int = 0
    #: W3C traceparent of the span that waits for this activity (the parent of its run's
    #: span), or None when the scheduling worker did not trace.
    trace_parent: str | None = None
    #: When the episode scheduled it (the schedule-to-start lag and backlog age).
    scheduled_at: datetime | None = None


@dataclass(frozen=True)
class WorkItem:
    """A leased activity invocation."""

    id: int
    instance_id: str
    execution_id: str
    task_id: int
    name: str
    input: str | None
    lease_token: int
    attempt: int = 1
    trace_parent: str | None = None
    scheduled_at: datetime | None = None


@dataclass(frozen=True)
class ActivityResult:
    """The outcome of one work item: ``message`` goes to the instance's inbox.

    ``appends`` (event-log appends of an activity that declares ``events``) commit in
    the same transaction, and only with it; if one is refused (a wrong expected
    version), none of them is written and the message becomes a ``TaskFailed`` naming
    the error (:func:`refused`)."""

    work_item_id: int
    lease_token: int
    message: Message
    appends: tuple[StreamAppend, ...] = ()


def refused(message: Message, exc: BaseException) -> Message:
    """The result message of an activity whose appends were refused with ``exc``."""
    event = message.event
    task_id = getattr(event, "task_scheduled_id", -1)
    failed = TaskFailed(
        event.timestamp, task_scheduled_id=task_id, failure=FailureDetails.from_exception(exc)
    )
    return replace(message, event=failed)


@dataclass(frozen=True)
class LeasedEpisode:
    """An instance leased for one episode, with its visible messages (oldest first)."""

    instance: InstanceRecord
    messages: list[Message]
    lease_token: int


@dataclass(frozen=True)
class NewInstance:
    """An instance to create, with the ``ExecutionStarted`` message that starts it."""

    record: InstanceRecord
    start: Message


@dataclass(frozen=True)
class EpisodeCommit:
    """Everything one episode changes, applied atomically if the lease is still ours.

    ``instance`` is the updated row (status, output, custom status, execution id after
    continue-as-new, ``history_len`` after this commit). ``replace_history`` swaps the
    whole stored history for ``history`` (continue-as-new, rewind); otherwise ``history``
    is appended.
    """

    instance: InstanceRecord
    lease_token: int
    consumed: Sequence[int]
    history: Sequence[HistoryEvent] = ()
    replace_history: bool = False
    work_items: Sequence[NewWorkItem] = ()
    messages: Sequence[Message] = ()
    new_instances: Sequence[NewInstance] = ()
    #: The status the episode found; when the commit keeps it, waiting clients (which
    #: wait on statuses alone) are not woken. None: not known, wake them.
    prior_status: Status | None = None

    @property
    def prior_len(self) -> int:
        """The stored history length the episode was planned from (``history_len`` is
        kept by these commits alone, so appended events go right after it)."""
        return self.instance.history_len - len(self.history)


@dataclass
class EagerActivities:
    """Eager dispatch: asks :meth:`Store.complete_episodes` to insert the first ``limit``
    work items of its applied commits already leased to ``owner`` until ``expires``, and
    to append them to ``leased``. The committing worker runs them at once, saving the
    lease transaction and a wake-up per activity (Temporal's eager activities); the
    lease is an ordinary one, so a crash hands them to another worker when it lapses."""

    owner: str
    expires: datetime
    limit: int
    leased: list[WorkItem] = field(default_factory=list)


@dataclass
class EagerEpisodes:
    """Eager episodes: asks :meth:`Store.complete_activities` to lease, in the same
    transaction, the instances that its applied results went to and that no one else
    holds, and to append them (with their visible messages) to ``leased``. The worker that
    ran the activity runs the next episode at once, usually from its sticky cache."""

    owner: str
    now: datetime
    lease_for: float
    leased: list[LeasedEpisode] = field(default_factory=list)
    #: Which instances the worker may lease, by version (see :class:`VersionFilter`).
    versions: VersionFilter | None = None
    #: Which instances the worker may lease, by name (see :meth:`Store.lease_episodes`).
    names: Collection[str] | None = None


@dataclass
class InlineEpisodes:
    """Inline episodes: the next episode of an instance, planned by the worker from its
    sticky cache with the results it is committing as the inbox, and committed by
    :meth:`Store.complete_activities` in the results' own transaction instead of
    enqueuing them (one transaction, no message written or read, no lease).

    ``commits[instance_id]`` applies only if every result of the call for that instance
    applied, and the instance is still as that worker's last commit left it: unleased,
    with the lease token ``commit.lease_token`` (no one leased it since), the history
    length the commit started from, the same execution, and no other visible message.
    Otherwise its results are enqueued as usual (and ``eager`` may lease them). Commits
    that consume messages, create instances or replace the history are not applied
    inline (the worker does not plan them so); work items of applied commits are
    leased as ``activities`` says. ``applied`` receives the ids committed inline.
    """

    commits: dict[str, EpisodeCommit]
    #: How many of the call's results each commit was planned with.
    expected: dict[str, int] = field(default_factory=dict)
    activities: EagerActivities | None = None
    applied: set[str] = field(default_factory=set)

    def done(self) -> list[EpisodeCommit]:
        """The commits applied."""
        return [c for iid, c in self.commits.items() if iid in self.applied]

    def usable(
        self, given: Sequence[ActivityResult], stored: Sequence[ActivityResult]
    ) -> dict[str, EpisodeCommit]:
        """The commits still valid for the results as the store will write them
        (``stored``: after the payload limit turned oversized ones into failures): not
        for instances whose results carry appends or were changed."""
        bad = {b.message.instance_id for a, b in zip(given, stored, strict=True) if a is not b} | {
            r.message.instance_id for r in stored if r.appends
        }
        return {
            iid: c
            for iid, c in self.commits.items()
            if iid not in bad and not (c.consumed or c.new_instances or c.replace_history)
        }


def inline_kinds(inline: InlineEpisodes | None) -> str:
    """The wake-up kinds of the applied inline episodes (as :func:`commit_kinds`)."""
    if inline is None or not inline.applied:
        return ""
    return _episode_kinds(
        inline.done(), 0 if inline.activities is None else len(inline.activities.leased)
    )


def inline_changes(inline: InlineEpisodes | None) -> dict[str, Status]:
    """The instances whose status the applied inline episodes changed, with their new
    statuses."""
    if inline is None:
        return {}
    done = inline.done()
    return status_changes(done, [True] * len(done))


@dataclass(frozen=True)
class VersionFilter:
    """Which instances :meth:`Store.lease_episodes` may lease, by their version (``None``
    and ``""`` are the same, no version): only those of version ``only`` when it is set
    (``""`` for unversioned ones), and none of a version in ``excluded``. Workers whose
    policy waits for another worker pass one, so they do not lease and release foreign
    instances over and over (see ``docs/semantics.md``, "Versioning")."""

    only: str | None = None
    excluded: frozenset[str] = frozenset()


@dataclass(frozen=True)
class InstanceQuery:
    """Filters for :meth:`Store.query_instances`; ``None`` means any."""

    statuses: frozenset[Status] | None = None
    name: str | None = None
    instance_id_prefix: str | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None
    parent_instance_id: str | None = None
    #: Instances of this version only (``""``: those without a version).
    version: str | None = None
    #: Page from the newest instance back (``query_instances`` only; a token of one
    #: direction means nothing in the other).
    newest_first: bool = False


@dataclass
class QueryResult:
    records: list[InstanceRecord] = field(default_factory=list)
    continuation_token: str | None = None


@dataclass(frozen=True)
class PendingWork:
    """A work item of an instance not yet completed, as :meth:`Store.inspect_instance`
    reports it: ``attempt`` counts its leases so far; the lease is live while
    ``lease_expires`` is in the future."""

    task_id: int
    name: str
    attempt: int
    visible_at: datetime
    lease_owner: str | None = None
    lease_expires: datetime | None = None


@dataclass(frozen=True)
class InstanceLeases:
    """Who holds an instance and its work (the dashboard's "why is this not finished")."""

    lease_owner: str | None
    lease_expires: datetime | None
    work: list[PendingWork] = field(default_factory=list)
    messages: int = 0  # messages in the inbox
    next_message_at: datetime | None = None  # the earliest visible_at among them


Listener = Callable[[], None]
#: Called with the ids of instances whose status this store object's own writes changed
#: (a mapping of each to its new status when the writer knows it: listeners waiting for
#: other statuses then need not look), or with None when statuses may have changed
#: without saying which (another process, another store object on the same database, a
#: write that does not list them).
StatusListener = Callable[[Collection[str] | None], None]

#: What a wake-up is about, one letter each; a listener names the kinds it cares for, so a
#: waiting client is not woken by every activity and the activity loop not by every event.
EPISODES = "e"  # an inbox got a visible message, or a lease with messages was released
ACTIVITIES = "a"  # a work item nobody holds was added
STATUS = "s"  # an instance row changed (waiting clients)
TIMERS = "t"  # something will become visible later (next_wakeup may have moved)
QUEUES = "q"  # durable queues and schedules
LOG = "l"  # events were appended to the hub's event log (consumers follow it)
DELIVERIES = "d"  # topic deliveries became due (added, retried or redriven)
SUBSCRIPTIONS = "u"  # a topic subscription was created, changed or deleted
ALL_KINDS = "eastqldu"


def merge_kinds(pending: str, kinds: str) -> str:
    """``pending`` plus the letters of ``kinds`` it lacks (coalescing wake-ups)."""
    return pending + "".join(k for k in kinds if k not in pending)


def timed(messages: Iterable[Message]) -> str:
    """:data:`TIMERS` if any message becomes visible later than at once, else ``""``."""
    return TIMERS if any(m.visible_at != AT_ONCE for m in messages) else ""


class Store(abc.ABC):
    """One task hub in one database. Backends: :mod:`taskloom.storage.sqlite`, ``postgres``."""

    hub: str

    def __init__(self) -> None:
        self._listeners: list[tuple[Listener, str]] = []
        self._status_listeners: list[StatusListener] = []

    # -- wake-ups -------------------------------------------------------------------

    def add_listener(self, listener: Listener, kinds: str = ALL_KINDS) -> None:
        """Call ``listener`` (on the store's loop) whenever work of one of ``kinds`` may
        have become runnable or visible, here or in another process."""
        self._listeners.append((listener, kinds))
        self._listening()

    def remove_listener(self, listener: Listener) -> None:
        self._listeners = [(f, k) for f, k in self._listeners if f != listener]

    def add_status_listener(self, listener: StatusListener) -> None:
        """Call ``listener`` whenever an instance's status may have changed: with the ids
        when this store object's own write changed them, else with None (see
        :data:`StatusListener`). Waiting clients use it to look again only at those."""
        self._status_listeners.append(listener)
        self._listening()

    def _listening(self) -> None:
        """A listener was added (a backend may start hearing other processes now)."""
        return None

    def remove_status_listener(self, listener: StatusListener) -> None:
        self._status_listeners = [f for f in self._status_listeners if f != listener]

    def _notify(self, kinds: str = ALL_KINDS, changed: Collection[str] | None = None) -> None:
        """After a write: wake every listener of ``kinds`` (subclasses reach other
        processes too); ``changed`` lists the instances whose status the write changed,
        when the writer knows them."""
        self._wake_locally(kinds, changed)

    def _wake_locally(self, kinds: str = ALL_KINDS, changed: Collection[str] | None = None) -> None:
        for listener, wanted in list(self._listeners):
            if any(k in wanted for k in kinds):
                listener()
        if STATUS in kinds:
            for status_listener in list(self._status_listeners):
                status_listener(changed)

    # -- lifecycle ------------------------------------------------------------------

    @abc.abstractmethod
    async def open(self) -> None:
        """Connect and apply pending migrations. Idempotent."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release connections. Idempotent."""

    # -- clients --------------------------------------------------------------------

    @abc.abstractmethod
    async def create_instance(self, new: NewInstance) -> None:
        """Create ``new.record`` and enqueue ``new.start``.

        An existing instance in a terminal state is replaced (its history and messages
        deleted); one that is not terminal raises :class:`InstanceExistsError`.
        """

    @abc.abstractmethod
    async def enqueue_messages(self, messages: Sequence[Message]) -> None:
        """Put messages in inboxes (external events, terminate, suspend, resume, rewind)."""

    @abc.abstractmethod
    async def get_instance(self, instance_id: str) -> InstanceRecord | None: ...

    @abc.abstractmethod
    async def get_statuses(self, instance_ids: Sequence[str]) -> dict[str, Status]:
        """The status of each instance that exists among ``instance_ids``, in one round
        trip (waiting clients check all the instances they wait for at once)."""

    @abc.abstractmethod
    async def get_history(self, instance_id: str) -> list[HistoryEvent]:
        """The stored history, oldest first (empty for an unknown instance)."""

    @abc.abstractmethod
    async def load_start_events(self, instance_ids: Sequence[str]) -> dict[str, ExecutionStarted]:
        """The ``ExecutionStarted`` of each instance's current execution, in one round
        trip: the first in its history or, before its first episode, the one waiting in
        its inbox (instances with neither are left out). Reads the rows whose text starts
        with that kind, so the rest of a long history is not decoded; callers want the
        start's metadata (tags, version, trace context) without loading the history."""

    @abc.abstractmethod
    async def query_instances(
        self, query: InstanceQuery, page_size: int, continuation_token: str | None
    ) -> QueryResult:
        """Instances matching ``query`` ordered by (created_at, instance_id), paged;
        descending with ``query.newest_first``."""

    @abc.abstractmethod
    async def inspect_instance(self, instance_id: str) -> InstanceLeases | None:
        """The instance's episode lease, its work items and its inbox (None for an
        unknown instance). Reads a few rows by the instance's indexes."""

    @abc.abstractmethod
    async def count_instances(self) -> dict[Status, int]:
        """How many orchestration instances (entities left out) the hub holds per status,
        statuses with none left out. One grouped count over the hub's rows: callers that
        show it often (the dashboard) cache it."""

    @abc.abstractmethod
    async def purge_instances(
        self, query: InstanceQuery, instance_ids: Sequence[str] | None = None
    ) -> int:
        """Delete terminal instances (row, history, messages, work items); return the count.

        With ``instance_ids``, only those ids (still filtered by ``query``).
        """

    # -- orchestration episodes -----------------------------------------------------

    @abc.abstractmethod
    async def lease_episodes(
        self,
        now: datetime,
        limit: int,
        lease_for: float,
        owner: str,
        versions: VersionFilter | None = None,
        names: Collection[str] | None = None,
    ) -> list[LeasedEpisode]:
        """Lease up to ``limit`` instances that have visible messages and no live lease
        (and, with ``versions``, a version it admits).

        With ``names``, only instances of those names: orchestration names, and entity
        names written ``@name`` for the entities (ids ``@name@key``). A worker that serves
        a shared hub passes what it registered, so it never leases what only another
        worker can run (the Durable Task SDKs' work item filters). None: every name."""

    @abc.abstractmethod
    async def load_histories(self, instance_ids: Sequence[str]) -> dict[str, list[HistoryEvent]]:
        """Histories of several instances in one round trip."""

    @abc.abstractmethod
    async def complete_episodes(
        self,
        commits: Sequence[EpisodeCommit],
        now: datetime,
        eager: EagerActivities | None = None,
    ) -> list[bool]:
        """Apply each commit whose lease is still held; return which were applied.

        With ``eager``, work items are inserted leased as :class:`EagerActivities` says.

        A child in ``new_instances`` whose id is held by a non-terminal instance is not
        created; instead the parent receives ``SubOrchestrationInstanceFailed``.
        """

    @abc.abstractmethod
    async def renew_episodes(
        self, leases: Sequence[tuple[str, int]], now: datetime, lease_for: float
    ) -> list[bool]:
        """Extend episode leases given as (instance_id, lease_token) to ``now +
        lease_for``; False where the lease is no longer held (lapsed and taken, committed,
        abandoned). For work held outside the store's own workers (the gRPC sidecar's SDK
        workers), whose holder shows it is alive."""

    @abc.abstractmethod
    async def abandon_episode(self, instance_id: str, lease_token: int) -> None:
        """Release a lease without changes, so the episode can be retried at once."""

    # -- activities -----------------------------------------------------------------

    @abc.abstractmethod
    async def lease_activities(
        self,
        now: datetime,
        limit: int,
        lease_for: float,
        owner: str,
        names: Collection[str] | None = None,
    ) -> list[WorkItem]:
        """Lease up to ``limit`` visible work items without a live lease, oldest first;
        with ``names``, only activities of those names (None: every name)."""

    @abc.abstractmethod
    async def complete_activities(
        self,
        results: Sequence[ActivityResult],
        now: datetime,
        eager: EagerEpisodes | None = None,
        *,
        inline: InlineEpisodes | None = None,
    ) -> list[bool]:
        """Delete each work item still leased with its token and enqueue its result.

        With ``inline``, apply the planned episodes of :class:`InlineEpisodes` in place
        of enqueuing their results; with ``eager``, also lease the (other) receiving
        instances as :class:`EagerEpisodes` says.
        """

    @abc.abstractmethod
    async def renew_activities(
        self, leases: Sequence[tuple[int, int]], now: datetime, lease_for: float
    ) -> list[bool]:
        """Extend leases given as (work_item_id, lease_token); False where lost."""

    # -- time -----------------------------------------------------------------------

    @abc.abstractmethod
    async def next_wakeup(self, now: datetime) -> datetime | None:
        """The earliest future moment at which new work becomes visible (a timer, a
        delayed start, an expiring lease), or None when nothing is pending."""

    @abc.abstractmethod
    async def has_runnable(
        self,
        now: datetime,
        episode_names: Collection[str] | None = None,
        activity_names: Collection[str] | None = None,
    ) -> bool:
        """Whether some message or work item is visible and unleased at ``now`` (and,
        with names, of an instance or activity that :meth:`lease_episodes` or
        :meth:`lease_activities` with those ``names`` would lease)."""


def names_json(names: Collection[str] | None) -> str | None:
    """``names`` as the JSON list the SQL name conditions take (None: every name)."""
    import json

    return None if names is None else json.dumps(sorted(set(names)))


def commit_kinds(
    commits: Sequence[EpisodeCommit], applied: Sequence[bool], eager: EagerActivities | None
) -> str:
    """The wake-up kinds of a batch of episode commits (``applied`` says which took)."""
    done = [c for c, ok in zip(commits, applied, strict=True) if ok]
    return _episode_kinds(done, 0 if eager is None else len(eager.leased))


def likely_commit_kinds(commits: Sequence[EpisodeCommit], eager: EagerActivities | None) -> str:
    """:func:`commit_kinds` as it will be if every commit applies and ``eager`` leases
    all it has room for (what a commit may notify before it knows its outcome)."""
    room = 0 if eager is None else max(0, eager.limit - len(eager.leased))
    return _episode_kinds(commits, room)


def _episode_kinds(done: Sequence[EpisodeCommit], leased: int) -> str:
    """The wake-up kinds of applied commits ``done`` whose first ``leased`` work items
    went to their committer."""
    changed = any(c.prior_status is not c.instance.status for c in done)
    kinds = STATUS if changed else ""
    # A released lease needs no EPISODES wake of its own: a message that arrived during
    # the episode woke the lease holder, which looks again after its commit.
    if any(c.messages or c.new_instances for c in done):
        kinds += EPISODES
    if sum(len(c.work_items) for c in done) > leased:
        kinds += ACTIVITIES
    return kinds + timed(m for c in done for m in c.messages)


def status_changes(commits: Sequence[EpisodeCommit], applied: Sequence[bool]) -> dict[str, Status]:
    """The instances whose status a batch of episode commits changed (the ids that
    :func:`commit_kinds`' :data:`STATUS` is about), with their new statuses."""
    return {
        c.instance.instance_id: c.instance.status
        for c, ok in zip(commits, applied, strict=True)
        if ok and c.prior_status is not c.instance.status
    }


def result_kinds(results: Sequence[ActivityResult], eager: EagerEpisodes | None) -> str:
    """EPISODES unless every applied result's instance was leased eagerly."""
    leased = set() if eager is None else {e.instance.instance_id for e in eager.leased}
    return "" if all(r.message.instance_id in leased for r in results) else EPISODES


def child_conflict_message(new: NewInstance, now: datetime) -> Message | None:
    """The failure a parent receives when its sub-orchestration's id is already running.

    Backends call this from :meth:`Store.complete_episodes` instead of creating the child.
    """
    from taskloom.history import ExecutionStarted, SubOrchestrationInstanceFailed

    started = new.start.event
    if not isinstance(started, ExecutionStarted) or started.parent is None:
        return None
    parent = started.parent
    failure = FailureDetails(
        "taskloom.errors.InstanceExistsError",
        f"cannot start sub-orchestration {started.name!r} as instance "
        f"{new.record.instance_id!r}: an instance with that id is still running; "
        "choose another instance_id or wait for it to finish",
    )
    event = SubOrchestrationInstanceFailed(
        timestamp=now, task_scheduled_id=parent.task_scheduled_id, failure=failure
    )
    return Message(parent.instance_id, event, AT_ONCE, parent.execution_id or None)
