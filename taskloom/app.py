"""The App: a task hub's registry of orchestrators and activities, and its entry points."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any, TypeVar, overload

from taskloom.context import OrchestrationContext
from taskloom.converter import DataConverter, default_converter
from taskloom.entities.context import Entity
from taskloom.entities.executor import EntityFunction
from taskloom.errors import ConfigurationError
from taskloom.events.projection import ProjectionSpec
from taskloom.events.subscription import SubscriptionSpec
from taskloom.topics.specs import EventTriggerSpec
from taskloom.versioning import VersionPolicy

if TYPE_CHECKING:
    from fastapi import APIRouter

    from taskloom.client import Client
    from taskloom.runtime.worker import WorkerOptions

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Schedule:
    name: str
    spec: str  # "cron:<expression>" or "every:<seconds>"
    fn: Callable[..., Any]
    missed: str
    is_async: bool


@dataclass(frozen=True)
class QueueTrigger:
    queue: str
    fn: Callable[..., Any]
    max_dequeue_count: int
    visibility_timeout: timedelta
    is_async: bool


@dataclass(frozen=True)
class Activity:
    name: str
    fn: Callable[..., Any]
    takes_input: bool
    is_async: bool
    services: tuple[str, ...] = ()


class App:
    """A task hub's code: ``App("claims")`` names the hub; decorators register functions."""

    def __init__(
        self,
        name: str = "default",
        *,
        converter: DataConverter | None = None,
        max_concurrent_activities: int | None = None,
        max_concurrent_orchestrations: int | None = None,
        version: str | None = None,
        default_version: str | None = None,
        version_match: str = "any",
        version_mismatch: str = "wait",
    ) -> None:
        if not name or not all(c.isalnum() or c in "-_" for c in name):
            raise ConfigurationError(
                f"invalid app name {name!r}: use letters, digits, '-' and '_' (it names the hub)"
            )
        self.name = name
        # What this app's workers run and stamp on what they start (docs/semantics.md,
        # "Versioning"); validated here, so a bad policy fails at import.
        self.versioning = VersionPolicy(version, default_version, version_match, version_mismatch)
        self.converter = converter or default_converter
        self.activities: dict[str, Activity] = {}
        self.orchestrators: dict[str, Callable[[OrchestrationContext], Any]] = {}
        # Entities by lower-cased name: a function taking the EntityContext, or an
        # ``Entity`` subclass (see docs/entities.md).
        self.entities: dict[str, EntityFunction | type[Entity]] = {}
        self.schedules: dict[str, Schedule] = {}
        self.queue_triggers: dict[str, QueueTrigger] = {}
        self.projections: dict[str, ProjectionSpec] = {}
        self.subscriptions: dict[str, SubscriptionSpec] = {}
        self.event_triggers: dict[str, EventTriggerSpec] = {}
        self._router: APIRouter | None = None
        self._limits = {
            "max_concurrent_activities": max_concurrent_activities,
            "max_concurrent_orchestrations": max_concurrent_orchestrations,
        }
        self._services: dict[str, Any] = {}
        self._factories: dict[str, Callable[[], Any]] = {}

    # -- registration ---------------------------------------------------------------

    @overload
    def activity(self, fn: F) -> F: ...
    @overload
    def activity(self, *, name: str | None = None) -> Callable[[F], F]: ...

    def activity(self, fn: F | None = None, *, name: str | None = None) -> Any:
        """Register an activity under its function name (or ``name``)."""

        def register(f: F) -> F:
            key = name or f.__name__
            self._check_new(key, self.activities, "activity")
            params = _positional_params(f)
            if params > 1:
                raise ConfigurationError(
                    f"activity {key!r} takes {params} arguments; an activity takes at most "
                    "one, its input (pass a dict or a dataclass for several values)"
                )
            services = _keyword_only_params(f)
            is_async = inspect.iscoroutinefunction(f)
            self.activities[key] = Activity(key, f, params == 1, is_async, services)
            f.__taskloom_name__ = key  # type: ignore[attr-defined]
            return f

        return register(fn) if fn is not None else register

    @overload
    def orchestrator(self, fn: F) -> F: ...
    @overload
    def orchestrator(self, *, name: str | None = None) -> Callable[[F], F]: ...

    def orchestrator(self, fn: F | None = None, *, name: str | None = None) -> Any:
        """Register an orchestrator (a generator function taking ``ctx`` [, input])."""

        def register(f: F) -> F:
            key = name or f.__name__
            self._check_new(key, self.orchestrators, "orchestrator")
            params = _positional_params(f)
            if params not in (1, 2):
                raise ConfigurationError(
                    f"orchestrator {key!r} must take ctx and optionally the input, "
                    f"not {params} arguments"
                )
            if params == 2:

                def call(ctx: OrchestrationContext) -> Any:
                    return f(ctx, ctx.get_input())

                self.orchestrators[key] = call
            else:
                self.orchestrators[key] = f
            f.__taskloom_name__ = key  # type: ignore[attr-defined]
            return f

        return register(fn) if fn is not None else register

    @overload
    def entity(self, fn: F) -> F: ...
    @overload
    def entity(self, *, name: str | None = None) -> Callable[[F], F]: ...

    def entity(self, fn: F | None = None, *, name: str | None = None) -> Any:
        """Register an entity: a function taking the ``EntityContext``, or a ``tl.Entity``
        subclass whose public methods are its operations. Names ignore case."""

        def register(f: F) -> F:
            key = (name or f.__name__).lower()
            if not key or "@" in key:
                raise ConfigurationError(f"invalid entity name {key!r}: it may not contain '@'")
            self._check_new(key, self.entities, "entity")
            if isinstance(f, type):
                if not issubclass(f, Entity):
                    raise ConfigurationError(f"entity class {f.__name__} must subclass tl.Entity")
                self.entities[key] = f
            elif _positional_params(f) != 1:
                raise ConfigurationError(f"entity function {key!r} must take exactly ctx")
            else:
                self.entities[key] = f
            return f

        return register(fn) if fn is not None else register

    def schedule(
        self,
        cron: str | None = None,
        *,
        every: timedelta | None = None,
        name: str | None = None,
        missed: str = "run_once",
    ) -> Callable[[F], F]:
        """Run the handler ``(client, scheduled_time)`` on a schedule, once per tick
        across all hosts: a six-field NCRONTAB (seconds first), a five-field cron, or
        ``every=timedelta``. ``missed="run_once"`` runs one late tick after downtime and
        skips the rest; ``"skip"`` skips them all."""
        if (cron is None) == (every is None):
            raise ConfigurationError(
                "@app.schedule needs exactly one of a cron expression or every="
            )
        if missed not in ("run_once", "skip"):
            raise ConfigurationError(f"missed must be 'run_once' or 'skip', not {missed!r}")
        if every is not None and every < timedelta(seconds=1):
            raise ConfigurationError("a schedule's interval must be at least one second")
        if cron is not None:
            from taskloom.cron import Cron, CronError

            try:
                Cron.parse(cron)
            except CronError as exc:
                raise ConfigurationError(str(exc)) from exc
        spec = f"cron:{cron}" if cron is not None else f"every:{every.total_seconds():g}"  # type: ignore[union-attr]

        def register(f: F) -> F:
            key = name or f.__name__
            self._check_new(key, self.schedules, "schedule")
            self.schedules[key] = Schedule(key, spec, f, missed, inspect.iscoroutinefunction(f))
            return f

        return register

    def queue_trigger(
        self,
        queue: str,
        *,
        max_dequeue_count: int = 5,
        visibility_timeout: timedelta = timedelta(seconds=30),
    ) -> Callable[[F], F]:
        """Run the handler ``(message, client)`` for each message on ``queue``, at least
        once; after ``max_dequeue_count`` failures the message moves to ``queue-poison``."""
        if not queue or not all(c.isalnum() or c in "-_." for c in queue):
            raise ConfigurationError(
                f"invalid queue name {queue!r}: use letters, digits, '-', '_' and '.'"
            )
        if max_dequeue_count < 1:
            raise ConfigurationError("max_dequeue_count must be at least 1")

        def register(f: F) -> F:
            self._check_new(queue, self.queue_triggers, "queue trigger for")
            trigger = QueueTrigger(
                queue, f, max_dequeue_count, visibility_timeout, inspect.iscoroutinefunction(f)
            )
            self.queue_triggers[queue] = trigger
            return f

        return register

    def projection(
        self,
        name: str,
        *,
        inline: bool = False,
        types: list[str] | None = None,
        indexes: list[str] | tuple[str, ...] = (),
        max_attempts: int = 5,
    ) -> Callable[[F], F]:
        """Keep read model ``name`` with the handler ``(event, view)``: inline (in every
        append's transaction through a store that knows the app) or following the log.
        ``indexes`` names top-level document fields to index for queries."""
        from taskloom.storage.events_base import check_field

        _check_name(name, "projection")
        for field in indexes:
            try:
                check_field(field)
            except ValueError as exc:
                raise ConfigurationError(f"projection {name!r}: {exc}") from exc
        if max_attempts < 1:
            raise ConfigurationError("max_attempts must be at least 1")

        def register(f: F) -> F:
            self._check_new(name, self.projections, "projection")
            self.projections[name] = ProjectionSpec(
                name,
                f,
                inline=inline,
                types=None if types is None else frozenset(types),
                indexes=tuple(indexes),
                max_attempts=max_attempts,
            )
            return f

        return register

    def subscription(
        self,
        name: str,
        *,
        types: list[str] | None = None,
        partitions: int = 8,
        max_attempts: int = 10,
        start: str = "beginning",
    ) -> Callable[[F], F]:
        """Run the handler ``(event, client)`` at least once for every event of the log
        (of ``types``), in stream order per stream, spread over every process running
        the app; after ``max_attempts`` failures the event is parked."""
        from taskloom.events.subscription import check_partitions

        _check_name(name, "subscription")
        try:
            check_partitions(partitions)
        except ValueError as exc:
            raise ConfigurationError(f"subscription {name!r}: {exc}") from exc
        if max_attempts < 1:
            raise ConfigurationError("max_attempts must be at least 1")
        if start not in ("beginning", "end"):
            raise ConfigurationError(f"start must be 'beginning' or 'end', not {start!r}")

        def register(f: F) -> F:
            self._check_new(name, self.subscriptions, "subscription")
            self.subscriptions[name] = SubscriptionSpec(
                name,
                f,
                inspect.iscoroutinefunction(f),
                types=None if types is None else frozenset(types),
                partitions=partitions,
                max_attempts=max_attempts,
                start=start,
                wants_events="events" in _keyword_only_params(f),
            )
            return f

        return register

    def event_trigger(
        self,
        topic: str,
        *,
        name: str | None = None,
        types: list[str] | None = None,
        subject_begins_with: str | None = None,
        subject_ends_with: str | None = None,
        max_delivery_attempts: int = 30,
        event_ttl: timedelta = timedelta(hours=24),
        advanced_filters: list[Any] | None = None,
        filter: Any = None,
        start: str = "beginning",
        concurrency: int = 16,
    ) -> Callable[[F], F]:
        """Run the handler ``(event: tl.CloudEvent, client)`` at least once for every event
        of ``topic`` that passes the filter (Event Grid's: ``types``, subject prefix and
        suffix, ``advanced_filters`` as ``tl.AdvancedFilter`` objects or Event Grid JSON,
        or a whole ``tl.EventFilter`` as ``filter``). Failures are retried on Event Grid's
        schedule; after ``max_delivery_attempts`` attempts (the first included) or
        ``event_ttl`` the event goes to the trigger's dead letters."""
        from taskloom.topics.filters import AdvancedFilter, EventFilter
        from taskloom.topics.policy import RetryPolicy
        from taskloom.topics.publish import check_topic

        try:
            check_topic(topic)
            if filter is not None:
                if not isinstance(filter, EventFilter):
                    raise ConfigurationError("filter must be a tl.EventFilter")
                if types or subject_begins_with or subject_ends_with or advanced_filters:
                    raise ConfigurationError(
                        "pass either filter= or types/subject/advanced_filters, not both"
                    )
                flt = filter
            else:
                advanced = [
                    f if isinstance(f, AdvancedFilter) else AdvancedFilter.from_json(f)
                    for f in advanced_filters or []
                ]
                flt = EventFilter(
                    included_event_types=types,
                    subject_begins_with=subject_begins_with,
                    subject_ends_with=subject_ends_with,
                    advanced_filters=advanced,
                )
            retry = RetryPolicy(max_delivery_attempts, event_ttl)
        except ConfigurationError:
            raise
        except ValueError as exc:
            raise ConfigurationError(f"event trigger on topic {topic!r}: {exc}") from exc
        if start not in ("beginning", "end"):
            raise ConfigurationError(f"start must be 'beginning' or 'end', not {start!r}")
        if not isinstance(concurrency, int) or not 1 <= concurrency <= 1000:
            raise ConfigurationError(f"concurrency must be an int 1..1000, not {concurrency!r}")

        def register(f: F) -> F:
            trigger = name or f.__name__
            _check_name(trigger, "event trigger")
            check_topic(trigger)  # it names a subscription of the topic too
            self._check_new(trigger, self.event_triggers, "event trigger")
            self.event_triggers[trigger] = EventTriggerSpec(
                trigger,
                topic,
                f,
                inspect.iscoroutinefunction(f),
                filter=flt,
                retry=retry,
                wants_events="events" in _keyword_only_params(f),
                start=start,
                concurrency=concurrency,
            )
            return f

        return register

    @property
    def api(self) -> APIRouter:
        """A FastAPI ``APIRouter`` for the app's own HTTP routes (served by ``taskloom
        serve`` beside the management API); handlers get a client with
        ``Depends(taskloom.http.client)``."""
        if self._router is None:
            from fastapi import APIRouter

            self._router = APIRouter()
        return self._router

    # -- services (dependency injection) ----------------------------------------------

    def add_service(
        self, name: str, value: Any = None, *, factory: Callable[[], Any] | None = None
    ) -> None:
        """Make ``value`` (or what ``factory()`` returns, built once per worker on first
        use) available to every activity that declares a keyword-only parameter ``name``:
        ``def load(rows, *, db): ...``. Tests replace services the same way.

        ``client`` is built in: an activity declaring ``*, client`` gets the worker's
        client (``AsyncClient`` for ``async def``, a blocking ``Client`` otherwise), the
        host's under ``taskloom serve``, so it can also make event links. ``events`` is
        built in too: an event store whose appends commit with the activity's result."""
        if name in ("client", "events"):
            raise ConfigurationError(
                f"{name!r} is a built-in service (the worker's client, or an event store "
                "whose appends commit with the activity's result); choose another name"
            )
        if (value is None) == (factory is None):
            raise ConfigurationError(f"add_service({name!r}) needs a value or a factory=")
        self._services.pop(name, None)
        self._factories.pop(name, None)
        if factory is not None:
            self._factories[name] = factory
        else:
            self._services[name] = value

    def service(self, name: str) -> Any:
        """The service registered as ``name`` (built on first use)."""
        if name not in self._services:
            factory = self._factories.get(name)
            if factory is None:
                known = ", ".join(sorted({*self._services, *self._factories})) or "none"
                raise ConfigurationError(
                    f"no service named {name!r} in app {self.name!r} (registered: {known}); "
                    f"call app.add_service({name!r}, ...) before the worker starts"
                )
            self._services[name] = factory()
        return self._services[name]

    def worker_options(self, **overrides: Any) -> WorkerOptions:
        """Worker settings: the app's limits, then ``overrides`` that are not None."""
        from taskloom.runtime.worker import WorkerOptions

        chosen: dict[str, Any] = {k: v for k, v in self._limits.items() if v is not None}
        chosen.update({k: v for k, v in overrides.items() if v is not None})
        return WorkerOptions(**chosen)

    def _check_new(self, key: str, table: dict[str, Any], what: str) -> None:
        if key in table:
            raise ConfigurationError(f"{what} {key!r} is registered twice in app {self.name!r}")

    # -- entry points ---------------------------------------------------------------

    def client(self, store_url: str = "sqlite:///taskloom.db") -> Client:
        """A synchronous client for this app's hub."""
        from taskloom.client import Client

        return Client(
            store_url,
            hub=self.name,
            converter=self.converter,
            projections=list(self.projections.values()),
            default_version=self.versioning.start_version,
        )

    def run(self, store_url: str = "sqlite:///taskloom.db", **options: Any) -> None:
        """Run a worker in this process until SIGINT or SIGTERM, then stop gracefully."""
        from taskloom.runtime.runner import run_app

        run_app(self, store_url, **options)


def _check_name(name: str, what: str) -> None:
    if not isinstance(name, str) or not name or not all(c.isalnum() or c in "-_." for c in name):
        raise ConfigurationError(
            f"invalid {what} name {name!r}: use letters, digits, '-', '_' and '.'"
        )


def _keyword_only_params(fn: Callable[..., Any]) -> tuple[str, ...]:
    sig = inspect.signature(fn)
    return tuple(n for n, p in sig.parameters.items() if p.kind is inspect.Parameter.KEYWORD_ONLY)


def _positional_params(fn: Callable[..., Any]) -> int:
    sig = inspect.signature(fn)
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return sum(1 for p in sig.parameters.values() if p.kind in kinds)
