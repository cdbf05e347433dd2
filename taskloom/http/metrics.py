"""``GET /metrics``: the host's metrics in the Prometheus text format.

Any key with the ``read`` right may scrape (Prometheus sends it as
``authorization: {credentials: KEY}``, i.e. ``Authorization: Bearer KEY``); an open
loopback host admits scrapes without one, as for every other route. Besides this
process's counters and histograms (:mod:`taskloom.observability.metrics`), a scrape
reports the hub's backlog and live workers, read from the store in two cheap queries
and kept for two seconds, so several scrapers (or a dashboard) never load the store.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from fastapi import APIRouter, Request
from fastapi.responses import Response

from taskloom.http import auth
from taskloom.observability.metrics import REGISTRY, Gauge, Metric
from taskloom.storage.host_base import HostStore

router = APIRouter()

#: Seconds a scrape's store figures are reused.
CACHE_SECONDS = 2.0
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@dataclass
class _Figures:
    at: float = -1e9
    metrics: list[Metric] = field(default_factory=list)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


async def store_figures(store: HostStore, cache: _Figures) -> list[Metric]:
    """The hub's backlog and live workers, at most one read per ``CACHE_SECONDS``."""
    async with cache.lock:
        if time.monotonic() - cache.at < CACHE_SECONDS:
            return cache.metrics
        now = datetime.now(UTC)
        depth = Gauge(
            "taskloom_backlog_depth",
            "Work waiting in the hub, by kind (orchestration messages, activity items).",
            ("kind",),
        )
        age = Gauge(
            "taskloom_backlog_oldest_age_seconds",
            "Age of the longest-waiting entry of the hub's backlog, by kind (0 when empty).",
            ("kind",),
        )
        for figure in await store.backlog(now):
            depth.set(figure.kind, value=figure.depth)
            oldest = figure.oldest_at
            age.set(figure.kind, value=max(0.0, (now - oldest).total_seconds()) if oldest else 0)
        workers = Gauge(
            "taskloom_workers",
            "Live workers of the hub in the worker registry, by kind.",
            ("kind",),
        )
        for record in await store.list_workers(now):
            workers.set(record.kind, value=workers.values.get((record.kind,), 0) + 1)
        cache.metrics = [depth, age, workers]
        cache.at = time.monotonic()
        return cache.metrics


@router.get("/metrics", include_in_schema=False, dependencies=[auth.read])
async def metrics(request: Request) -> Response:
    state = request.app.state
    cache = getattr(state, "taskloom_metrics_cache", None)
    if cache is None:
        cache = state.taskloom_metrics_cache = _Figures()
    extra = await store_figures(state.taskloom_host_store, cache)
    return Response(REGISTRY.render(extra), media_type=CONTENT_TYPE)
