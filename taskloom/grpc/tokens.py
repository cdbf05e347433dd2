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

from taskloom.grpc.hubs import invalid

ORCHESTRATION = "o"
ACTIVITY = "a"
ENTITY = "e"


@dataclass(frozen=True)
class Token:
    hub: str
    kind: str
    item: str
    lease_token: int

    def encode(self) -> str:
        return json.dumps([1, self.hub, self.kind, self.item, self.lease_token])

    @property
    def work_item_id(self) -> int:
        return int(self.item)


def decode(text: str, kind: str) -> Token:
    """The token in ``text``; INVALID_ARGUMENT when it is not one of ours or not ``kind``."""
    try:
        version, hub, found, item, lease = json.loads(text)
        ok = version == 1 and isinstance(hub, str) and isinstance(item, str)
        ok = ok and isinstance(lease, int) and found == kind
    except (ValueError, TypeError):
        ok = False
    if not ok:
        what = {ORCHESTRATION: "orchestration", ACTIVITY: "activity", ENTITY: "entity"}[kind]
        raise invalid(
            f"malformed completionToken {text[:80]!r}: send back the token of the "
            f"{what} work item exactly as GetWorkItems sent it"
        )
    return Token(hub, kind, item, lease)
