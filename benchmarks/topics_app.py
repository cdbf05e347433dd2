"""The app ``benchmarks/topics.py`` serves: one event trigger on topic ``bench`` that
does nothing but receive (so the figures are the platform's, not a handler's)."""

from __future__ import annotations

import taskloom as tl

app = tl.App("bench-topics")


@app.event_trigger("bench", concurrency=64)
async def receive(event: tl.CloudEvent, client: tl.AsyncClient) -> None:
    return None
