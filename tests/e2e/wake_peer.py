"""The other processes of the wake-up tests (``test_wakeups.py``), run as scripts.

``python wake_peer.py client URL HUB start NAME INPUT_JSON TIMEOUT [--fallback S]``
    starts orchestration ``NAME`` and waits for its completion;
``python wake_peer.py client URL HUB event IID EVENT DATA_JSON TIMEOUT [--fallback S]``
    raises an event to a running instance and waits for its completion.
    Both print one JSON line: the instance id, its status and output, and the waits'
    status checks. ``--fallback`` replaces the client's one-second safety check by one
    every S seconds, so that only a wake-up from the worker's process can end the wait.
``python wake_peer.py listen URL HUB``
    opens the store, listens for wake-ups as a worker does, prints ``ready`` and then
    ``woken`` for each wake-up, until killed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

import taskloom as tl
from taskloom.storage import open_store
from taskloom.waiting import InstanceWatcher


async def client(args: argparse.Namespace) -> dict[str, Any]:
    async with tl.AsyncClient(args.url, hub=args.hub) as c:
        if args.fallback is not None:
            c._watcher = InstanceWatcher(c.store, lambda: None, fallback=args.fallback)
        if args.action == "start":
            iid = await c.start_new(args.target, json.loads(args.payload))
        else:
            iid = args.target
            await c.raise_event(iid, args.event, json.loads(args.payload))
        state = await c.wait_for_completion(iid, timeout=args.timeout)
        watcher = c._watcher
        return {
            "instance_id": iid,
            "status": state.runtime_status.value,
            "output": state.output,
            "checks": None if watcher is None else watcher.checks,
        }


async def listen(url: str, hub: str) -> None:
    store = open_store(url, hub=hub)
    await store.open()
    store.add_listener(lambda: print("woken", flush=True))
    print("ready", flush=True)
    await asyncio.Event().wait()


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="mode", required=True)
    c = sub.add_parser("client")
    c.add_argument("url")
    c.add_argument("hub")
    actions = c.add_subparsers(dest="action", required=True)
    start = actions.add_parser("start")
    start.add_argument("target")
    start.add_argument("payload")
    event = actions.add_parser("event")
    event.add_argument("target")
    event.add_argument("event")
    event.add_argument("payload")
    for p in (start, event):
        p.add_argument("timeout", type=float)
        p.add_argument("--fallback", type=float)
    ls = sub.add_parser("listen")
    ls.add_argument("url")
    ls.add_argument("hub")
    args = parser.parse_args(argv)
    if args.mode == "listen":
        asyncio.run(listen(args.url, args.hub))
    else:
        print(json.dumps(asyncio.run(client(args))), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
