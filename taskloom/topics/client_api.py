"""The clients' topic methods: ``publish``, ``read_topic``, ``replay_topic``,
``dead_letters`` and ``redrive`` (mixed into :class:`~taskloom.client.AsyncClient` and
:class:`~taskloom.client.Client`)."""

from __future__ import annotations

import json
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from taskloom.cloudevents.event import CloudEvent
from taskloom.errors import ConfigurationError, InvalidEventError
from taskloom.storage.events_base import EventLogStore
from taskloom.storage.topics_base import (
    SubscriptionRecord,
    TopicStore,
    fanout_consumer,
    topic_stream,
)
from taskloom.topics.publish import (
    DeadLetter,
    PublishedEvent,
    check_name,
    check_topic,
    publish,
    read_topic,
)
from taskloom.topics.specs import WebhookSpec

if TYPE_CHECKING:
    from taskloom.clock import Clock
    from taskloom.events.store import AsyncEventStore
    from taskloom.storage import Store

__all__ = ["AsyncTopicsMixin", "TopicSubscription", "TopicsMixin"]

T = TypeVar("T")


class AsyncTopicsMixin:
    """Topic methods of :class:`~taskloom.client.AsyncClient`."""

    if TYPE_CHECKING:
        clock: Clock

        @property
        def events(self) -> AsyncEventStore: ...

        async def _ready(self) -> Store: ...

    async def _topics(self) -> tuple[TopicStore, EventLogStore]:
        store = await self._ready()
        if not isinstance(store, TopicStore) or not isinstance(store, EventLogStore):
            raise ConfigurationError(f"{store!r} has no topics")
        return store, store

    async def publish(self, topic: str, event: CloudEvent | Sequence[CloudEvent]) -> list[int]:
        """Publish one CloudEvent (or a list, in one transaction) to ``topic``; the log
        position of each. An event whose ``source`` and ``id`` were published to the topic
        before is accepted and not stored or delivered again (its first position is
        returned). Inside a handler that declares effects the events are published with
        its acknowledgement, and ``[]`` is returned."""
        return await publish(self.events, topic, event)

    async def read_topic(
        self,
        topic: str,
        *,
        after: int = 0,
        since: datetime | None = None,
        limit: int = 1000,
    ) -> list[PublishedEvent]:
        """The topic's events after log position ``after`` (or from ``since``), oldest
        first, at most ``limit``."""
        topics, _ = await self._topics()
        return await read_topic(self.events, topics, topic, after=after, since=since, limit=limit)

    async def replay_topic(
        self,
        topic: str,
        *,
        subscription: str | None = None,
        after: int = 0,
        since: datetime | None = None,
    ) -> int:
        """Deliver the topic's events again from log position ``after`` (or from the
        first published at or after ``since``) to one subscription, or to all of the
        topic's; how many subscriptions were moved. Events already waiting for delivery
        are not doubled."""
        topics, log = await self._topics()
        name = check_topic(topic)
        if not isinstance(after, int) or after < 0:
            raise InvalidEventError(f"after {after!r} must be a log position (an int >= 0)")
        if since is not None:
            if since.tzinfo is None:
                raise InvalidEventError("since must be an aware datetime (e.g. in UTC)")
            after = await topics.position_at(topic_stream(name), since)
        records = await topics.subscription_list(name)
        if subscription is not None:
            check_name("subscription", subscription)
            records = [r for r in records if r.name == subscription]
            if not records:
                raise InvalidEventError(
                    f"topic {name!r} has no subscription {subscription!r}; see "
                    "`taskloom topics list` for its subscriptions"
                )
        now = self.clock.now()
        for record in records:
            await log.consumer_reset(fanout_consumer(record.name), after, now)
        return len(records)

    async def dead_letters(
        self, topic: str, *, subscription: str | None = None, limit: int = 1000
    ) -> list[DeadLetter]:
        """The topic's dead letters (of one subscription, or all), oldest first."""
        topics, _ = await self._topics()
        name = check_topic(topic)
        sub = None if subscription is None else check_name("subscription", subscription)
        return [DeadLetter.of(r) for r in await topics.dead_letters(name, sub, limit)]

    async def redrive(
        self,
        topic: str,
        *,
        subscription: str | None = None,
        ids: Sequence[str] | None = None,
    ) -> int:
        """Deliver dead letters again (those whose CloudEvent ``id`` is in ``ids``, or
        all), from a first attempt with a fresh time to live; how many."""
        topics, _ = await self._topics()
        name = check_topic(topic)
        sub = None if subscription is None else check_name("subscription", subscription)
        positions = None
        if ids is not None:
            if isinstance(ids, str):
                raise InvalidEventError("ids takes a list of CloudEvent ids, not one string")
            wanted = set(ids)
            letters = await topics.dead_letters(name, sub, 1_000_000)
            positions = [
                d.position for d in map(DeadLetter.of, letters) if d.event and d.event.id in wanted
            ]
        return await topics.redrive(name, sub, positions, self.clock.now())

    async def subscribe(
        self,
        topic: str,
        name: str,
        spec: WebhookSpec,
        *,
        after: int | None = None,
    ) -> bool:
        """Create (or change) webhook subscription ``name`` of ``topic``; it receives the
        events published after now, or after log position ``after``. True if created.
        (Use :func:`taskloom.topics.webhook.subscribe_webhook` to check the endpoint with
        the validation handshake first, as ``taskloom topics subscribe`` does.)"""
        topics, log = await self._topics()
        topic = check_topic(topic)
        check_name("subscription", name)
        if not isinstance(spec, WebhookSpec):
            raise InvalidEventError("spec must be a WebhookSpec")
        existing = await topics.subscription_get(name)
        if existing is not None and (existing.kind != "webhook" or existing.topic != topic):
            raise InvalidEventError(
                f"subscription {name!r} already exists as a {existing.kind} of topic "
                f"{existing.topic!r}; choose another name"
            )
        now = self.clock.now()
        record = SubscriptionRecord(name, topic, "webhook", json.dumps(spec.to_json()), now, now)
        created = await topics.subscription_put(record)
        start = await log.log_head() if after is None else after
        if created or after is not None:
            await log.consumer_ensure(fanout_consumer(name), 1, start, now)
            if after is not None:
                await log.consumer_reset(fanout_consumer(name), start, now)
        return created

    async def unsubscribe(self, name: str) -> bool:
        """Delete a webhook subscription with its pending deliveries and dead letters."""
        topics, _ = await self._topics()
        existing = await topics.subscription_get(check_name("subscription", name))
        if existing is not None and existing.kind != "webhook":
            raise InvalidEventError(
                f"{name!r} is an event trigger of the app; remove it from the code instead"
            )
        return await topics.subscription_delete(name)

    async def subscriptions(self, topic: str | None = None) -> list[TopicSubscription]:
        """The hub's topic subscriptions (event triggers and webhooks) with their
        pending deliveries, dead letters and fan-out lag."""
        topics, log = await self._topics()
        stats = {s.subscription: s for s in await topics.delivery_stats()}
        out = []
        for record in await topics.subscription_list(None if topic is None else check_topic(topic)):
            states = await log.consumer_states(fanout_consumer(record.name))
            position = min((st.position for st in states), default=0)
            behind = await log.read_log(position, 1000, stream=topic_stream(record.topic))
            st = stats.get(record.name)
            spec = json.loads(record.spec)
            if spec.pop("secret", None) is not None:
                spec["signed"] = True
            out.append(
                TopicSubscription(
                    record.name,
                    record.topic,
                    record.kind,
                    spec,
                    position,
                    len(behind),
                    st.pending if st else 0,
                    st.dead_letters if st else 0,
                    st.next_due if st else None,
                )
            )
        return out


