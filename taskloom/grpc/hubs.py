"""Which hub a gRPC call is for, and who is calling.

The ``taskhub`` request metadata names the hub, as the Durable Task Scheduler does (the
``durabletask.azuremanaged`` SDK sends it); without it the call goes to the hub ``serve``
was given. Each hub gets its own :class:`~taskloom.storage.base.Store` over the served
store URL, opened on first use and kept until the server stops.

Callers are admitted as the HTTP API admits them (:mod:`taskloom.http.auth`): an API key
in ``authorization: Bearer KEY`` metadata, looked up in the hub's store with the roles of
:mod:`taskloom.security` (``work`` to take and complete work items, ``read`` to read,
``write`` to start and control instances; as over HTTP, ``admin`` and ``contributor``
keys do not take work items, only ``worker`` keys do). Without a key the caller has every
right (workers included) only when the server is bound to loopback and the store holds no
key for any hub; otherwise UNAUTHENTICATED. A role without the right gets
PERMISSION_DENIED.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc

from taskloom import security
from taskloom.client import AsyncClient
from taskloom.http.auth import KeyCache
from taskloom.storage import open_store
from taskloom.storage.base import Store
from taskloom.storage.host_base import HostStore

#: Metadata keys (gRPC lowercases them).
TASKHUB_KEY = "taskhub"
AUTHORIZATION_KEY = "authorization"


class RpcError(Exception):
    """A client's mistake: answered with ``code`` and ``message`` (never INTERNAL)."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def invalid(message: str) -> RpcError:
    return RpcError(grpc.StatusCode.INVALID_ARGUMENT, message)


def not_found(message: str) -> RpcError:
    return RpcError(grpc.StatusCode.NOT_FOUND, message)


def precondition(message: str) -> RpcError:
    return RpcError(grpc.StatusCode.FAILED_PRECONDITION, message)


@dataclass
class Hub:
    """One hub being served: its store, a client over it, and its key cache."""

    name: str
    store: Store
    client: AsyncClient
    keys: KeyCache | None
    #: Extra state plug-ins keep per hub (e.g. entity or client helpers).
    extras: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Caller:
    """Who made a call: the hub it addressed and the role it acts with."""

    hub: Hub
    role: str
    key_id: str | None = None


class HubRegistry:
    """The hubs of one store URL, opened lazily, one store each."""

    def __init__(
        self,
        store_url: str,
        default_hub: str = "default",
        *,
        open_without_keys: bool = False,
        stores: Sequence[Store] = (),
    ) -> None:
        self.store_url = store_url
        self.default_hub = default_hub
        self.open_without_keys = open_without_keys
        self._hubs: dict[str, Hub] = {}
        self._owned: set[str] = set()
        self._lock = asyncio.Lock()
        for store in stores:  # already open (e.g. the app's store when serving an app)
            self._hubs[store.hub] = self._make(store)

    @staticmethod
    def _make(store: Store) -> Hub:
        keys = KeyCache(store) if isinstance(store, HostStore) else None
        return Hub(store.hub, store, AsyncClient(store, store.hub), keys)

    async def hub(self, name: str | None) -> Hub:
        """The hub called ``name`` (the default hub for None or empty), opened on first use."""
        name = name or self.default_hub
        found = self._hubs.get(name)
        if found is not None:
            return found
        if len(name) > 200 or any(ord(c) < 32 for c in name):
            raise invalid(
                f"invalid task hub name {name[:60]!r}: send a short printable name "
                "in the 'taskhub' metadata"
            )
        async with self._lock:
            found = self._hubs.get(name)
            if found is None:
                store = open_store(self.store_url, hub=name)
                await store.open()
                found = self._hubs[name] = self._make(store)
                self._owned.add(name)
        return found

    async def caller(self, context: Any, permission: str) -> Caller:
        """The hub and role of the call ``context``, if its role has ``permission``;
        otherwise an :class:`RpcError` (UNAUTHENTICATED or PERMISSION_DENIED)."""
        metadata = {k.lower(): v for k, v in (context.invocation_metadata() or ())}
        hub_name = metadata.get(TASKHUB_KEY)
        hub = await self.hub(hub_name if isinstance(hub_name, str) else None)
        key = _bearer(metadata.get(AUTHORIZATION_KEY))
        caller = await self._identify(hub, key)
        if caller.key_id is None:
            return caller  # an open hub: every right, workers included (local development)
        if not security.allows(caller.role, permission):
            raise RpcError(
                grpc.StatusCode.PERMISSION_DENIED,
                f"role {caller.role!r} may not do this on hub {hub.name!r} "
                f"(it needs {permission!r} rights; a worker needs a 'worker' key)",
            )
        return caller

    async def _identify(self, hub: Hub, key: str | None) -> Caller:
        if hub.keys is None:
            return Caller(hub, "admin")
        if key is None:
            if self.open_without_keys and not await hub.keys.any_keys():
                return Caller(hub, "admin")
            raise RpcError(
                grpc.StatusCode.UNAUTHENTICATED,
                f"an API key is required for hub {hub.name!r}: send 'authorization: "
                "Bearer KEY' metadata (create one with: taskloom keys create --role worker)",
            )
        record = await hub.keys.lookup(key)
        if record is None:
            raise RpcError(
                grpc.StatusCode.UNAUTHENTICATED,
                f"unknown or revoked API key for hub {hub.name!r}: check the key you sent, "
                "or ask an admin for a new one (taskloom keys create --role ...)",
            )
        return Caller(hub, record.role, record.id)

    def hubs(self) -> list[Hub]:
        return list(self._hubs.values())

    async def close(self) -> None:
        """Close the stores this registry opened (not the ones it was given)."""
        for name in list(self._owned):
            hub = self._hubs.pop(name)
            await hub.store.close()
        self._owned.clear()


def _bearer(value: object) -> str | None:
    if not isinstance(value, str) or not value.strip():
        return None
    scheme, _, rest = value.strip().partition(" ")
    if scheme.lower() == "bearer" and rest.strip():
        return rest.strip()
    return value.strip() if not rest else None
