"""taskloom: durable orchestrations for Python, self-hosted on SQLite or PostgreSQL.

The names here are the public API (see ``docs/`` and the README).
"""

from __future__ import annotations

from taskloom import testing
from taskloom._version import __version__ as __version__
from taskloom.activity_context import ActivityInfo, activity_info
from taskloom.app import App
from taskloom.client import AsyncClient, Client
from taskloom.cloudevents.event import CloudEvent
from taskloom.context import OrchestrationContext
from taskloom.converter import DataConverter
from taskloom.entities.context import Entity, EntityContext
from taskloom.entities.records import (
    CleanEntityStorageResult,
    EntityId,
    EntityMetadata,
    EntityStateResponse,
)
from taskloom.errors import (
    ConfigurationError,
    InstanceExistsError,
    InstanceNotFoundError,
    InvalidCloudEventError,
    InvalidEventError,
    InvalidFilterError,
    InvalidStateError,
    NonDeterminismError,
    OrchestrationError,
    PayloadTooLargeError,
    ScheduleNotFoundError,
    SerializationError,
    StoreError,
    TaskFailedError,
    TaskloomError,
    TaskTimeoutError,
    WrongExpectedVersionError,
)
from taskloom.events.projection import View
from taskloom.events.records import (
    ANY,
    NO_STREAM,
    STREAM_EXISTS,
    AppendResult,
    NewEvent,
    RecordedEvent,
    StreamState,
)
from taskloom.events.store import AsyncEventStore, EventStore, ViewRow
from taskloom.models import FailureDetails, OrchestrationState, Page, Status
from taskloom.retry import RetryPolicy
from taskloom.tasks import Task, TimerTask
from taskloom.topics.filters import AdvancedFilter, EventFilter
from taskloom.topics.publish import DeadLetter, PublishedEvent

__all__ = [  # noqa: RUF022 (plain sorted order, as test_public_api checks)
    "ANY",
    "ActivityInfo",
    "AdvancedFilter",
    "App",
    "AppendResult",
    "AsyncClient",
    "AsyncEventStore",
    "CleanEntityStorageResult",
    "Client",
    "CloudEvent",
    "ConfigurationError",
    "DataConverter",
    "DeadLetter",
    "Entity",
    "EntityContext",
    "EntityId",
    "EntityMetadata",
    "EntityStateResponse",
    "EventFilter",
    "EventStore",
    "FailureDetails",
    "InstanceExistsError",
    "InstanceNotFoundError",
    "InvalidCloudEventError",
    "InvalidEventError",
    "InvalidFilterError",
    "InvalidStateError",
    "NO_STREAM",
    "NewEvent",
    "NonDeterminismError",
    "OrchestrationContext",
    "OrchestrationError",
    "OrchestrationState",
    "Page",
    "PayloadTooLargeError",
    "PublishedEvent",
    "RecordedEvent",
    "RetryPolicy",
    "STREAM_EXISTS",
    "ScheduleNotFoundError",
    "SerializationError",
    "Status",
    "StoreError",
    "StreamState",
    "Task",
    "TaskFailedError",
    "TaskTimeoutError",
    "TaskloomError",
    "TimerTask",
    "View",
    "ViewRow",
    "WrongExpectedVersionError",
    "activity_info",
    "testing",
]
