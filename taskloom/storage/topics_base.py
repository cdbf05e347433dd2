"""The topics' part of the storage protocol: subscriptions, deliveries, dead letters.

Backends implement :class:`TopicStore` beside their event log (``sqlite_topics.py``,
``postgres_topics.py``), on the same connection and hub. Like the rest of the protocol,
every method takes ``now`` from its caller.

A topic is a stream of the hub's log (``$topic-<name>``) holding CloudEvents. Each
subscription of a topic (an event trigger registered by an app, or a webhook stored by
``taskloom topics subscribe``) has:

- a **fan-out consumer** ``topic:<subscription>``, an ordinary one-partition log consumer
  whose transaction turns the topic's new events that pass the subscription's filter into
  *delivery rows* (:meth:`EventTx.schedule_deliveries`) and moves its checkpoint;
- **delivery rows**, one per (subscription, event), leased like queue messages: a lease
  counts an attempt and hides the row until ``due_at``; success deletes the row (in the
  same transaction as the handler's effects), a failure sets the next ``due_at``, the last
  failure moves it to the **dead letters** with Event Grid's fields. So one event that
  keeps failing waits for its retry without holding up the events behind it.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from taskloom.storage.events_base import EventTx, StoredEvent

__all__ = [
    "DeadLetterRecord",
    "Delivery",
    "DeliveryHook",
    "DeliveryStats",
    "SubscriptionRecord",
    "TopicStore",
    "fanout_consumer",
    "letter_filter",
    "merge_stats",
    "topic_stream",
]


def topic_stream(topic: str) -> str:
    """The log stream holding a topic's events."""
    return f"$topic-{topic}"


def fanout_consumer(subscription: str) -> str:
    """The log consumer that feeds a subscription's deliveries."""
    return f"topic:{subscription}"


@dataclass(frozen=True)
class SubscriptionRecord:
    """A topic subscription as stored: ``kind`` is ``"trigger"`` (handled by an app's
    ``@app.event_trigger``) or ``"webhook"``; ``spec`` is its JSON configuration
    (filter, retry policy, endpoint, ...)."""

    name: str
    topic: str
    kind: str
    spec: str
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class Delivery:
    """A leased delivery of one event to one subscription. ``attempts`` counts this
    one; ``event`` is None when the event was purged from the log meanwhile."""

    subscription: str
    position: int
    topic: str
    attempts: int
    lease_token: int
    published_at: datetime
    last_outcome: str | None
    event: StoredEvent | None


@dataclass(frozen=True)
class DeadLetterRecord:
    """A delivery given up on, with Event Grid's dead-letter fields."""

    subscription: str
    position: int
    topic: str
    reason: str
    delivery_attempts: int
    last_delivery_outcome: str
    published_at: datetime
    last_attempt_at: datetime
    dead_lettered_at: datetime
    event: StoredEvent | None


@dataclass(frozen=True)
class DeliveryStats:
    """A subscription's pending deliveries and dead letters."""

    subscription: str
    pending: int
    next_due: datetime | None
    dead_letters: int


def letter_filter(
    topic: str | None, subscription: str | None, mark: str
) -> tuple[str, list[object]]:
    """The ``AND ...`` clauses (on alias ``d``) and parameters that narrow dead letters to
    a topic and a subscription; ``mark`` is the dialect's placeholder."""
    where, params = "", list[object]()
    for column, value in (("topic", topic), ("subscription", subscription)):
        if value is not None:
            where += f" AND d.{column} = {mark}"
            params.append(value)
    return where, params


def merge_stats(
    pending: dict[str, tuple[int, datetime | None]], dead: dict[str, int]
) -> list[DeliveryStats]:
    """Per subscription with rows or dead letters, by name: ``pending`` maps it to its
    row count and earliest due time, ``dead`` to its dead letters."""
    return [
        DeliveryStats(name, *pending.get(name, (0, None)), dead.get(name, 0))
        for name in sorted(set(pending) | set(dead))
    ]


#: Runs inside a delivery's settling transaction (the handler's buffered effects).
DeliveryHook = Callable[[EventTx], None]


class TopicStore(abc.ABC):
    """Subscriptions, deliveries and dead letters of one hub (see the module docstring)."""

    # -- subscriptions --------------------------------------------------------------

    @abc.abstractmethod
    async def subscription_put(self, record: SubscriptionRecord) -> bool:
        """Create the subscription, or replace its topic, kind and spec (keeping
        ``created_at``). True if it was created."""

    @abc.abstractmethod
    async def subscription_get(self, name: str) -> SubscriptionRecord | None: ...

    @abc.abstractmethod
    async def subscription_list(self, topic: str | None = None) -> list[SubscriptionRecord]: ...

    @abc.abstractmethod
    async def subscription_delete(self, name: str) -> bool:
        """Remove the subscription with its fan-out consumer, pending deliveries and
        dead letters. False if there was none."""

    # -- deliveries ----------------------------------------------------------------

    @abc.abstractmethod
    async def delivery_lease(
        self,
        subscription: str,
        owner: str,
        now: datetime,
        visibility: float,
        limit: int,
        after: int = 0,
    ) -> list[Delivery]:
        """Lease up to ``limit`` due rows (``due_at <= now``) of ``subscription`` whose
        position is above ``after``, oldest event first: each lease adds an attempt, takes
        a new fencing token and hides the row for ``visibility`` seconds. (``after`` lets
        a runner skip the rows it has leased before, and on PostgreSQL their dead
        versions.)"""

    @abc.abstractmethod
    async def delivery_settle(
        self, delivery: Delivery, now: datetime, hook: DeliveryHook | None = None
    ) -> bool:
        """Delete a delivered row, running ``hook`` in the same transaction; False (and
        nothing written) if the lease was lost."""

    @abc.abstractmethod
    async def delivery_ack(self, deliveries: Sequence[Delivery]) -> int:
        """Delete delivered rows whose leases are still held, in one transaction; how
        many (the others were lost to another host and are delivered again)."""

    @abc.abstractmethod
    async def delivery_retry(
        self, delivery: Delivery, due_at: datetime, outcome: str, now: datetime
    ) -> bool:
        """Record a failed attempt; the row is due again at ``due_at`` (fenced)."""

    @abc.abstractmethod
    async def delivery_dead_letter(
        self, delivery: Delivery, reason: str, outcome: str, now: datetime
    ) -> bool:
        """Move the row to the dead letters (fenced)."""

    @abc.abstractmethod
    async def delivery_next_due(self, subscriptions: Sequence[str]) -> datetime | None:
        """The earliest ``due_at`` of these subscriptions' rows (leased ones too)."""

    @abc.abstractmethod
    async def delivery_stats(self) -> list[DeliveryStats]:
        """Per subscription with rows or dead letters: counts and the next due time."""

    # -- dead letters ---------------------------------------------------------------

    @abc.abstractmethod
    async def dead_letters(
        self, topic: str | None, subscription: str | None, limit: int
    ) -> list[DeadLetterRecord]:
        """Dead letters, oldest first, with their events."""

    @abc.abstractmethod
    async def redrive(
        self,
        topic: str | None,
        subscription: str | None,
        positions: Sequence[int] | None,
        now: datetime,
    ) -> int:
        """Move dead letters back to delivery rows due now, with no attempts made and
        ``published_at = now`` (a fresh time to live). How many were moved."""

    # -- reading a topic ------------------------------------------------------------

    @abc.abstractmethod
    async def position_at(self, stream_id: str, at: datetime) -> int:
        """The position just before the stream's first event recorded at or after
        ``at`` (the log head if there is none): a checkpoint that replays from then."""
