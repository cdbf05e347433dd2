"""How the SQLite backend encodes values: times as INTEGER microseconds since the epoch
(they sort, and round-trip exactly to aware UTC datetimes), chunked ``IN`` lists, instance
rows and messages, paging tokens and the conditions of instance queries."""

from __future__ import annotations

import base64
import binascii
import json
import re
import sqlite3
from collections.abc import Collection, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import Any

from taskloom.history import loads_event
from taskloom.models import FailureDetails, Status
from taskloom.storage.base import InstanceQuery, InstanceRecord, Message, VersionFilter, names_json
from taskloom.storage.entity_rows import SQLITE_NO_ENTITIES, wants_entities

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
# Stay well below SQLITE_MAX_VARIABLE_NUMBER (32766 today, 999 in old builds).
CHUNK = 500


def us(moment: datetime) -> int:
    """Microseconds since the epoch; a naive datetime is taken as UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // _MICROSECOND


def us_or_none(moment: datetime | None) -> int | None:
    return None if moment is None else us(moment)


def dt(value: int) -> datetime:
    return _EPOCH + timedelta(microseconds=value)


def dt_or_none(value: int | None) -> datetime | None:
    return None if value is None else dt(value)


def seconds_to_us(seconds: float) -> int:
    return round(seconds * 1_000_000)


def chunks(items: Sequence[Any]) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), CHUNK):
        yield items[start : start + CHUNK]


def marks(count: int) -> str:
    """``?, ?, ...`` for ``count`` parameters."""
    return ", ".join("?" * count)


def record_params(hub: str, record: InstanceRecord) -> dict[str, Any]:
    failure = None if record.failure is None else json.dumps(record.failure.to_dict())
    return {
        "hub": hub,
        "instance_id": record.instance_id,
        "execution_id": record.execution_id,
        "name": record.name,
        "version": record.version,
        "status": record.status.value,
        "input": record.input,
        "output": record.output,
        "custom_status": record.custom_status,
        "failure": failure,
        "created_at": us(record.created_at),
        "updated_at": us(record.updated_at),
        "completed_at": us_or_none(record.completed_at),
        "parent_instance_id": record.parent_instance_id,
        "scheduled_start_at": us_or_none(record.scheduled_start_at),
        "history_len": record.history_len,
    }


STATUS = {s.value: s for s in Status}  # faster than calling Status(value)


def record(row: sqlite3.Row) -> InstanceRecord:
    failure = row["failure"]
    return InstanceRecord(
        instance_id=row["instance_id"],
        execution_id=row["execution_id"],
        name=row["name"],
        status=STATUS[row["status"]],
        created_at=dt(row["created_at"]),
        updated_at=dt(row["updated_at"]),
        version=row["version"],
        input=row["input"],
        output=row["output"],
        custom_status=row["custom_status"],
        failure=None if failure is None else FailureDetails.from_dict(json.loads(failure)),
        completed_at=dt_or_none(row["completed_at"]),
        parent_instance_id=row["parent_instance_id"],
        scheduled_start_at=dt_or_none(row["scheduled_start_at"]),
        history_len=row["history_len"],
    )


def message(row: sqlite3.Row) -> Message:
    return Message(
        instance_id=row["instance_id"],
        event=loads_event(row["event"]),
        visible_at=dt(row["visible_at"]),
        execution_id=row["execution_id"],
        id=row["id"],
    )


def encode_token(created_at: int, instance_id: str) -> str:
    raw = json.dumps([created_at, instance_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode("ascii")


def decode_token(token: str) -> tuple[int, str]:
    try:
        created_at, instance_id = json.loads(base64.urlsafe_b64decode(token.encode("ascii")))
        if not isinstance(created_at, int) or not isinstance(instance_id, str):
            raise TypeError("wrong field types")
    except (ValueError, TypeError, binascii.Error) as exc:
        raise ValueError(
            f"malformed continuation token {token!r}: pass back the token of the "
            "previous page unchanged, or None for the first page"
        ) from exc
    return created_at, instance_id


def where(hub: str, query: InstanceQuery) -> tuple[list[str], list[Any]]:
    """SQL conditions (ANDed) and their parameters for an :class:`InstanceQuery`."""
    clauses: list[str] = ["hub = ?"]
    params: list[Any] = [hub]
    if query.statuses is not None:
        statuses = sorted(s.value for s in query.statuses)
        clauses.append(f"status IN ({marks(len(statuses))})" if statuses else "0")
        params.extend(statuses)
    if query.name is not None:
        clauses.append("name = ?")
        params.append(query.name)
    if query.instance_id_prefix:
        # substr rather than LIKE: LIKE is case-insensitive and needs wildcard escaping.
        clauses.append("substr(instance_id, 1, ?) = ?")
        params.extend([len(query.instance_id_prefix), query.instance_id_prefix])
    if query.created_from is not None:
        clauses.append("created_at >= ?")
        params.append(us(query.created_from))
    if query.created_to is not None:
        clauses.append("created_at <= ?")
        params.append(us(query.created_to))
    if query.parent_instance_id is not None:
        clauses.append("parent_instance_id = ?")
        params.append(query.parent_instance_id)
    if query.version is not None:
        clauses.append("COALESCE(version, '') = ?")
        params.append(query.version)
    if not wants_entities(query.instance_id_prefix):
        clauses.append(SQLITE_NO_ENTITIES)  # entities (@name@key) are not orchestrations
    return clauses, params


#: The columns of an instance row, in :func:`record`'s order.
RECORD_COLUMNS = (
    "instance_id",
    "execution_id",
    "name",
    "version",
    "status",
    "input",
    "output",
    "custom_status",
    "failure",
    "created_at",
    "updated_at",
    "completed_at",
    "parent_instance_id",
    "scheduled_start_at",
    "history_len",
)


def _load_queries() -> dict[str, str]:
    """The ``-- name: NAME`` blocks of ``sql/sqlite/queries.sql``."""
    text = resources.files("taskloom.storage").joinpath("sql", "sqlite", "queries.sql")
    queries: dict[str, str] = {}
    for block in re.split(r"^-- name: ", text.read_text("utf-8"), flags=re.MULTILINE)[1:]:
        name, _, sql = block.partition("\n")
        queries[name.strip()] = sql.strip()
    return queries


#: The ``-- name: NAME`` blocks of ``sql/sqlite/queries.sql``, by name.
QUERIES = _load_queries()


def version_params(versions: VersionFilter | None) -> tuple[str | None, str | None, str]:
    """The parameters of a query's version condition (see ``episode_candidates``)."""
    if versions is None:
        return None, None, "[]"
    return versions.only, versions.only, json.dumps(sorted(versions.excluded))


def name_params(names: Collection[str] | None) -> tuple[str | None, str | None]:
    """The parameters of a query's name condition (see ``episode_candidates``)."""
    text = names_json(names)
    return text, text
