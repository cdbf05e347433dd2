"""Hello and GetWorkItems: leasing orchestration episodes and activities for SDK workers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from durabletask.internal import orchestrator_service_pb2 as pb
from google.protobuf import empty_pb2

from taskloom.grpc.base import SidecarBase, rpc, stream_rpc
from taskloom.grpc.hubs import Hub
from taskloom.history import HistoryEvent
from taskloom.storage.base import LeasedEpisode


class WorkItemRpcs(SidecarBase):
    """Hello and the work-item stream."""

    @rpc
    async def Hello(self, request: Any, context: Any) -> empty_pb2.Empty:
        await self.caller(context, "read")
        return empty_pb2.Empty()

    @stream_rpc
    async def GetWorkItems(
        self, request: pb.GetWorkItemsRequest, context: Any
    ) -> AsyncIterator[Any]:
        await self.caller(context, "work")
        if False:  # pragma: no cover - filled in next
            yield pb.WorkItem()

    def entity_work_item(
        self, hub: Hub, episode: LeasedEpisode, history: list[HistoryEvent], token: str
    ) -> pb.WorkItem | None:
        """The work item for a leased entity instance (id ``@name@key``), or None when
        entities are not served (the lease is then released). Overridden by
        :class:`taskloom.grpc.entity_rpcs.EntityRpcs`."""
        return None
