"""What a bulk action is for and who asked: the request, its filter, its signature, and
the dry run (see :mod:`taskloom.dashboard.bulk_job` for the job that carries it out).

A :class:`BulkRequest` is the job's input and the first half of its audit record: the
action, the filter (the instance list's stored filters), when and by which key it was
asked, the reason, the rate and the page size. The dashboard signs it with a secret kept
in the store (:func:`signed_input`) and the job's activities check the signature
(:func:`verified`): the audit names who asked, so an input made up by someone starting
``taskloom.bulk`` through the HTTP API is refused.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from taskloom import security
from taskloom.models import Status
from taskloom.storage.base import InstanceQuery, InstanceRecord, Store
from taskloom.storage.host_base import HostStore

_ACTIVE = frozenset({Status.PENDING, Status.RUNNING, Status.SUSPENDED})
_TERMINAL = frozenset(s for s in Status if s.is_terminal)

#: The statuses each action applies to; a filter's statuses are narrowed to these.
ELIGIBLE: dict[str, frozenset[Status]] = {
    "terminate": _ACTIVE,
    "suspend": frozenset({Status.PENDING, Status.RUNNING}),
    "resume": frozenset({Status.SUSPENDED}),
    "restart": _TERMINAL,
    "purge": _TERMINAL,
    "rewind": frozenset({Status.FAILED}),
}

ACTIONS = tuple(ELIGIBLE)
MAX_PAGE_SIZE = 500
MAX_RATE = 10_000.0
_SECRET = "dashboard-bulk"


class BulkRequestError(ValueError):
    """A bulk request that cannot run; the message says which field is wrong and how."""


def _time(value: Any, what: str) -> datetime | None:
    if value in (None, ""):
        return None
    if isinstance(value, datetime):
        moment = value
    else:
        try:
            moment = datetime.fromisoformat(str(value))
        except ValueError:
            raise BulkRequestError(
                f"{what} {value!r} is not a time; use ISO 8601, e.g. 2026-01-31T12:00:00Z"
            ) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


@dataclass(frozen=True)
class BulkFilter:
    """Which instances a bulk action is for: the instance list's filters."""

    statuses: frozenset[Status] | None = None
    name: str | None = None
    instance_id_prefix: str | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None
    version: str | None = None  # "" selects instances without a version

    @classmethod
    def parse(cls, data: dict[str, Any]) -> BulkFilter:
        """From JSON-like values (status names, ISO times); a BulkRequestError if bad."""
        unknown = set(data) - {
            "statuses",
            "name",
            "instance_id_prefix",
            "created_from",
            "created_to",
            "version",
        }
        if unknown:
            raise BulkRequestError(f"unknown filter field(s) {sorted(unknown)}")
        raw = data.get("statuses")
        statuses = None
        if raw:
            try:
                statuses = frozenset(Status.parse(str(s)) for s in raw)
            except ValueError as exc:
                raise BulkRequestError(str(exc)) from None
        prefix = data.get("instance_id_prefix") or None
        if prefix is not None and str(prefix).startswith("@"):
            raise BulkRequestError(
                f"instance id prefix {prefix!r} selects entities; bulk actions are for "
                "orchestrations (clean entities with the entities view)"
            )
        return cls(
            statuses=statuses,
            name=data.get("name") or None,
            instance_id_prefix=prefix,
            created_from=_time(data.get("created_from"), "created_from"),
            created_to=_time(data.get("created_to"), "created_to"),
            version=data.get("version"),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "statuses": None if self.statuses is None else sorted(s.value for s in self.statuses),
            "name": self.name,
            "instance_id_prefix": self.instance_id_prefix,
            "created_from": None if self.created_from is None else self.created_from.isoformat(),
            "created_to": None if self.created_to is None else self.created_to.isoformat(),
            "version": self.version,
        }

    def query(self, action: str, until: datetime | None = None) -> InstanceQuery | None:
        """The store query for ``action``: the statuses narrowed to those it applies to,
        created no later than ``until``; None when no status is left."""
        wanted = ELIGIBLE[action] if self.statuses is None else self.statuses & ELIGIBLE[action]
        if not wanted:
            return None
        created_to = self.created_to
        if until is not None and (created_to is None or until < created_to):
            created_to = until
        return InstanceQuery(
            statuses=frozenset(wanted),
            name=self.name,
            instance_id_prefix=self.instance_id_prefix,
            created_from=self.created_from,
            created_to=created_to,
            version=self.version,
        )


