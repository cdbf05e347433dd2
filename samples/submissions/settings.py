"""The settings and services both variants of seed 002 share (``app.py`` and
``orchestrated.py``): environment variables named ``SUBMISSIONS_<NAME>``, read when a
service is first needed. Tests replace the services with ``app.add_service``."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

from intake import IntakeTable
from job_service import JobServiceClient

import taskloom as tl


def env(name: str, default: str) -> str:
    """The setting ``SUBMISSIONS_<name>``, or ``default``."""
    return os.environ.get(f"SUBMISSIONS_{name}", default)


@dataclass(frozen=True)
class Settings:
    poll_interval: timedelta = timedelta(minutes=5)
    max_attempts: int = 3
    max_polls: int = 288
    batch_size: int = 25

    @classmethod
    def from_env(cls) -> Settings:
        return cls(
            poll_interval=timedelta(seconds=float(env("POLL_INTERVAL", "300"))),
            max_attempts=int(env("MAX_ATTEMPTS", "3")),
            max_polls=int(env("MAX_POLLS", "288")),
            batch_size=int(env("BATCH_SIZE", "25")),
        )


def _job_service_from_env() -> JobServiceClient:
    token = os.environ.get("SUBMISSIONS_JOB_SERVICE_TOKEN") or None
    return JobServiceClient(env("JOB_SERVICE_URL", "http://127.0.0.1:8090"), token)


def add_services(app: tl.App) -> None:
    """Register ``settings``, ``intake`` and ``job_service`` on ``app``, from the
    environment when first needed."""
    app.add_service("settings", factory=Settings.from_env)
    app.add_service(
        "intake", factory=lambda: IntakeTable(env("INTAKE_DB", "submissions-intake.db"))
    )
    app.add_service("job_service", factory=_job_service_from_env)
