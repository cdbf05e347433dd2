"""The ``TaskHubSidecarService`` on a ``grpc.aio`` server.

:class:`Sidecar` combines the worker RPCs (Hello, GetWorkItems, the Complete and Abandon
RPCs; mixins from :mod:`taskloom.grpc.work_items` and :mod:`taskloom.grpc.completion`),
entity work (:mod:`taskloom.grpc.entity_rpcs`) and the tables of client and entity RPCs
(:mod:`taskloom.grpc.client_rpcs`), installed as methods by
:func:`taskloom.grpc.base.install_rpcs`. RPCs no mixin implements answer
UNIMPLEMENTED (the generated servicer's default).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import grpc
from durabletask.internal import orchestrator_service_pb2_grpc as pb_grpc

from taskloom.clock import Clock
from taskloom.grpc.base import install_rpcs
from taskloom.grpc.client_rpcs import CLIENT_RPCS, CLIENT_STREAMS
from taskloom.grpc.completion import CompletionRpcs
from taskloom.grpc.entity_rpcs import ENTITY_RPCS, EntityWork
from taskloom.grpc.hubs import HubRegistry
from taskloom.grpc.work_items import WorkItemRpcs
from taskloom.storage.base import Store


class Sidecar(
    EntityWork,
    CompletionRpcs,
    WorkItemRpcs,
    pb_grpc.TaskHubSidecarServiceServicer,
):
    """All the RPCs of the service."""


install_rpcs(Sidecar, {**CLIENT_RPCS, **ENTITY_RPCS}, CLIENT_STREAMS)


class GrpcServer:
    """A running sidecar: ``await start()``, then ``await stop()``."""

    def __init__(
        self,
        store_url: str,
        *,
        host: str = "127.0.0.1",
        port: int = 4001,
        default_hub: str = "default",
        open_without_keys: bool = False,
        stores: Sequence[Store] = (),
        clock: Clock | None = None,
        lease_for: float = 30.0,
        ping_interval: float = 10.0,
    ) -> None:
        self.hubs = HubRegistry(
            store_url, default_hub, open_without_keys=open_without_keys, stores=stores
        )
        self.sidecar = Sidecar(
            self.hubs, clock=clock, lease_for=lease_for, ping_interval=ping_interval
        )
        self.host = host
        self.port = port
        self._server: Any = None

    @property
    def address(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    async def start(self) -> None:
        server = grpc.aio.server(
            options=[("grpc.max_receive_message_length", 64 * 1024 * 1024)],
        )
        pb_grpc.add_TaskHubSidecarServiceServicer_to_server(self.sidecar, server)  # type: ignore[no-untyped-call]
        bound = server.add_insecure_port(self.address)
        if bound == 0:
            from taskloom.errors import ConfigurationError

            raise ConfigurationError(f"could not serve gRPC on {self.address}: port in use?")
        self.port = bound
        await server.start()
        self._server = server

    async def stop(self, grace: float = 5.0) -> None:
        if self._server is not None:
            self.sidecar.stopping = True
            await self._server.stop(grace)
            self._server = None
        await self.sidecar.close()
        await self.hubs.close()
