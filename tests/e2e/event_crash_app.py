"""The app the event-store crash test runs in real worker processes.

Run it with ``python tests/e2e/event_crash_app.py STORE_URL`` (``app.run``). Environment:

- ``TASKLOOM_TEST_HUB``: the App's name, i.e. the hub (a fresh one per test).
- ``TASKLOOM_TEST_LOG``: a file the subscription handler appends one line to per call
  (``O_APPEND``, one ``write``): ``event_id pid``, tab-separated.
- ``TASKLOOM_TEST_SLEEP``: seconds each handler call sleeps (default 0.005), so a kill
  lands mid-stream.

The app has an asynchronous projection ``totals`` (one document per ``Item`` stream:
how many events, the sum of their ``n``) and a subscription ``mirror`` whose handler
appends one ``Effect`` event to ``effects-<stream>`` per ``Item`` event, with an id
derived from the incoming event's, through its buffered ``events`` store.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import taskloom as tl

app = tl.App(os.environ.get("TASKLOOM_TEST_HUB", "eventcrash"))

SLEEP = float(os.environ.get("TASKLOOM_TEST_SLEEP", "0.005"))

ITEM = "Item"
EFFECT = "Effect"


def effect_stream(stream_id: str) -> str:
    return f"effects-{stream_id}"


def effect_id(event_id: str) -> str:
    return f"effect-{event_id}"


@app.projection("totals", types=[ITEM])
def totals(event: tl.RecordedEvent, view: tl.View) -> None:
    doc = view.get(event.stream_id) or {"count": 0, "sum": 0, "last_version": 0}
    doc["count"] += 1
    doc["sum"] += event.data["n"]
    doc["last_version"] = event.version
    view.put(event.stream_id, doc)


def _record(event_id: str) -> None:
    path = os.environ.get("TASKLOOM_TEST_LOG")
    if not path:
        return
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{event_id}\t{os.getpid()}\n".encode())
    finally:
        os.close(fd)


@app.subscription("mirror", types=[ITEM])
def mirror(event: tl.RecordedEvent, client: tl.Client, *, events: tl.EventStore) -> None:
    _record(event.id)
    time.sleep(SLEEP)
    effect = tl.NewEvent(
        EFFECT,
        {"source": event.id, "position": event.position, "n": event.data["n"]},
        id=effect_id(event.id),
    )
    events.append(effect_stream(event.stream_id), [effect])


HERE = Path(__file__).resolve()

if __name__ == "__main__":
    app.run(sys.argv[1], lease_for=2, poll_interval=0.1)
