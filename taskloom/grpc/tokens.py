"""Completion tokens: what a work item sent to an SDK worker is called when it comes back.

A token names the hub, the kind of item, the item (an instance id, or a work item id) and
the store's lease (fencing) token, as JSON text. It carries no stream identity, so a
completion that arrives on a new connection after the worker reconnected still commits,
as long as the store still holds that lease; once the lease was lost (expired and taken
by another worker), the store refuses the commit and the completion is ignored.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from taskloom.grpc.hubs import invalid

ORCHESTRATION = "o"
ACTIVITY = "a"
ENTITY = "e"


@dataclass(frozen=True)
class Token:
    """``item``: the instance id (orchestrations, entities) or the work item id
    (activities); ``detail``: what completing the item needs besides (for an activity:
    instance id, execution id, task id), so an activity completes even after the
    sidecar restarted."""

    hub: str
    kind: str
    item: str
    lease_token: int
    detail: tuple[str | int, ...] = ()

    def encode(self) -> str:
        return json.dumps([1, self.hub, self.kind, self.item, self.lease_token, self.detail])


def decode(text: str, kind: str) -> Token:
    """The token in ``text``; INVALID_ARGUMENT when it is not one of ours or not ``kind``."""
    try:
        version, hub, found, item, lease, detail = json.loads(text)
        ok = version == 1 and isinstance(hub, str) and isinstance(item, str)
        ok = ok and isinstance(lease, int) and found == kind and isinstance(detail, list)
        ok = ok and all(isinstance(d, str | int) for d in detail)
    except (ValueError, TypeError):
        ok = False
    if not ok:
        what = {ORCHESTRATION: "orchestration", ACTIVITY: "activity", ENTITY: "entity"}[kind]
        raise invalid(
            f"malformed completionToken {text[:80]!r}: send back the token of the "
            f"{what} work item exactly as GetWorkItems sent it"
        )
    return Token(hub, kind, item, lease, tuple(detail))


@dataclass
class Dispatched:
    """A work item sent to an SDK worker and not yet completed or abandoned.

    ``payload`` is what completing it needs (for an orchestration the leased episode,
    its history and the new events sent; for an activity the leased work item);
    ``stream`` is the GetWorkItems stream that sent it (its slots and lease renewals).
    """

    token: Token
    payload: Any
    stream: Any
    #: When it was sent, or its lease last renewed (:meth:`InFlight.sweep`).
    sent_at: float


class InFlight:
    """Work items out with SDK workers, by completion token, across all streams.

    An entry outlives the stream that sent it, so a completion arriving on another
    connection (after the worker reconnected) still finds it; entries whose lease can
    no longer be held are swept after ``keep_for`` seconds.
    """

    def __init__(self, keep_for: float) -> None:
        self.keep_for = keep_for
        self._items: dict[str, Dispatched] = {}

    def add(self, item: Dispatched) -> str:
        text = item.token.encode()
        self._items[text] = item
        return text

    def pop(self, text: str) -> Dispatched | None:
        item = self._items.pop(text, None)
        if item is not None and item.stream is not None:
            item.stream.finished(item)
        return item

    def of_stream(self, stream: Any) -> list[Dispatched]:
        return [d for d in self._items.values() if d.stream is stream]

    def sweep(self, now: float) -> None:
        """Forget items sent (or renewed, ``sent_at``) longer than ``keep_for`` ago:
        their leases have lapsed."""
        old = [k for k, d in self._items.items() if now - d.sent_at > self.keep_for]
        for key in old:
            self.pop(key)

    def __contains__(self, text: object) -> bool:
        return text in self._items

    def __len__(self) -> int:
        return len(self._items)
