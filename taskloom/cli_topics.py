"""The ``taskloom topics`` commands: publish, read, list, subscribe, unsubscribe,
dead-letters, redrive and replay.

Registered by :mod:`taskloom.cli`; each takes ``--store`` and ``--hub`` and works on the
hub's store directly (no running host needed). Every argument is checked before anything
is written, so a bad one exits 2 with one line and leaves the hub as it was.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Callable, Coroutine
from datetime import datetime
from pathlib import Path
from typing import Any

from taskloom.client import AsyncClient
from taskloom.cloudevents.event import CloudEvent
from taskloom.cloudevents.formats import parse_batch, parse_structured, to_json
from taskloom.errors import TaskloomError
from taskloom.topics import webhook as webhook_module
from taskloom.topics.publish import check_name, check_topic
from taskloom.topics.specs import DELIVERY_SCHEMAS, WebhookSpec

__all__ = ["COMMANDS", "add_commands", "run"]

COMMANDS = ("topics",)


def add_commands(sub: Any, default_store: str) -> None:
    """Add ``topics`` and its actions to the ``taskloom`` parser's subparsers."""

    def leaf(parent: Any, name: str, help: str) -> argparse.ArgumentParser:
        cmd: argparse.ArgumentParser = parent.add_parser(name, help=help)
        cmd.add_argument("--store", default=default_store)
        cmd.add_argument("--hub", default="default", help="task hub (the App's name)")
        return cmd

    topics = sub.add_parser(
        "topics", help="publish to, read and manage the hub's CloudEvents topics"
    ).add_subparsers(dest="action", required=True)

    publish = leaf(
        topics, "publish", "publish one CloudEvent (or a file of them); prints positions"
    )
    publish.add_argument("topic")
    publish.add_argument("--type", dest="event_type", help="the event's type")
    publish.add_argument("--source", help="the event's source (a URI-reference)")
    publish.add_argument("--id", dest="event_id", help="the event's id (default: a new UUID)")
    publish.add_argument("--subject")
    publish.add_argument("--data", help="the event's data as JSON")
    publish.add_argument("--data-file", help="a file holding the event's data as JSON")
    publish.add_argument(
        "--file", help="a CloudEvents JSON file: one event, or a batch (a JSON array)"
    )

    read = leaf(topics, "read", "print a topic's events, oldest first (one JSON per line)")
    read.add_argument("topic")
    read.add_argument("--after", type=int, default=0, help="events after this log position")
    read.add_argument("--since", help="events published at or after this RFC 3339 time")
    read.add_argument("--limit", type=int, default=1000)

    listing = leaf(topics, "list", "subscriptions with lag, pending deliveries, dead letters")
    listing.add_argument("topic", nargs="?")
    listing.add_argument("--json", action="store_true", help="one JSON object per line")

    subscribe = leaf(topics, "subscribe", "create or change a webhook subscription")
    subscribe.add_argument("topic")
    subscribe.add_argument("--name", required=True, help="the subscription's name")
    subscribe.add_argument("--endpoint", required=True, help="the receiver's http(s) URL")
    subscribe.add_argument("--types", nargs="+", help="only these event types")
    subscribe.add_argument("--subject-begins-with")
    subscribe.add_argument("--subject-ends-with")
    subscribe.add_argument("--filter", help="an Event Grid subscription filter as JSON")
    subscribe.add_argument("--max-delivery-attempts", type=int)
    subscribe.add_argument("--event-ttl-minutes", type=int)
    subscribe.add_argument("--max-events-per-batch", type=int)
    subscribe.add_argument("--schema", choices=DELIVERY_SCHEMAS, default="cloudevents")
    subscribe.add_argument("--secret", help="a shared secret that signs each delivery")
    subscribe.add_argument("--timeout", type=float, help="seconds per delivery (default 30)")
    subscribe.add_argument(
        "--after", type=int, help="deliver from after this log position (default: from now)"
    )
    subscribe.add_argument(
        "--no-validate", action="store_true", help="skip the endpoint validation handshake"
    )

    unsubscribe = leaf(topics, "unsubscribe", "delete a webhook subscription")
    unsubscribe.add_argument("name")

    dead = leaf(topics, "dead-letters", "print a topic's dead letters (one JSON per line)")
    dead.add_argument("topic")
    dead.add_argument("--subscription")

    redrive = leaf(topics, "redrive", "deliver dead letters again; prints how many")
    redrive.add_argument("topic")
    redrive.add_argument("--subscription")
    redrive.add_argument("--id", dest="ids", action="append", help="a CloudEvent id (repeat)")

    replay = leaf(topics, "replay", "deliver a topic's events again from a position or time")
    replay.add_argument("topic")
    replay.add_argument("--subscription")
    since = replay.add_mutually_exclusive_group()
    since.add_argument("--after", type=int, help="from after this log position (default 0)")
    since.add_argument("--since", help="from the first event published at this RFC 3339 time")


