"""The HTTP side: the Durable Functions management API, keys, signed links, user routes.

``taskloom.http.client`` and ``taskloom.http.authorize`` are FastAPI dependencies for the
app's own routes. They load FastAPI lazily: the client imports :mod:`taskloom.http.payloads`
without the ``server`` extra installed.
"""

from __future__ import annotations

from typing import Any

__all__ = ["authorize", "client", "create_asgi_app"]


def __getattr__(name: str) -> Any:
    if name == "client":
        from taskloom.http.deps import client

        return client
    if name == "authorize":
        from taskloom.http.auth import authorize

        return authorize
    if name == "create_asgi_app":
        from taskloom.http.api import create_asgi_app

        return create_asgi_app
    raise AttributeError(f"module 'taskloom.http' has no attribute {name!r}")
