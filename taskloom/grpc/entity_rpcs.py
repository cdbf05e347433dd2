"""Entity RPCs and entity work items: placeholder until G2's module lands (G2 owns it)."""

from __future__ import annotations

from typing import Any

from taskloom.grpc.base import SidecarBase

#: Unary entity RPCs: name -> (permission, handler(hub, request, context)).
ENTITY_RPCS: dict[str, tuple[str, Any]] = {}


class EntityWork(SidecarBase):
    """Entity work items: overrides
    :meth:`taskloom.grpc.work_items.WorkItemRpcs.entity_work_item` and adds
    CompleteEntityTask / AbandonTaskEntityWorkItem."""