Handler = Callable[[AsyncClient, argparse.Namespace], Coroutine[Any, Any, int]]


def run(args: argparse.Namespace) -> int:
    """Run one ``topics`` action; returns the exit code."""
    handlers: dict[str, tuple[Callable[[argparse.Namespace], Any], Handler]] = {
        "publish": (_publish_args, _publish),
        "read": (_read_args, _read),
        "list": (_list_args, _list),
        "subscribe": (_subscribe_args, _subscribe),
        "unsubscribe": (_unsubscribe_args, _unsubscribe),
        "dead-letters": (_dead_args, _dead_letters),
        "redrive": (_redrive_args, _redrive),
        "replay": (_replay_args, _replay),
    }
    check, handler = handlers[args.action]
    args.checked = check(args)  # everything is checked before the store is opened
    return asyncio.run(_with_client(args, handler))


async def _with_client(args: argparse.Namespace, handler: Handler) -> int:
    client = AsyncClient(args.store, hub=args.hub)
    try:
        return await handler(client, args)
    finally:
        await client.close()


# -- checking ------------------------------------------------------------------------------


def _json(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise TaskloomError(
            f"{what} is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno} "
            "(quote strings: '\"x\"')"
        ) from exc


def _read_text(path: str, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise TaskloomError(f"cannot read {what} {path!r}: {exc.strerror or exc}") from exc


def _time(text: str | None, what: str) -> datetime | None:
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise TaskloomError(
            f"{what} {text!r} is not an RFC 3339 time with an offset, e.g. 2024-05-01T12:00:00Z"
        )
    return moment


def _position(value: int | None, what: str) -> None:
    if value is not None and value < 0:
        raise TaskloomError(f"{what} {value} must be a log position (>= 0)")


def _publish_args(args: argparse.Namespace) -> list[CloudEvent]:
    check_topic(args.topic)
    single = (args.event_type, args.source, args.event_id, args.subject, args.data, args.data_file)
    if args.file is not None:
        if any(v is not None for v in single):
            raise TaskloomError(
                "--file takes its events from the file: leave out --type, --source, --id, "
                "--subject, --data and --data-file"
            )
        body = _read_text(args.file, "--file")
        if body.lstrip()[:1] == b"[":
            events = parse_batch(body)
            if not events:
                raise TaskloomError(
                    f"--file {args.file!r} holds an empty batch: nothing to publish"
                )
            return events
        return [parse_structured(body)]
    if args.event_type is None or args.source is None:
        raise TaskloomError(
            "give --type and --source (and optionally --id, --subject, --data), "
            "or --file with CloudEvents JSON"
        )
    if args.data is not None and args.data_file is not None:
        raise TaskloomError("give --data or --data-file, not both")
    data = None
    if args.data is not None:
        data = _json(args.data, "--data")
    elif args.data_file is not None:
        text = _read_text(args.data_file, "--data-file")
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise TaskloomError(f"--data-file {args.data_file!r} is not JSON: {exc}") from exc
    return [CloudEvent(args.event_type, args.source, data, id=args.event_id, subject=args.subject)]


def _read_args(args: argparse.Namespace) -> datetime | None:
    check_topic(args.topic)
    _position(args.after, "--after")
    if args.limit < 1:
        raise TaskloomError(f"--limit {args.limit} must be >= 1")
    return _time(args.since, "--since")


def _list_args(args: argparse.Namespace) -> None:
    if args.topic is not None:
        check_topic(args.topic)


def _subscribe_args(args: argparse.Namespace) -> WebhookSpec:
    check_topic(args.topic)
    check_name("subscription", args.name)
    _position(args.after, "--after")
    flt: Any = {} if args.filter is None else _json(args.filter, "--filter")
    if not isinstance(flt, dict):
        raise TaskloomError("--filter must be a JSON object (Event Grid's subscription filter)")
    if args.types:
        flt["includedEventTypes"] = [t for item in args.types for t in item.split(",") if t]
    if args.subject_begins_with is not None:
        flt["subjectBeginsWith"] = args.subject_begins_with
    if args.subject_ends_with is not None:
        flt["subjectEndsWith"] = args.subject_ends_with
    retry: dict[str, Any] = {}
    if args.max_delivery_attempts is not None:
        retry["maxDeliveryAttempts"] = args.max_delivery_attempts
    if args.event_ttl_minutes is not None:
        retry["eventTimeToLiveInMinutes"] = args.event_ttl_minutes
    body: dict[str, Any] = {
        "endpoint": args.endpoint,
        "filter": flt,
        "retryPolicy": retry,
        "deliverySchema": args.schema,
    }
    if args.max_events_per_batch is not None:
        body["maxEventsPerBatch"] = args.max_events_per_batch
    if args.secret is not None:
        body["secret"] = args.secret
    if args.timeout is not None:
        body["timeoutInSeconds"] = args.timeout
    return WebhookSpec.from_json(body)


def _unsubscribe_args(args: argparse.Namespace) -> None:
    check_name("subscription", args.name)


def _dead_args(args: argparse.Namespace) -> None:
    check_topic(args.topic)
    if args.subscription is not None:
        check_name("subscription", args.subscription)


def _redrive_args(args: argparse.Namespace) -> None:
    _dead_args(args)


def _replay_args(args: argparse.Namespace) -> datetime | None:
    _dead_args(args)
    _position(args.after, "--after")
    return _time(args.since, "--since")


# -- running -------------------------------------------------------------------------------


def _print(obj: Any) -> None:
    print(json.dumps(obj, default=str), flush=True)


async def _publish(client: AsyncClient, args: argparse.Namespace) -> int:
    events: list[CloudEvent] = args.checked
    positions = await client.publish(args.topic, events)
    _print({"published": len(events), "positions": positions})
    return 0


async def _read(client: AsyncClient, args: argparse.Namespace) -> int:
    found = await client.read_topic(
        args.topic, after=args.after, since=args.checked, limit=args.limit
    )
    for p in found:
        _print(
            {
                "position": p.position,
                "publishedAt": p.published_at.isoformat(),
                "event": to_json(p.event),
            }
        )
    return 0


async def _list(client: AsyncClient, args: argparse.Namespace) -> int:
    found = await client.subscriptions(args.topic)
    if not args.json:
        print("NAME\tTOPIC\tKIND\tPOSITION\tLAG\tPENDING\tDEAD_LETTERS\tENDPOINT")
    for s in found:
        spec = dict(s.spec)
        spec.pop("secret", None)
        if args.json:
            _print(
                {
                    "name": s.name,
                    "topic": s.topic,
                    "kind": s.kind,
                    "spec": spec,
                    "position": s.position,
                    "lag": s.lag,
                    "pending": s.pending,
                    "deadLetters": s.dead_letters,
                    "nextDue": s.next_due.isoformat() if s.next_due else None,
                }
            )
        else:
            endpoint = spec.get("endpoint", "-")
            print(
                f"{s.name}\t{s.topic}\t{s.kind}\t{s.position}\t{s.lag}\t{s.pending}\t"
                f"{s.dead_letters}\t{endpoint}"
            )
    return 0


async def _subscribe(client: AsyncClient, args: argparse.Namespace) -> int:
    spec: WebhookSpec = args.checked
    for existing in await client.subscriptions():
        if existing.name == args.name and (
            existing.topic != args.topic or existing.kind != "webhook"
        ):
            raise TaskloomError(
                f"subscription {args.name!r} already exists as a {existing.kind} of topic "
                f"{existing.topic!r}; choose another name"
            )
    subscribe = getattr(webhook_module, "subscribe_webhook", None)
    if subscribe is None:
        created = await client.subscribe(args.topic, args.name, spec, after=args.after)
    else:
        created = bool(
            await subscribe(
                client, args.topic, args.name, spec, after=args.after, validate=not args.no_validate
            )
        )
    _print(
        {
            "name": args.name,
            "topic": args.topic,
            "created": created,
            "spec": spec.to_json(with_secret=False),
        }
    )
    return 0


async def _unsubscribe(client: AsyncClient, args: argparse.Namespace) -> int:
    if not await client.unsubscribe(args.name):
        raise TaskloomError(
            f"no webhook subscription {args.name!r}; `taskloom topics list` shows them"
        )
    _print({"deleted": args.name})
    return 0


async def _known(client: AsyncClient, topic: str, name: str | None) -> None:
    if name is None:
        return
    if not any(s.name == name for s in await client.subscriptions(topic)):
        raise TaskloomError(
            f"topic {topic!r} has no subscription {name!r}; `taskloom topics list {topic}` "
            "shows them"
        )


async def _dead_letters(client: AsyncClient, args: argparse.Namespace) -> int:
    await _known(client, args.topic, args.subscription)
    for letter in await client.dead_letters(args.topic, subscription=args.subscription):
        _print(letter.to_json())
    return 0


async def _redrive(client: AsyncClient, args: argparse.Namespace) -> int:
    await _known(client, args.topic, args.subscription)
    count = await client.redrive(args.topic, subscription=args.subscription, ids=args.ids)
    _print({"redriven": count})
    return 0


async def _replay(client: AsyncClient, args: argparse.Namespace) -> int:
    await _known(client, args.topic, args.subscription)
    count = await client.replay_topic(
        args.topic, subscription=args.subscription, after=args.after or 0, since=args.checked
    )
    _print({"subscriptions": count})
    return 0
