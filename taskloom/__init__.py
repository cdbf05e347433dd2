"""taskloom: durable orchestrations for Python, self-hosted on SQLite or PostgreSQL.

The names here are the public API (see ``docs/`` and the README).
"""

from __future__ import annotations

from taskloom import testing
from taskloom._version import __version__ as __version__
from taskloom.activity_context import ActivityInfo, activity_info
from taskloom.app import App
from taskloom.client import AsyncClient, Client
from taskloom.context import OrchestrationContext
from taskloom.converter import DataConverter
from taskloom.errors import (
    ConfigurationError,
    InstanceExistsError,
    InstanceNotFoundError,
    InvalidStateError,
    NonDeterminismError,
    OrchestrationError,
    ScheduleNotFoundError,
    SerializationError,
    StoreError,
    TaskFailedError,
    TaskloomError,
    TaskTimeoutError,
)
from taskloom.models import FailureDetails, OrchestrationState, Page, Status
from taskloom.retry import RetryPolicy
from taskloom.tasks import Task, TimerTask

__all__ = [
    "ActivityInfo",
    "App",
    "AsyncClient",
    "Client",
    "ConfigurationError",
    "DataConverter",
    "FailureDetails",
    "InstanceExistsError",
    "InstanceNotFoundError",
    "InvalidStateError",
    "NonDeterminismError",
    "OrchestrationContext",
    "OrchestrationError",
    "OrchestrationState",
    "Page",
    "RetryPolicy",
    "ScheduleNotFoundError",
    "SerializationError",
    "Status",
    "StoreError",
    "Task",
    "TaskFailedError",
    "TaskTimeoutError",
    "TaskloomError",
    "TimerTask",
    "activity_info",
    "testing",
]
