"""CompleteOrchestratorTask, CompleteActivityTask and the Abandon RPCs."""

from __future__ import annotations

from taskloom.grpc.base import SidecarBase


class CompletionRpcs(SidecarBase):
    """Completions and abandons of orchestration and activity work items."""
