"""The app whose worker ``benchmarks/events.py`` measures subscription lag against: one
subscription and one asynchronous projection over the whole log. Each handler writes
``<consumer> <k> <time.monotonic()>`` for event data ``{"k": k}`` to the file named by
``TASKLOOM_LAG_OUT``, the moment it sees the event (CLOCK_MONOTONIC is system-wide on
Linux, so the benchmark process compares it with the times its appends returned)."""

from __future__ import annotations

import os
import time
from typing import Any

import taskloom as tl

app = tl.App("evlag")
_out: Any = None


def _seen(consumer: str, event: tl.RecordedEvent) -> None:
    global _out
    now = time.monotonic()
    if _out is None:
        _out = open(os.environ["TASKLOOM_LAG_OUT"], "a", buffering=1)  # noqa: SIM115
    _out.write(f"{consumer} {event.data['k']} {now:.6f}\n")


@app.subscription("lag")
async def follow(event: tl.RecordedEvent, client: tl.AsyncClient) -> None:
    _seen("sub", event)


@app.projection("lagview")
def project(event: tl.RecordedEvent, view: tl.View) -> None:
    _seen("proj", event)
    view.put(event.stream_id, {"k": event.data["k"]})
