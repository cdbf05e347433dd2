"""Large payloads: values above a threshold live once, compressed, in a payload table.

Inputs, outputs, custom statuses, event data and activity results are the converter's
JSON text. A value whose encoded size is above ``threshold`` bytes is replaced, in the
history, message, work item or instance row that holds it, by a marker
``@taskloom-payload:<sha-256 of the text>`` (82 characters). The text itself goes,
zlib-compressed, to the ``payloads`` table under (hub, instance id, digest), written in
the same transaction as the row that refers to it. The marker is not JSON, so no
converter output can be taken for one, and offloading a row twice changes nothing.

Payloads belong to the instance whose row refers to them and are shared by content
within that instance only: an activity's result in the ``TaskCompleted`` message and
again in the history is stored once, and so is an output that is both the instance's
``output`` and its ``ExecutionCompleted`` result. Nothing is shared across instances, so
purging an instance deletes its payloads without counting references.

Reads resolve the markers of a whole batch of rows with one extra query. A value above
``limit`` bytes raises :class:`~taskloom.errors.PayloadTooLargeError` before anything
of its transaction is written.

This module is pure (no I/O); the backends own the table and its queries.
"""

from __future__ import annotations

import dataclasses
import hashlib
import zlib
from collections.abc import Iterable, Sequence
from typing import Any, TypeVar

from taskloom.errors import ConfigurationError, PayloadTooLargeError
from taskloom.history import HistoryEvent
from taskloom.storage.base import (
    ActivityResult,
    EpisodeCommit,
    InstanceRecord,
    Message,
    NewInstance,
    refused,
)

__all__ = [
    "DEFAULT_LIMIT",
    "DEFAULT_THRESHOLD",
    "MARKER",
    "Payloads",
    "compress",
    "decompress",
]

MARKER = "@taskloom-payload:"
DEFAULT_THRESHOLD = 64 * 1024
DEFAULT_LIMIT = 64 * 1024 * 1024
#: zlib level 1: on JSON it compresses within 5 % of level 6 at less than half the time
#: (10 MB of records: ratio 3.2 in 70 ms against 3.3 in 170 ms; see docs/architecture.md).
_LEVEL = 1
#: The dataclass fields that hold payloads, on events, instance records and work items.
_FIELDS = ("input", "result", "output", "custom_status")
_OWN_FIELDS: dict[type, tuple[str, ...]] = {}


def _fields_of(obj: object) -> tuple[str, ...]:
    """The names in :data:`_FIELDS` that ``obj``'s class has (looked up once a class:
    ``getattr`` with a default costs an exception for every field a class lacks)."""
    cls = type(obj)
    found = _OWN_FIELDS.get(cls)
    if found is None:
        if dataclasses.is_dataclass(cls):
            names = {f.name for f in dataclasses.fields(cls)}
            found = tuple(n for n in _FIELDS if n in names)
        else:
            found = _FIELDS
        _OWN_FIELDS[cls] = found
    return found


T = TypeVar("T")


def compress(text: str) -> bytes:
    return zlib.compress(text.encode("utf-8"), _LEVEL)


def decompress(data: bytes) -> str:
    return zlib.decompress(data).decode("utf-8")


def is_ref(value: object) -> bool:
    return type(value) is str and value.startswith(MARKER)


