"""The host's management commands of ``taskloom``: keys, schedules, queues, purge-many.

Registered by :mod:`taskloom.cli`; each command takes ``--store`` and ``--hub`` and
works on the store directly (no running host needed).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime, timedelta
from typing import Any, TextIO

from taskloom import manage
from taskloom.client import AsyncClient
from taskloom.clock import SystemClock
from taskloom.errors import TaskloomError
from taskloom.models import Status
from taskloom.security import ROLES
from taskloom.storage import Store, open_store
from taskloom.storage.host_base import KeyRecord, QueueMessage

COMMANDS = ("keys", "schedules", "queue", "purge-many")


def add_commands(sub: Any, default_store: str) -> None:
    """Add the host's subcommands to the ``taskloom`` parser's subparsers ``sub``."""

    def leaf(
        parent: Any, name: str, help: str, *, hub_required: bool = False
    ) -> argparse.ArgumentParser:
        cmd: argparse.ArgumentParser = parent.add_parser(name, help=help)
        cmd.add_argument("--store", default=default_store)
        if hub_required:
            cmd.add_argument(
                "--hub",
                required=True,
                help="the task hub the key is for (the App's name, as in tl.App(NAME)); "
                "a key is valid for that hub only",
            )
        else:
            cmd.add_argument("--hub", default="default", help="task hub (the App's name)")
        return cmd

    keys = sub.add_parser("keys", help="API keys: create, list, revoke").add_subparsers(
        dest="action", required=True
    )
    create = leaf(
        keys,
        "create",
        "make a key for one hub; prints it once (only its hash is stored)",
        hub_required=True,
    )
    create.add_argument("--role", required=True, choices=ROLES)
    create.add_argument("--name")
    leaf(keys, "list", "list keys (ids, names, roles; never key material)")
    leaf(keys, "revoke", "revoke a key by id").add_argument("key_id")

    schedules = sub.add_parser(
        "schedules", help="list, pause, resume or trigger schedules"
    ).add_subparsers(dest="action", required=True)
    leaf(schedules, "list", "list the hub's schedules")
    for action, help in (
        ("pause", "stop running a schedule"),
        ("resume", "run a paused schedule again from its next tick"),
        ("trigger", "run a schedule once now"),
    ):
        leaf(schedules, action, help).add_argument("name")

    queue = sub.add_parser("queue", help="put messages on a queue or peek at one").add_subparsers(
        dest="action", required=True
    )
    put = leaf(queue, "put", "put a message on a durable queue; prints its id")
    put.add_argument("queue")
    put.add_argument("--message", required=True, help="JSON message")
    put.add_argument("--delay", type=float, help="seconds before it becomes visible")
    peek = leaf(queue, "peek", "show a queue's messages without taking them")
    peek.add_argument("queue")
    peek.add_argument("--top", type=int, default=100)

    purge = leaf(sub, "purge-many", "delete finished instances in bulk, with progress")
    purge.add_argument("--status", action="append", help="Completed, Failed or Terminated")
    purge.add_argument("--created-from", help="ISO time (UTC when no offset is given)")
    purge.add_argument("--created-to", help="ISO time (UTC when no offset is given)")
    purge.add_argument("--page-size", type=int, default=100)


def run(args: argparse.Namespace) -> int:
    """Run one of :data:`COMMANDS`; returns the exit code."""
    handlers: dict[str, Callable[[Store, argparse.Namespace], Coroutine[Any, Any, int]]] = {
        "keys": _keys,
        "schedules": _schedules,
        "queue": _queue,
        "purge-many": _purge_many,
    }
    return asyncio.run(_with_store(args, handlers[args.command]))


async def _with_store(
    args: argparse.Namespace,
    handler: Callable[[Store, argparse.Namespace], Coroutine[Any, Any, int]],
) -> int:
    store = open_store(args.store, hub=args.hub)
    await store.open()
    try:
        return await handler(store, args)
    finally:
        await store.close()


def _now() -> datetime:
    return SystemClock().now()


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


# -- keys ------------------------------------------------------------------------------


def _key_json(record: KeyRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        "name": record.name,
        "role": record.role,
        "createdAt": _iso(record.created_at),
        "revokedAt": _iso(record.revoked_at),
    }


async def _keys(store: Store, args: argparse.Namespace) -> int:
    if args.action == "create":
        created = await manage.create_key(store, args.role, args.name, _now())
        print(created.key)
        print(
            f"key {created.record.id} ({created.record.name}, role {created.record.role}) "
            f"created for hub {args.hub!r}; copy it now, it is not shown again. Hosts of "
            "this store now require keys (taskloom serve refuses to serve a hub with none)",
            file=sys.stderr,
        )
    elif args.action == "list":
        for record in await manage.list_keys(store):
            print(json.dumps(_key_json(record)))
    else:
        await manage.revoke_key(store, args.key_id, _now())
        print(f"key {args.key_id} revoked", file=sys.stderr)
    return 0


# -- schedules -------------------------------------------------------------------------


async def _schedules(store: Store, args: argparse.Namespace) -> int:
    if args.action == "list":
        for r in await manage.list_schedules(store):
            row = {
                "name": r.name,
                "spec": r.spec,
                "paused": r.paused,
                "nextTick": _iso(r.next_tick),
                "lastTick": _iso(r.last_tick),
            }
            print(json.dumps(row))
    elif args.action == "pause":
        await manage.pause_schedule(store, args.name)
        print(f"schedule {args.name!r} paused", file=sys.stderr)
    elif args.action == "resume":
        tick = await manage.resume_schedule(store, args.name, _now())
        print(f"schedule {args.name!r} resumed; next tick {tick.isoformat()}", file=sys.stderr)
    else:
        message_id = await manage.trigger_schedule(store, args.name, _now())
        print(message_id)
    return 0


# -- queues ----------------------------------------------------------------------------


def _message_json(message: QueueMessage) -> dict[str, Any]:
    try:
        body: Any = json.loads(message.body)
    except ValueError:
        body = message.body
    return {
        "id": message.id,
        "queue": message.queue,
        "dequeueCount": message.dequeue_count,
        "insertedAt": _iso(message.inserted_at),
        "error": message.error,
        "body": body,
    }


async def _queue(store: Store, args: argparse.Namespace) -> int:
    if args.action == "put":
        try:
            message = json.loads(args.message)
        except json.JSONDecodeError as exc:
            raise TaskloomError(
                f"--message is not valid JSON ({exc}); quote strings: '\"x\"'"
            ) from exc
        client = AsyncClient(store)  # opening an open store is a no-op
        delay = None if args.delay is None else timedelta(seconds=args.delay)
        print(await client.enqueue(args.queue, message, delay=delay))
    else:
        for m in await manage.peek_queue(store, args.queue, args.top):
            print(json.dumps(_message_json(m), default=str))
    return 0


# -- purge-many ------------------------------------------------------------------------


def _time_arg(text: str | None, what: str) -> datetime | None:
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise TaskloomError(f"{what} {text!r} is not an ISO time like 2024-05-01T12:00") from exc
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


class ProgressBar:
    """A one-line text bar, redrawn in place: ``[#####.....] 50/100``."""

    def __init__(self, out: TextIO, width: int = 30, label: str = "purged") -> None:
        self.out, self.width, self.label = out, width, label

    def __call__(self, done: int, total: int) -> None:
        filled = self.width if total == 0 else self.width * done // total
        bar = "#" * filled + "." * (self.width - filled)
        self.out.write(f"\r[{bar}] {done}/{total} {self.label}")
        if done >= total:
            self.out.write("\n")
        self.out.flush()


async def _purge_many(store: Store, args: argparse.Namespace) -> int:
    statuses = None
    if args.status:
        statuses = frozenset(Status.parse(s) for s in args.status)
    deleted = await manage.purge_in_pages(
        store,
        statuses=statuses,
        created_from=_time_arg(args.created_from, "--created-from"),
        created_to=_time_arg(args.created_to, "--created-to"),
        page_size=max(1, args.page_size),
        progress=ProgressBar(sys.stderr),
    )
    print(deleted)
    return 0
