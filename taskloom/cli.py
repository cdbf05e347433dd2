"""The ``taskloom`` command (also ``python -m taskloom``)."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from taskloom import cli_dashboard, cli_events, cli_host, cli_topics
from taskloom.app import App
from taskloom.client import Client
from taskloom.errors import TaskloomError
from taskloom.history import event_to_dict
from taskloom.models import OrchestrationState

DEFAULT_STORE = "sqlite:///taskloom.db"


def load_app(spec: str) -> App:
    """Import ``module:attr`` or ``path/to/file.py:attr`` and return the App there."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise TaskloomError(f"expected MODULE:APP (e.g. myproject.flows:app), got {spec!r}")
    if module_name.endswith(".py"):
        path = Path(module_name).resolve()
        if not path.exists():
            raise TaskloomError(f"no such file {module_name!r}")
        sys.path.insert(0, str(path.parent))
        loaded = importlib.util.spec_from_file_location(path.stem, path)
        assert loaded is not None and loaded.loader is not None
        module = importlib.util.module_from_spec(loaded)
        sys.modules[path.stem] = module
        loaded.loader.exec_module(module)
    else:
        sys.path.insert(0, str(Path.cwd()))
        module = importlib.import_module(module_name)
    app = getattr(module, attr, None)
    if not isinstance(app, App):
        raise TaskloomError(f"{spec!r} is not a taskloom App (found {type(app).__name__})")
    return app


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="taskloom", description="Durable orchestrations.")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser(
        "serve",
        help="run the app's workers, schedules, queue triggers and HTTP API until SIGTERM",
    )
    serve.add_argument(
        "app",
        nargs="?",
        help="MODULE:APP or path/to/app.py:app (may be left out with --grpc: a scheduler "
        "for Durable Task SDK workers only)",
    )
    serve.add_argument(
        "--grpc",
        type=int,
        metavar="PORT",
        help="also serve the Durable Task gRPC sidecar protocol on --host:PORT, for the "
        "official durabletask SDK workers and clients (see docs/grpc.md)",
    )
    serve.add_argument(
        "--hub",
        help="the task hub to serve without an app (default 'default'); with an app, its name",
    )
    serve.add_argument("--store", default=DEFAULT_STORE)
    serve.add_argument("--host", default="127.0.0.1", help="HTTP address (default: loopback)")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument(
        "--local-port",
        type=int,
        help="also serve the API WITHOUT keys on 127.0.0.1:PORT (for SDKs that send none, "
        "like the Functions host's RPC port)",
    )
    serve.add_argument("--no-http", action="store_true", help="run no HTTP API")
    serve.add_argument(
        "--no-workers", action="store_true", help="run no workers, schedules or queue triggers"
    )
    serve.add_argument("--json-logs", action="store_true", help="log one JSON object per line")
    serve.add_argument("--max-concurrent-activities", type=int)
    serve.add_argument("--max-concurrent-orchestrations", type=int)
    serve.add_argument("--lease-for", type=float, help="lease seconds (default 30)")
    serve.add_argument(
        "--poll-interval", type=float, help="fallback poll of the workers, seconds (default 1)"
    )
    serve.add_argument(
        "--otlp-endpoint",
        help="export traces by OTLP/HTTP to this URL, e.g. http://127.0.0.1:4318 "
        "(default: OTEL_EXPORTER_OTLP_ENDPOINT; needs taskloom[otel])",
    )
    serve.add_argument(
        "--heartbeat-every",
        type=float,
        help="seconds between the workers' heartbeats in the worker registry (default 5; 0: none)",
    )

    def managed(name: str, help: str) -> argparse.ArgumentParser:
        cmd = sub.add_parser(name, help=help)
        cmd.add_argument("--store", default=DEFAULT_STORE)
        cmd.add_argument("--hub", default="default", help="task hub (the App's name)")
        return cmd

    start = managed("start", "start an orchestration; prints its instance id")
    start.add_argument("name")
    start.add_argument("--input", help="JSON input")
    start.add_argument("--id", dest="instance_id")
    start.add_argument("--wait", type=float, help="wait this many seconds for completion")
    start.add_argument("--version", help="the instance's orchestration version")
    for name, help in (("status", "show an instance"), ("history", "print the history")):
        managed(name, help).add_argument("instance_id")
    event = managed("raise-event", "deliver an external event")
    event.add_argument("instance_id")
    event.add_argument("event_name")
    event.add_argument("--data", help="JSON data")
    for name in ("terminate", "suspend", "resume", "rewind"):
        cmd = managed(name, f"{name} an instance")
        cmd.add_argument("instance_id")
        cmd.add_argument("--reason")
    managed("purge", "delete a finished instance").add_argument("instance_id")
    restart = managed("restart", "start an instance's orchestration again; prints the id")
    restart.add_argument("instance_id")
    restart.add_argument(
        "--same-id", action="store_true", help="replace the finished instance, keep its id"
    )
    listing = managed("list", "list instances")
    listing.add_argument("--status", action="append")
    listing.add_argument("--name")
    listing.add_argument("--prefix")
    listing.add_argument("--top", type=int, default=100)
    cli_host.add_commands(sub, DEFAULT_STORE)
    cli_events.add_commands(sub, DEFAULT_STORE)
    cli_topics.add_commands(sub, DEFAULT_STORE)
    cli_dashboard.add_commands(sub, DEFAULT_STORE)
    return parser


