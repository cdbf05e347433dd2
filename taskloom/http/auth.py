"""Who is calling: API keys with roles, checked per route.

A request carries ``Authorization: Bearer KEY`` or ``?code=KEY``. The key's SHA-256 is
looked up in the store (:meth:`HostStore.key_lookup`), briefly cached. With no key on a
host that is open (bound to loopback while the store holds no keys for any hub), or on the
key-free loopback listener (``taskloom serve --local-port``), the caller acts as
``admin``, provided the request is addressed to localhost and comes from no foreign
page. Outcomes: 401 for a missing, unknown or revoked key; 403 for a role without the
route's permission (see :mod:`taskloom.security`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request
from fastapi.security import APIKeyQuery, HTTPAuthorizationCredentials, HTTPBearer

from taskloom import security
from taskloom.storage.host_base import HostStore, KeyRecord

log = logging.getLogger("taskloom.http")

# auto_error=False: we answer 401 ourselves, with a message, and let open hosts through.
bearer_scheme = HTTPBearer(auto_error=False, description="An API key: `Bearer tlk_...`")
code_scheme = APIKeyQuery(name="code", auto_error=False, description="An API key in the query")

_CACHE_SECONDS = 2.0


@dataclass(frozen=True)
class Principal:
    """The caller of one request: a key's id, role and name, or (``key_id`` None) the
    caller of an open host, who acts as ``admin``. User routes get it from
    ``Depends(taskloom.http.authorize(...))``, e.g. to record who approved something."""

    key_id: str | None
    role: str
    name: str | None = None


class KeyCache:
    """Key lookups and "does the store hold any key" answers, kept for a couple of seconds
    so a busy API does not query the store on every request; a revoked key stops working
    within that time."""

    def __init__(self, store: HostStore, *, ttl: float = _CACHE_SECONDS) -> None:
        self.store = store
        self.ttl = ttl
        self._keys: dict[str, tuple[float, KeyRecord | None]] = {}
        self._any: tuple[float, bool] | None = None

    async def lookup(self, key: str) -> KeyRecord | None:
        digest = security.hash_key(key)
        now = time.monotonic()
        hit = self._keys.get(digest)
        if hit is not None and now - hit[0] < self.ttl:
            return hit[1]
        record = await self.store.key_lookup(digest)
        if len(self._keys) > 10_000:
            self._keys.clear()
        self._keys[digest] = (now, record)
        return record

    async def any_keys(self) -> bool:
        now = time.monotonic()
        if self._any is not None and now - self._any[0] < self.ttl:
            return self._any[1]
        # Any hub's keys close an open host: a key made for another hub of the store
        # means someone meant to protect this store.
        found = bool(await self.store.key_hubs())
        self._any = (now, found)
        return found

    def forget(self) -> None:
        """Drop cached answers (after keys were created or revoked through the API)."""
        self._keys.clear()
        self._any = None


def _key_of(bearer: HTTPAuthorizationCredentials | None, code: str | None) -> str | None:
    if bearer is not None and bearer.credentials:
        return bearer.credentials.strip()
    return code or None


_LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})


def _host_name(value: str) -> str:
    value = value.strip().lower()
    if value.startswith("["):
        return value.split("]", 1)[0] + "]"
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


def _refuse_foreign_browsers(request: Request, *, local_listener: bool = False) -> None:
    """An open (keyless, loopback) host only answers local callers by local names.

    A web page the developer visits can send requests to 127.0.0.1 (cross-site, with an
    ``Origin`` header) or reach it under its own name through DNS rebinding (a foreign
    ``Host``); neither may act as the keyless admin.
    """
    what = "this listener takes no API keys" if local_listener else "this host has no API keys"
    host = _host_name(request.headers.get("host", ""))
    if host not in _LOOPBACK_NAMES:
        raise HTTPException(
            403,
            f"{what} and only answers requests addressed to localhost "
            f"or 127.0.0.1, not {host!r}; create a key (taskloom keys create) to serve others",
        )
    origin = request.headers.get("origin")
    if origin is not None and _host_name(origin.split("://", 1)[-1]) not in _LOOPBACK_NAMES:
        raise HTTPException(
            403,
            f"cross-site request from {origin!r} refused: {what}; "
            "browsers may only call it from pages served by localhost",
        )


def authorize(permission: str) -> Any:
    """A FastAPI dependency that admits callers whose role has ``permission`` (``read``,
    ``write``, ``work`` or ``admin``) and returns their :class:`Principal`. User routes
    on ``app.api`` can use it too: ``Depends(taskloom.http.authorize("write"))``."""

    async def check(
        request: Request,
        bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
        code: Annotated[str | None, Depends(code_scheme)],
    ) -> Principal:
        keys: KeyCache = request.app.state.taskloom_keys
        key = _key_of(bearer, code)
        if key is None:
            if getattr(request.app.state, "taskloom_local", False):
                _refuse_foreign_browsers(request, local_listener=True)
                principal = Principal(None, "admin", "local")
            elif request.app.state.taskloom_open and not await keys.any_keys():
                _refuse_foreign_browsers(request)
                principal = Principal(None, "admin")
            else:
                raise HTTPException(
                    401,
                    "an API key is required: send 'Authorization: Bearer KEY' or ?code=KEY "
                    "(create one with: taskloom keys create --role reader)",
                    headers={"WWW-Authenticate": "Bearer"},
                )
        else:
            record = await keys.lookup(key)
            if record is None:
                raise HTTPException(
                    401,
                    "unknown or revoked API key: check the key you sent, or ask an admin "
                    "for a new one (taskloom keys create --role ...)",
                    headers={"WWW-Authenticate": "Bearer"},
                )
            principal = Principal(record.id, record.role, record.name)
        if not security.allows(principal.role, permission):
            raise HTTPException(
                403, f"role {principal.role!r} may not do this (it needs {permission!r} rights)"
            )
        request.state.principal = principal
        return principal

    return check


read = Depends(authorize("read"))
write = Depends(authorize("write"))
admin = Depends(authorize("admin"))
