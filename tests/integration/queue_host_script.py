"""A host process for the SIGKILL test: a QueueRunner whose handler of queue ``slow``
writes a marker file and then hangs, so the test can kill it mid-delivery.

Usage: python queue_host_script.py STORE_URL HUB MARKER_PATH
"""

from __future__ import annotations

import asyncio
import sys
import time
from datetime import timedelta
from pathlib import Path

import taskloom as tl
from taskloom.host.queues import QueueRunner
from taskloom.storage import open_store

store_url, hub, marker = sys.argv[1], sys.argv[2], Path(sys.argv[3])
app = tl.App("killed")


@app.queue_trigger("slow", visibility_timeout=timedelta(seconds=1))
def slow(message: object, client: tl.Client) -> None:
    # Written beside and renamed, so the test never reads a half-written marker.
    partial = marker.with_suffix(".partial")
    partial.write_text(repr(message))
    partial.rename(marker)
    time.sleep(600)


async def main() -> None:
    store = open_store(store_url, hub=hub)
    await store.open()
    runner = QueueRunner(app, store, tl.AsyncClient(store), poll_interval=0.05)
    await runner.start()
    await asyncio.Event().wait()


asyncio.run(main())