def _state_json(state: OrchestrationState) -> dict[str, Any]:
    return {
        "instanceId": state.instance_id,
        "name": state.name,
        "runtimeStatus": state.runtime_status.value,
        "input": state.input,
        "output": state.output,
        "customStatus": state.custom_status,
        "createdTime": state.created_at.isoformat() if state.created_at else None,
        "lastUpdatedTime": state.last_updated_at.isoformat() if state.last_updated_at else None,
        "failureDetails": state.failure_details.to_dict() if state.failure_details else None,
    }


def _json_arg(text: str | None, what: str) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise TaskloomError(f"{what} is not valid JSON ({exc}); quote strings: '\"x\"'") from exc


def _manage(args: argparse.Namespace) -> int:
    with Client(args.store, hub=args.hub) as client:
        cmd = args.command
        if cmd == "start":
            data = _json_arg(args.input, "--input")
            iid = client.start_new(args.name, data, args.instance_id, version=args.version)
            if args.wait:
                print(
                    json.dumps(_state_json(client.wait_for_completion(iid, args.wait)), default=str)
                )
            else:
                print(iid)
        elif cmd == "status":
            state = client.get_status(args.instance_id)
            if state is None:
                print(f"no instance {args.instance_id!r}", file=sys.stderr)
                return 1
            print(json.dumps(_state_json(state), indent=2, default=str))
        elif cmd == "history":
            for event in client.get_history(args.instance_id):
                print(json.dumps(event_to_dict(event), default=str))
        elif cmd == "raise-event":
            data = _json_arg(args.data, "--data")
            client.raise_event(args.instance_id, args.event_name, data)
        elif cmd in ("terminate", "suspend", "resume", "rewind"):
            getattr(client, cmd)(args.instance_id, args.reason)
        elif cmd == "purge":
            print(client.purge(args.instance_id))
        elif cmd == "restart":
            print(client.restart(args.instance_id, new_instance_id=not args.same_id))
        elif cmd == "list":
            page = client.query(
                statuses=args.status,
                name=args.name,
                instance_id_prefix=args.prefix,
                page_size=args.top,
            )
            for state in page.items:
                print(json.dumps(_state_json(state), default=str))
    return 0


def _serve(args: argparse.Namespace) -> int:
    from taskloom.host.serve import run

    if args.app is None:
        if args.grpc is None:
            raise TaskloomError(
                "give the app to serve (MODULE:APP), or --grpc PORT to serve only SDK workers"
            )
        app = App(args.hub or "default")  # nothing registered: no native worker
        args.no_workers = True
    else:
        app = load_app(args.app)
        if args.hub is not None and args.hub != app.name:
            raise TaskloomError(
                f"--hub {args.hub!r} differs from the app's name {app.name!r}: an app serves "
                "the hub of its name; drop --hub"
            )
    options = app.worker_options(
        max_concurrent_activities=args.max_concurrent_activities,
        max_concurrent_orchestrations=args.max_concurrent_orchestrations,
        lease_for=args.lease_for,
        poll_interval=args.poll_interval,
        heartbeat_every=args.heartbeat_every,
    )
    run(
        app,
        args.store,
        host=args.host,
        port=args.port,
        local_port=args.local_port,
        grpc_port=args.grpc,
        http=not args.no_http,
        workers=not args.no_workers,
        json_logs=args.json_logs,
        options=options,
        otlp_endpoint=args.otlp_endpoint,
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        if args.command == "serve":
            return _serve(args)
        if args.command in cli_host.COMMANDS:
            return cli_host.run(args)
        if args.command in cli_events.COMMANDS:
            return cli_events.run(args, load_app)
        if args.command in cli_topics.COMMANDS:
            return cli_topics.run(args)
        if args.command in cli_dashboard.COMMANDS:
            return cli_dashboard.run(args, load_app)
        return _manage(args)
    except (TaskloomError, ValueError, TimeoutError) as exc:
        print(f"taskloom: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