class Payloads:
    """A store's payload settings, and the payloads its current write transaction must
    insert (``pending``: (instance id, digest) -> text; flushed by the backend at the end
    of the transaction, cleared on rollback)."""

    def __init__(self, threshold: int = DEFAULT_THRESHOLD, limit: int = DEFAULT_LIMIT) -> None:
        if not isinstance(threshold, int) or threshold < 1:
            raise ConfigurationError(f"payload_threshold must be a positive int, got {threshold!r}")
        if not isinstance(limit, int) or limit < threshold:
            raise ConfigurationError(
                f"payload_limit must be an int of at least payload_threshold ({threshold}), "
                f"got {limit!r}"
            )
        self.threshold = threshold
        self.limit = limit
        self.pending: dict[tuple[str, str], str] = {}

    # -- writes -----------------------------------------------------------------------

    def text(self, instance_id: str, value: str | None, what: str) -> str | None:
        """``value`` as it is stored in a row of ``instance_id``: itself, or a marker
        (its text then pending). Raises :class:`PayloadTooLargeError` above the limit."""
        if value is None or len(value) <= self.threshold // 4 or value.startswith(MARKER):
            return value  # the fast path: at most 4 bytes a character
        data = value.encode("utf-8")
        if len(data) > self.limit:
            raise PayloadTooLargeError(f"{what} of instance {instance_id!r}", len(data), self.limit)
        if len(data) <= self.threshold:
            return value
        digest = hashlib.sha256(data).hexdigest()
        self.pending[(instance_id, digest)] = value
        return MARKER + digest

    def fields(self, instance_id: str, obj: T, what: str) -> T:
        """``obj`` (an event, record or work item) with its large fields as markers."""
        changes: dict[str, Any] = {}
        for name in _fields_of(obj):
            value = getattr(obj, name, None)
            if type(value) is str and len(value) > self.threshold // 4:
                stored = self.text(instance_id, value, f"{name} of {what}")
                if stored is not value:
                    changes[name] = stored
        return dataclasses.replace(obj, **changes) if changes else obj  # type: ignore[type-var]

    def event(self, instance_id: str, event: HistoryEvent) -> HistoryEvent:
        return self.fields(instance_id, event, event.kind)

    def record(self, record: InstanceRecord) -> InstanceRecord:
        return self.fields(record.instance_id, record, "the instance")

    def message(self, message: Message) -> Message:
        event = self.event(message.instance_id, message.event)
        return message if event is message.event else dataclasses.replace(message, event=event)

    def commit(self, c: EpisodeCommit) -> EpisodeCommit:
        """``c`` with the large values of every row it writes as markers."""
        iid = c.instance.instance_id
        changes: dict[str, Any] = {
            "instance": self.record(c.instance),
            "history": [self.event(iid, e) for e in c.history],
            "work_items": [self.fields(iid, w, f"activity {w.name!r}") for w in c.work_items],
            "messages": [self.message(m) for m in c.messages],
            "new_instances": [
                NewInstance(self.record(n.record), self.message(n.start)) for n in c.new_instances
            ],
        }
        return dataclasses.replace(c, **changes) if self.pending else c

    def oversize(self, instance_id: str, obj: object) -> PayloadTooLargeError | None:
        """The error a large field of ``obj`` would raise, without storing anything."""
        for name in _fields_of(obj):
            value = getattr(obj, name, None)
            if type(value) is str and len(value) > self.limit // 4:
                size = len(value.encode("utf-8"))
                if size > self.limit:
                    what = f"{name} of {getattr(obj, 'kind', type(obj).__name__)}"
                    return PayloadTooLargeError(
                        f"{what} of instance {instance_id!r}", size, self.limit
                    )
        return None

    def within_limit(self, results: Sequence[ActivityResult]) -> Sequence[ActivityResult]:
        """``results`` with each result above the limit turned into a ``TaskFailed``
        naming its size and the limit (its appends dropped), as :func:`refused` does for
        refused appends: the activity failed, the orchestration sees why."""
        out: list[ActivityResult] | None = None
        for k, r in enumerate(results):
            exc = self.oversize(r.message.instance_id, r.message.event)
            if exc is not None:
                out = list(results) if out is None else out
                out[k] = dataclasses.replace(r, message=refused(r.message, exc), appends=())
        return results if out is None else out

    def fork(self) -> Payloads:
        """The same settings with pending payloads of their own (one per transaction)."""
        return Payloads(self.threshold, self.limit)

    def take(self) -> dict[tuple[str, str], str]:
        pending, self.pending = self.pending, {}
        return pending


# -- reads ----------------------------------------------------------------------------


def refs(objs: Iterable[object]) -> set[str]:
    """The digests that markers in ``objs`` (events, records, work items, messages) name."""
    found: set[str] = set()
    for obj in objs:
        if isinstance(obj, Message):
            obj = obj.event
        for name in _fields_of(obj):
            value = getattr(obj, name, None)
            if type(value) is str and value.startswith(MARKER):
                found.add(value[len(MARKER) :])
    return found


def resolve(obj: T, texts: dict[str, str]) -> T:
    """``obj`` with its markers replaced by the texts they name (``texts`` by digest)."""
    if isinstance(obj, Message):
        event = resolve(obj.event, texts)
        return obj if event is obj.event else dataclasses.replace(obj, event=event)
    changes: dict[str, Any] = {}
    for name in _fields_of(obj):
        value = getattr(obj, name, None)
        if type(value) is str and value.startswith(MARKER):
            digest = value[len(MARKER) :]
            if digest not in texts:
                from taskloom.errors import StoreError

                raise StoreError(
                    f"payload {digest} referred to by {type(obj).__name__}.{name} is missing "
                    "from the payload table (deleted by hand, or purged while in use)"
                )
            changes[name] = texts[digest]
    return dataclasses.replace(obj, **changes) if changes else obj  # type: ignore[type-var]