@dataclass(frozen=True)
class TopicSubscription:
    """A subscription as listed: ``lag`` counts the topic's events not fanned out yet
    (at most 1000), ``pending`` the deliveries waiting (retries included)."""

    name: str
    topic: str
    kind: str
    spec: dict[str, Any]
    position: int
    lag: int
    pending: int
    dead_letters: int
    next_due: datetime | None


class TopicsMixin:
    """The same methods, blocking, for :class:`~taskloom.client.Client`."""

    if TYPE_CHECKING:

        def _run(self, coro: Coroutine[Any, Any, T]) -> T: ...

    @property
    def _a(self) -> AsyncTopicsMixin:
        client: AsyncTopicsMixin = self.__dict__["_async"]
        return client

    def publish(self, topic: str, event: CloudEvent | Sequence[CloudEvent]) -> list[int]:
        result: list[int] = self._run(self._a.publish(topic, event))
        return result

    def read_topic(
        self, topic: str, *, after: int = 0, since: datetime | None = None, limit: int = 1000
    ) -> list[PublishedEvent]:
        coro = self._a.read_topic(topic, after=after, since=since, limit=limit)
        result: list[PublishedEvent] = self._run(coro)
        return result

    def replay_topic(
        self,
        topic: str,
        *,
        subscription: str | None = None,
        after: int = 0,
        since: datetime | None = None,
    ) -> int:
        coro = self._a.replay_topic(topic, subscription=subscription, after=after, since=since)
        return int(self._run(coro))

    def dead_letters(
        self, topic: str, *, subscription: str | None = None, limit: int = 1000
    ) -> list[DeadLetter]:
        coro = self._a.dead_letters(topic, subscription=subscription, limit=limit)
        result: list[DeadLetter] = self._run(coro)
        return result

    def redrive(
        self, topic: str, *, subscription: str | None = None, ids: Sequence[str] | None = None
    ) -> int:
        return int(self._run(self._a.redrive(topic, subscription=subscription, ids=ids)))

    def subscribe(
        self, topic: str, name: str, spec: WebhookSpec, *, after: int | None = None
    ) -> bool:
        return bool(self._run(self._a.subscribe(topic, name, spec, after=after)))

    def unsubscribe(self, name: str) -> bool:
        return bool(self._run(self._a.unsubscribe(name)))

    def subscriptions(self, topic: str | None = None) -> list[TopicSubscription]:
        result: list[TopicSubscription] = self._run(self._a.subscriptions(topic))
        return result
