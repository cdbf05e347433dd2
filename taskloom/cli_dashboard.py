"""``taskloom dashboard --store URL [--hub H] [--host --port]``: the web dashboard alone,
without workers (``taskloom serve`` serves it too, at ``/dashboard/``).

Keys are required as for ``taskloom serve``: a store that holds keys requires a key to
sign in, and a store without any is only served on a loopback address.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable, Iterator
from typing import Any

COMMANDS = ("dashboard",)

log = logging.getLogger("taskloom.dashboard")


def add_commands(sub: Any, default_store: str) -> None:
    cmd = sub.add_parser("dashboard", help="serve the web dashboard alone (no workers)")
    cmd.add_argument("--store", default=default_store)
    cmd.add_argument("--hub", default="default", help="task hub (the App's name)")
    cmd.add_argument("--host", default="127.0.0.1", help="HTTP address (default: loopback)")
    cmd.add_argument("--port", type=int, default=8081)
    cmd.add_argument(
        "--app",
        help="MODULE:APP whose orchestrators the dashboard may replay (for 'waiting on "
        "event' and the why-panel's events); its name is the hub unless --hub is given",
    )


def run(args: argparse.Namespace, load_app: Callable[[str], Any]) -> int:
    app = None if args.app is None else load_app(args.app)
    if app is not None and args.hub == "default":
        args.hub = app.name
    asyncio.run(_run(args, app))
    return 0


def _server_class() -> Any:
    import uvicorn

    from taskloom.dashboard import sse

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            # SIGTERM and SIGINT stop the server gracefully and the command exits 0
            # (uvicorn's own handlers re-raise the signal once it has stopped).
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                    loop.add_signal_handler(sig, self._stop)
            yield

        def _stop(self) -> None:
            self.should_exit = True

        async def shutdown(self, sockets: Any = None) -> None:
            sse.close_streams()  # event streams never end by themselves
            await super().shutdown(sockets)

    return Server


async def _run(args: argparse.Namespace, app: Any) -> None:
    import uvicorn

    from taskloom.client import AsyncClient
    from taskloom.dashboard.app import standalone_app
    from taskloom.host import serve
    from taskloom.storage import open_store

    store = open_store(args.store, hub=args.hub)
    await store.open()
    try:
        exposure = await serve._check_exposure(store, args.host)
        netloc = f"[{args.host}]" if ":" in args.host else args.host
        client = AsyncClient(store, args.hub, base_url=f"http://{netloc}:{args.port}")
        if app is not None:
            client.converter = app.converter
        api = standalone_app(client, open_without_keys=exposure.open, app=app)
        log.info(
            "dashboard of hub %r on http://%s:%d/dashboard/: %s",
            args.hub,
            netloc,
            args.port,
            exposure.why,
        )
        config = uvicorn.Config(
            api,
            host=args.host,
            port=args.port,
            log_config=None,
            access_log=False,
            lifespan="off",
            server_header=False,
        )
        await _server_class()(config).serve()
    finally:
        await store.close()
