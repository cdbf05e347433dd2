"""The HTTP side: the Durable Functions management API, keys, signed links, user routes.

``taskloom.http.client`` and ``taskloom.http.authorize`` are FastAPI dependencies for the
app's own routes; ``authorize`` gives the handler the caller's ``taskloom.http.Principal``.
They load FastAPI lazily, so a module can ``import taskloom.http`` without the ``server``
extra installed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from taskloom.http.auth import Principal, authorize
    from taskloom.http.deps import client

__all__ = ["Principal", "authorize", "client", "create_asgi_app"]


def __getattr__(name: str) -> Any:
    if name == "client":
        from taskloom.http.deps import client

        return client
    if name == "authorize":
        from taskloom.http.auth import authorize

        return authorize
    if name == "Principal":
        from taskloom.http.auth import Principal

        return Principal
    if name == "create_asgi_app":
        from taskloom.http.api import create_asgi_app

        return create_asgi_app
    raise AttributeError(f"module 'taskloom.http' has no attribute {name!r}")