@dataclass(frozen=True)
class BulkRequest:
    """What a job does and for whom: its input, and with it the audit's who and when."""

    action: str
    filter: BulkFilter
    requested_at: datetime
    by_key_id: str | None = None
    by_name: str | None = None
    by_role: str = "admin"
    reason: str | None = None
    rate: float = 50.0  # instances per second
    page_size: int = 50

    def __post_init__(self) -> None:
        if self.action not in ELIGIBLE:
            raise BulkRequestError(
                f"unknown bulk action {self.action!r}; use one of: {', '.join(ACTIONS)}"
            )
        if not 0 < self.rate <= MAX_RATE:
            raise BulkRequestError(
                f"rate {self.rate!r} must be more than 0 and at most {MAX_RATE:g} instances "
                "per second"
            )
        if not 1 <= self.page_size <= MAX_PAGE_SIZE:
            raise BulkRequestError(f"page size {self.page_size!r} must be 1 to {MAX_PAGE_SIZE}")

    def to_json(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "filter": self.filter.to_json(),
            "requested_at": self.requested_at.isoformat(),
            "by": {"key_id": self.by_key_id, "name": self.by_name, "role": self.by_role},
            "reason": self.reason,
            "rate": self.rate,
            "page_size": self.page_size,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BulkRequest:
        by = data.get("by") or {}
        requested = _time(data.get("requested_at"), "requested_at")
        if requested is None:
            raise BulkRequestError("a bulk request needs requested_at")
        try:
            rate = float(data.get("rate", 50.0))
            page_size = int(data.get("page_size", 50))
        except (TypeError, ValueError):
            raise BulkRequestError("rate and page_size must be numbers") from None
        return cls(
            action=str(data.get("action")),
            filter=BulkFilter.parse(data.get("filter") or {}),
            requested_at=requested,
            by_key_id=by.get("key_id"),
            by_name=by.get("name"),
            by_role=str(by.get("role") or "admin"),
            reason=data.get("reason"),
            rate=rate,
            page_size=page_size,
        )


def is_target(record: InstanceRecord) -> bool:
    """Whether a bulk job may act on ``record``: not an entity, not a bulk job."""
    return not record.instance_id.startswith("@") and not record.name.startswith("taskloom.")


# -- signatures ----------------------------------------------------------------------------


async def _secret(store: Store) -> str:
    if not isinstance(store, HostStore):
        raise BulkRequestError(f"{store!r} keeps no secrets; bulk jobs need SQLite or PostgreSQL")
    return await store.secret(_SECRET, security.new_secret())


def _signature(secret: str, data: dict[str, Any]) -> str:
    body = {k: v for k, v in data.items() if k != "signature"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hmac.new(secret.encode(), text.encode(), hashlib.sha256).hexdigest()


async def signed_input(store: Store, request: BulkRequest) -> dict[str, Any]:
    """``request`` as the job's input, signed for :func:`verified`."""
    data = request.to_json()
    data["signature"] = _signature(await _secret(store), data)
    return data


async def verified(store: Store, data: dict[str, Any]) -> BulkRequest:
    """The request of a job's input, or a BulkRequestError if it was not signed here."""
    expected = _signature(await _secret(store), data)
    if not hmac.compare_digest(str(data.get("signature", "")), expected):
        raise BulkRequestError(
            "this bulk job's input is not signed by the dashboard: start bulk actions "
            "from /dashboard/bulk (it records who asked), not by starting taskloom.bulk"
        )
    return BulkRequest.from_json(data)


# -- dry run -----------------------------------------------------------------------------


@dataclass(frozen=True)
class DryRun:
    """What a bulk request would act on now: ``count`` (at least, when ``capped``) and
    the first ``sample`` instances."""

    count: int
    capped: bool
    sample: list[InstanceRecord]


async def dry_run(
    store: Store, request: BulkRequest, *, sample: int = 10, cap: int = 100_000
) -> DryRun:
    """Count what ``request`` would act on now and return a sample.

    A filter on statuses alone is counted with the store's grouped count
    (:meth:`Store.count_instances`, one query) less the bulk jobs among them; any other
    filter is paged like the job pages it, stopping past ``cap`` (``capped``)."""
    query = request.filter.query(request.action, request.requested_at)
    if query is None:
        return DryRun(0, False, [])
    flt = request.filter
    if not (flt.name or flt.instance_id_prefix or flt.created_from or flt.created_to) and (
        flt.version is None
    ):
        return await _counted(store, query, sample)
    count, found, token = 0, list[InstanceRecord](), None
    while True:
        page = await store.query_instances(query, min(1000, max(cap, 1)), token)
        for record in page.records:
            if is_target(record):
                count += 1
                if len(found) < sample:
                    found.append(record)
        token = page.continuation_token
        if token is None:
            return DryRun(count, False, found)
        if count >= cap:
            return DryRun(count, True, found)


async def _counted(store: Store, query: InstanceQuery, sample: int) -> DryRun:
    statuses = query.statuses or frozenset()
    counts = await store.count_instances()
    total = sum(counts.get(s, 0) for s in statuses)
    jobs = InstanceQuery(statuses=statuses, name="taskloom.bulk")
    token: str | None = None
    while True:  # bulk jobs are few; they are never acted on
        page = await store.query_instances(jobs, 1000, token)
        total -= len(page.records)
        token = page.continuation_token
        if token is None:
            break
    first = await store.query_instances(query, max(2 * sample, 50), None)
    found = [r for r in first.records if is_target(r)][:sample]
    return DryRun(max(total, 0), False, found)
