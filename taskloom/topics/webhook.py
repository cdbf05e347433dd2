"""Webhook deliveries over HTTP (placeholder until the webhook sender lands)."""

from __future__ import annotations

from collections.abc import Sequence

from taskloom.cloudevents.event import CloudEvent
from taskloom.topics.policy import Outcome
from taskloom.topics.specs import WebhookSpec

__all__ = ["HttpSender"]


class HttpSender:
    async def send(
        self, spec: WebhookSpec, subscription: str, topic: str, events: Sequence[CloudEvent]
    ) -> Outcome:
        raise NotImplementedError("webhook delivery is not built yet")

    async def aclose(self) -> None:
        return None
