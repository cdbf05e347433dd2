"""The event store's commands of ``taskloom``: events, projections, subscriptions.

Registered by :mod:`taskloom.cli`; each command takes ``--store`` and ``--hub`` and
works on the hub's log directly (no running host needed). Every argument is checked
before anything is written, so a bad one leaves the log as it was.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import TYPE_CHECKING, Any

from taskloom.errors import TaskloomError
from taskloom.events.records import (
    ANY,
    NO_STREAM,
    STREAM_EXISTS,
    ExpectedVersion,
    NewEvent,
    RecordedEvent,
)
from taskloom.events.store import AsyncEventStore

if TYPE_CHECKING:
    from taskloom.app import App
    from taskloom.events.status import ConsumerStatus

__all__ = ["COMMANDS", "FOLLOW_INTERVAL", "add_commands", "run"]

COMMANDS = ("events", "projections", "subscriptions")

#: Seconds ``events tail --follow`` waits between reads of the log.
FOLLOW_INTERVAL = 0.5

_PAGE = 1000

_EXPECTED: dict[str, ExpectedVersion] = {
    "no-stream": NO_STREAM,
    "exists": STREAM_EXISTS,
    "any": ANY,
}


def add_commands(sub: Any, default_store: str) -> None:
    """Add the event store's subcommands to the ``taskloom`` parser's subparsers."""

    def leaf(parent: Any, name: str, help: str) -> argparse.ArgumentParser:
        cmd: argparse.ArgumentParser = parent.add_parser(name, help=help)
        cmd.add_argument("--store", default=default_store)
        cmd.add_argument(
            "--hub", default=None, help="task hub (the App's name; default: the app's, or default)"
        )
        return cmd

    events = sub.add_parser(
        "events", help="append to, read and tail the hub's event log"
    ).add_subparsers(dest="action", required=True)
    append = leaf(events, "append", "append one event; prints its version and position")
    append.add_argument("stream")
    append.add_argument("type")
    append.add_argument("data", nargs="?", metavar="DATA_JSON", help="the event's JSON data")
    append.add_argument(
        "--expected",
        default="any",
        help="the stream's version (an int), no-stream, exists or any (default)",
    )
    append.add_argument("--id", dest="event_id", help="event id (default: a new UUID)")
    append.add_argument("--metadata", help="JSON object")
    read = leaf(events, "read", "print a stream's events, oldest first")
    read.add_argument("stream")
    read.add_argument("--from", dest="from_version", type=int, help="first version to read")
    read.add_argument("--backwards", action="store_true", help="newest first")
    read.add_argument("--limit", type=int)
    read.add_argument("--json", action="store_true", help="one JSON object per line")
    tail = leaf(events, "tail", "print the hub's log in commit order")
    tail.add_argument("--after", default="0", help="a position, or head (default 0)")
    tail.add_argument("--types", help="only these event types, comma-separated")
    tail.add_argument("--limit", type=int, help="stop after this many events")
    tail.add_argument("--follow", action="store_true", help="wait for new events until Ctrl-C")
    tail.add_argument("--json", action="store_true", help="one JSON object per line")

    projections = sub.add_parser(
        "projections", help="list, rebuild and replay projections"
    ).add_subparsers(dest="action", required=True)
    plist = leaf(projections, "list", "the hub's projections: checkpoint, lag, failures")
    plist.add_argument("app", nargs="?", help="MODULE:APP, to list its projections too")
    plist.add_argument("--json", action="store_true", help="one JSON object per line")
    rebuild = leaf(projections, "rebuild", "build a fresh copy of a read model and swap it in")
    rebuild.add_argument("app", help="MODULE:APP (the projection's handler)")
    rebuild.add_argument("name")
    rebuild.add_argument(
        "--force", action="store_true", help="swap in even if the handler raised on some events"
    )
    preplay = leaf(projections, "replay", "deliver a projection's parked events again")
    preplay.add_argument("consumer", help="NAME or projection:NAME")
    preplay.add_argument(
        "--position", type=int, action="append", help="a parked event (default: all)"
    )

    subs = sub.add_parser(
        "subscriptions", help="list, reset and replay subscriptions"
    ).add_subparsers(dest="action", required=True)
    slist = leaf(subs, "list", "the hub's subscriptions: checkpoint, lag, failures")
    slist.add_argument("--json", action="store_true", help="one JSON object per line")
    reset = leaf(subs, "reset", "move a subscription's checkpoint; later events come again")
    reset.add_argument("name")
    reset.add_argument("--position", type=int, required=True)
    sreplay = leaf(subs, "replay", "deliver a subscription's parked events again")
    sreplay.add_argument("name")
    sreplay.add_argument(
        "--position", type=int, action="append", help="a parked event (default: all)"
    )
    parked = leaf(subs, "parked", "a subscription's parked events and their errors")
    parked.add_argument("name")
    parked.add_argument("--json", action="store_true", help="one JSON object per line")


Handler = Callable[[AsyncEventStore, argparse.Namespace], Coroutine[Any, Any, int]]


def run(args: argparse.Namespace, load_app: Callable[[str], App]) -> int:
    """Run one of :data:`COMMANDS`; returns the exit code. ``load_app`` imports
    ``MODULE:APP`` (the CLI's loader)."""
    handlers: dict[tuple[str, str], Handler] = {
        ("events", "append"): _append,
        ("events", "read"): _read,
        ("events", "tail"): _tail,
        ("projections", "list"): _list,
        ("projections", "rebuild"): _rebuild,
        ("projections", "replay"): _replay,
        ("subscriptions", "list"): _list,
        ("subscriptions", "reset"): _reset,
        ("subscriptions", "replay"): _replay,
        ("subscriptions", "parked"): _parked,
    }
    handler = handlers[(args.command, args.action)]
    app = None
    if getattr(args, "app", None):
        try:
            app = load_app(args.app)
        except ImportError as exc:
            raise TaskloomError(f"cannot import {args.app!r}: {exc}") from exc
    hub = args.hub or (app.name if app is not None else "default")
    projections = list(app.projections.values()) if app is not None else []
    try:
        return asyncio.run(_with_store(args, hub, projections, handler))
    except KeyboardInterrupt:
        return 0


async def _with_store(
    args: argparse.Namespace, hub: str, projections: list[Any], handler: Handler
) -> int:
    events = AsyncEventStore(args.store, hub=hub, projections=projections)
    try:
        return await handler(events, args)
    finally:
        await events.close()


# -- parsing -----------------------------------------------------------------------------


def _json(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise TaskloomError(
            f"{what} is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno} "
            "(quote strings: '\"x\"')"
        ) from exc


def _expected(text: str) -> ExpectedVersion:
    if text in _EXPECTED:
        return _EXPECTED[text]
    try:
        version = int(text)
    except ValueError:
        version = -1
    if version < 0:
        raise TaskloomError(
            f"--expected {text!r} is not a version: give the version of the stream's last "
            "event (an int >= 0), no-stream, exists or any"
        )
    return version


def _non_negative(value: int | None, what: str) -> None:
    if value is not None and value < 0:
        raise TaskloomError(f"{what} {value} must be >= 0")


# -- printing ----------------------------------------------------------------------------


def _event_json(event: RecordedEvent) -> dict[str, Any]:
    return {
        "streamId": event.stream_id,
        "version": event.version,
        "position": event.position,
        "id": event.id,
        "type": event.type,
        "data": event.data,
        "metadata": event.metadata,
        "recordedAt": event.recorded_at.isoformat(),
    }


def _print_event(event: RecordedEvent, as_json: bool, with_stream: bool) -> None:
    if as_json:
        print(json.dumps(_event_json(event), default=str), flush=True)
        return
    data = json.dumps(event.data, default=str)
    if with_stream:
        print(f"{event.position}\t{event.stream_id}@{event.version}\t{event.type}\t{data}")
    else:
        print(f"{event.version}\t{event.position}\t{event.type}\t{data}")
    sys.stdout.flush()


def _last_line(text: str | None) -> str:
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1] if lines else ""


def _table(rows: Sequence[Sequence[object]]) -> None:
    cells = [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
    for row in cells:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


# -- events ------------------------------------------------------------------------------


async def _append(events: AsyncEventStore, args: argparse.Namespace) -> int:
    data = None if args.data is None else _json(args.data, "DATA_JSON")
    metadata = None if args.metadata is None else _json(args.metadata, "--metadata")
    expected = _expected(args.expected)
    event = NewEvent(args.type, data, id=args.event_id, metadata=metadata)
    result = await events.append(args.stream, [event], expected_version=expected)
    print(f"version {result.version} position {result.position}")
    return 0


async def _read(events: AsyncEventStore, args: argparse.Namespace) -> int:
    _non_negative(args.from_version, "--from")
    _non_negative(args.limit, "--limit")
    found = await events.read_stream(
        args.stream, from_version=args.from_version, backwards=args.backwards, limit=args.limit
    )
    if not found:
        print(f"no events in stream {args.stream!r} (hub {events.store.hub!r})", file=sys.stderr)
    for event in found:
        _print_event(event, args.json, with_stream=False)
    return 0


async def _tail(events: AsyncEventStore, args: argparse.Namespace) -> int:
    types = None
    if args.types is not None:
        types = [t.strip() for t in args.types.split(",") if t.strip()]
        if not types:
            raise TaskloomError(f"--types {args.types!r} names no type: give T1,T2,...")
    if args.limit is not None and args.limit < 1:
        raise TaskloomError(f"--limit {args.limit} must be at least 1")
    if args.after == "head":
        after = await events.head()
    else:
        try:
            after = int(args.after)
        except ValueError:
            after = -1
        if after < 0:
            raise TaskloomError(f"--after {args.after!r} is not a position (an int >= 0) or head")
    left = args.limit
    while True:
        page = min(_PAGE, left) if left is not None else _PAGE
        found = await events.read_all(after=after, types=types, limit=page)
        for event in found:
            _print_event(event, args.json, with_stream=True)
            after = event.position
        if left is not None:
            left -= len(found)
            if left <= 0:
                return 0
        if len(found) < page:
            if not args.follow:
                return 0
            await asyncio.sleep(FOLLOW_INTERVAL)


# -- projections and subscriptions -------------------------------------------------------


def _status_json(status: ConsumerStatus) -> dict[str, Any]:
    return {
        "consumer": status.consumer,
        "kind": status.kind,
        "name": status.name,
        "position": status.position,
        "head": status.head,
        "lag": status.lag,
        "partitions": status.partitions,
        "owners": list(status.owners),
        "parked": len(status.parked),
        "failingPosition": status.failing_position,
        "attempts": status.attempts,
        "lastError": _last_line(status.last_error) or None,
        "updatedAt": status.updated_at.isoformat(),
    }


async def _list(events: AsyncEventStore, args: argparse.Namespace) -> int:
    kind = "projection" if args.command == "projections" else "subscription"
    found = [s for s in await events.consumers() if s.kind == kind]
    specs = events.projections if kind == "projection" else {}
    mode = {n: "inline" if p.inline else "async" for n, p in specs.items()}
    if not found:
        print(f"no {kind}s in hub {events.store.hub!r}", file=sys.stderr)
        return 0
    if args.json:
        for status in found:
            print(json.dumps({**_status_json(status), "mode": mode.get(status.name)}))
        return 0
    rows: list[list[object]] = [
        ["NAME", "KIND", "POSITION", "HEAD", "LAG", "PARTS", "OWNERS", "PARKED", "FAILING"]
    ]
    for s in found:
        failing = "-"
        if s.failing_position is not None:
            failing = f"@{s.failing_position} x{s.attempts}: {_last_line(s.last_error)}"
        owners = ",".join(s.owners) or "-"
        rows.append(
            [
                s.name,
                mode.get(s.name, s.kind),
                s.position,
                s.head,
                s.lag,
                s.partitions,
                owners,
                len(s.parked),
                failing,
            ]
        )
    _table(rows)
    return 0


async def _rebuild(events: AsyncEventStore, args: argparse.Namespace) -> int:
    from taskloom.events.rebuild import rebuild

    report = await rebuild(events, args.name, force=args.force)
    print(
        f"rebuilt projection {report.projection!r}: generation {report.generation}, "
        f"{report.events_applied} events applied, documents {report.documents_before} -> "
        f"{report.documents_after}, position {report.position}"
    )
    if report.parked:
        print(
            f"the handler raised on events at positions {list(report.parked)}",
            file=sys.stderr,
        )
    return 0


async def _known(events: AsyncEventStore, consumer: str) -> ConsumerStatus:
    statuses = {s.consumer: s for s in await events.consumers()}
    if consumer not in statuses:
        kind = consumer.partition(":")[0]
        known = sorted(c for c in statuses if c.startswith(f"{kind}:"))
        raise TaskloomError(
            f"no consumer {consumer!r} in hub {events.store.hub!r}: known {kind}s are "
            f"{', '.join(known) or 'none'}"
        )
    return statuses[consumer]


def _consumer(args: argparse.Namespace) -> str:
    if args.command == "subscriptions":
        return f"subscription:{args.name}"
    name: str = args.consumer
    return name if ":" in name else f"projection:{name}"


async def _replay(events: AsyncEventStore, args: argparse.Namespace) -> int:
    consumer = _consumer(args)
    status = await _known(events, consumer)
    positions: list[int] | None = args.position
    if positions is not None:
        parked = {p.position for p in status.parked}
        missing = sorted(set(positions) - parked)
        if missing:
            raise TaskloomError(
                f"{consumer!r} has no parked event at position(s) {missing}: its parked "
                f"events are at {sorted(parked) or 'none'}"
            )
    marked = await events.replay_parked(consumer, positions)
    print(
        f"{marked} parked event(s) of {consumer!r} marked for replay; a host running the "
        "app (taskloom serve) delivers them"
    )
    return 0


async def _reset(events: AsyncEventStore, args: argparse.Namespace) -> int:
    consumer = _consumer(args)
    _non_negative(args.position, "--position")
    await _known(events, consumer)
    moved = await events.reset_consumer(consumer, args.position)
    print(f"{consumer!r}: {moved} partition(s) moved to position {args.position}")
    return 0


async def _parked(events: AsyncEventStore, args: argparse.Namespace) -> int:
    consumer = _consumer(args)
    status = await _known(events, consumer)
    if not status.parked:
        print(f"no parked events for {consumer!r}", file=sys.stderr)
        return 0
    rows: list[list[object]] = [["POSITION", "STREAM", "TYPE", "ATTEMPTS", "PARKED AT", "ERROR"]]
    for p in status.parked:
        if args.json:
            row = {
                "position": p.position,
                "streamId": p.stream_id,
                "version": p.version,
                "eventId": p.event_id,
                "type": p.type,
                "attempts": p.attempts,
                "parkedAt": p.parked_at.isoformat(),
                "error": p.error,
            }
            print(json.dumps(row))
        else:
            rows.append(
                [
                    p.position,
                    f"{p.stream_id}@{p.version}",
                    p.type,
                    p.attempts,
                    p.parked_at.isoformat(timespec="seconds"),
                    _last_line(p.error),
                ]
            )
    if not args.json:
        _table(rows)
    return 0
