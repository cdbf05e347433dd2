"""Seed 001's ``MySyncItem`` as a JSON object, and the instance id it maps to."""

from __future__ import annotations

from datetime import datetime
from typing import TypedDict

WORKFLOW_PREFIX = "Workflow-"
# The Azure sample keyed instances by the trigger date. We key them by the minute: the
# four ticks of one minute map to the same instances (the duplicates are skipped), and
# a person watching `taskloom serve` sees new workflows start every minute.
DATE_FORMAT = "%Y%m%d-%H%M"


class SyncItem(TypedDict):
    id: int
    sync_name: str
    trigger_date_utc: str  # ISO 8601, UTC


def sync_items(scheduled_time: datetime) -> list[SyncItem]:
    """The items one tick produces."""
    when = scheduled_time.isoformat()
    return [
        SyncItem(id=1, sync_name="Customers", trigger_date_utc=when),
        SyncItem(id=2, sync_name="Orders", trigger_date_utc=when),
    ]


def workflow_instance_id(item: SyncItem) -> str:
    """``Workflow-{Id}-{SyncName}-{Date}``."""
    date = datetime.fromisoformat(item["trigger_date_utc"]).strftime(DATE_FORMAT)
    return f"{WORKFLOW_PREFIX}{item['id']}-{item['sync_name']}-{date}"
