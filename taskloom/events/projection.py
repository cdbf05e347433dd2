"""Projections: handlers that keep a read model of JSON documents from the log.

A projection is a consumer named ``projection:<name>`` with one partition, so it sees
the whole log in position order. Its documents live in the physical view
``<name>#<generation>`` and every change to them commits with the checkpoint:

- **Inline** projections run inside the transaction of every append made through a
  store that knows them. If the checkpoint is behind the append (events were appended
  by a store that does not know the projection, or while it was being rebuilt), the
  missed events are applied first, up to :data:`INLINE_CATCH_UP`; a larger gap is left
  to the projection runner, and the inline hook stays out until it has caught up, so
  the read model never applies an event twice or out of order.
- **Asynchronous** projections are applied in batches by the runner
  (:mod:`taskloom.events.consumers`), in a transaction fenced on the partition lease.

A handler that raises undoes only its own writes. Its view keeps the writes of a batch
in memory (reads see them) and puts them in one go at the end, so a handler's writes
are dropped by forgetting them, with no savepoint and no statement per write; should the
store refuse those writes, the batch is applied again one event at a time, each in a
savepoint writing straight through, so the refusal falls to the event that caused it.
Inline projections park such an event at once (the append still commits);
asynchronous ones retry it with backoff, then park it. Parked events are listed by
``taskloom projections`` and can be replayed; the projection never skips silently.
"""

from __future__ import annotations

import json
import logging
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from taskloom.converter import DataConverter
from taskloom.errors import SerializationError
from taskloom.events.codec import decode
from taskloom.events.records import RecordedEvent
from taskloom.storage.events_base import AppendHook, EventTx, StoredEvent, view_name

__all__ = [
    "INLINE_CATCH_UP",
    "ProjectionSpec",
    "View",
    "apply_batch",
    "consumer_name",
    "encode_doc",
    "inline_hook",
]

log = logging.getLogger("taskloom.events")

#: The largest gap an inline projection closes inside an append's transaction.
INLINE_CATCH_UP = 1000


def consumer_name(projection: str) -> str:
    return f"projection:{projection}"


def encode_doc(where: str, doc: object) -> str:
    """A read-model document as JSON text (plain JSON objects only, so fields can be
    queried and indexed)."""
    if not isinstance(doc, dict):
        raise SerializationError(
            f"{where}: a view document must be a JSON object (a dict), not {type(doc).__name__}"
        )
    try:
        return json.dumps(doc, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise SerializationError(
            f"{where}: the document is not plain JSON ({exc}); store times as ISO 8601 "
            "strings (they sort) or as numbers"
        ) from exc


def _check_key(view: str, key: object) -> str:
    if not isinstance(key, str) or not key:
        raise ValueError(f"view {view!r}: document keys are non-empty strings, not {key!r}")
    return key


class View:
    """A projection's read model as its handler sees it, inside the transaction.

    Buffered (the runner's batches, inline projections), writes wait in memory: those of
    the event being applied in ``_event``, those of the events applied in ``_kept``,
    until :meth:`flush`."""

    def __init__(self, tx: EventTx, name: str, physical: str, buffered: bool = False) -> None:
        self._tx = tx
        self.name = name
        self._physical = physical
        self.buffered = buffered
        self._kept: dict[str, str | None] = {}
        self._event: dict[str, str | None] = {}

    def get(self, key: str) -> dict[str, Any] | None:
        key = _check_key(self.name, key)
        if key in self._event:
            doc = self._event[key]
        elif key in self._kept:
            doc = self._kept[key]
        else:
            doc = self._tx.view_get(self._physical, key)
        return None if doc is None else dict(json.loads(doc))

    def put(self, key: str, doc: dict[str, Any]) -> None:
        key = _check_key(self.name, key)
        text = encode_doc(f"view {self.name!r} key {key!r}", doc)
        if self.buffered:
            self._event[key] = text
        else:
            self._tx.view_put(self._physical, key, text)

    def delete(self, key: str) -> None:
        key = _check_key(self.name, key)
        if self.buffered:
            self._event[key] = None
        else:
            self._tx.view_delete(self._physical, key)

    def _settle(self, keep: bool) -> None:
        """The event being applied is done: keep its writes, or drop them (it raised)."""
        if keep:
            self._kept.update(self._event)
        self._event = {}

    def flush(self) -> bool:
        """Write the kept writes; False if the store refused them (then none is
        written). Writes a store may refuse go in a savepoint: PostgreSQL's ``jsonb``
        takes no ``\\u0000`` and its text no NUL character; nothing else in a key or a
        JSON object's text is refused."""
        if not self._kept:
            return True
        if not any("\0" in k or (d is not None and "\\u0000" in d) for k, d in self._kept.items()):
            self._tx.view_write(self._physical, self._kept)
            self._kept = {}
            return True
        try:
            with self._tx.savepoint():
                self._tx.view_write(self._physical, self._kept)
        except Exception:
            log.warning(
                "view %r refused a batch of %d writes; applying its events one at a time",
                self.name,
                len(self._kept),
                exc_info=True,
            )
            return False
        self._kept = {}
        return True


Handler = Callable[[RecordedEvent, View], None]


@dataclass(frozen=True)
class ProjectionSpec:
    """A registered projection (``@app.projection``)."""

    name: str
    handler: Handler
    inline: bool = False
    types: frozenset[str] | None = None
    indexes: tuple[str, ...] = ()
    max_attempts: int = 5

    @property
    def consumer(self) -> str:
        return consumer_name(self.name)

    def wants(self, event: StoredEvent) -> bool:
        return self.types is None or event.type in self.types


def _describe(exc: BaseException) -> str:
    text = "".join(traceback.format_exception(exc)).strip()
    return text[-4000:]


def apply_one(
    spec: ProjectionSpec, tx: EventTx, view: View, event: StoredEvent, converter: DataConverter
) -> str | None:
    """Apply one event (its writes dropped if it raises: by a buffered view, else by a
    savepoint); the error text if the handler raised."""
    if not spec.wants(event):
        return None
    if view.buffered:
        try:
            spec.handler(decode(event, converter), view)
        except Exception as exc:
            view._settle(False)
            return _describe(exc)
        view._settle(True)
        return None
    try:
        with tx.savepoint():
            spec.handler(decode(event, converter), view)
    except Exception as exc:
        return _describe(exc)
    return None


def apply_batch(
    spec: ProjectionSpec,
    tx: EventTx,
    physical: str,
    events: Sequence[StoredEvent],
    converter: DataConverter,
) -> tuple[int, StoredEvent | None, str | None]:
    """Apply ``events`` in order until one fails: ``(last applied position or -1, the
    failed event, its error)``. Used by the runner and by rebuilds."""
    for buffered in (True, False):
        view = View(tx, spec.name, physical, buffered)
        done, failed, error = -1, None, None
        for event in events:
            error = apply_one(spec, tx, view, event, converter)
            if error is not None:
                failed = event
                break
            done = event.position
        if view.flush():
            break
    return done, failed, error


def _inline(
    spec: ProjectionSpec, tx: EventTx, written: list[StoredEvent], c: DataConverter
) -> None:
    checkpoint = tx.checkpoint(spec.consumer)
    if checkpoint is None:
        return
    events = [e for e in written if e.position > checkpoint]
    if not events:
        return
    first = events[0].position
    if checkpoint < first - 1:
        missed = tx.read_log(checkpoint, INLINE_CATCH_UP + 1)
        missed = [e for e in missed if e.position < first]
        if len(missed) > INLINE_CATCH_UP:
            return  # the runner closes large gaps; stay out until it has
        events = missed + events
    physical = view_name(spec.name, tx.generation(spec.name))
    for buffered in (True, False):
        view = View(tx, spec.name, physical, buffered)
        errors = [(event, apply_one(spec, tx, view, event, c)) for event in events]
        if view.flush():
            break
    for event, error in errors:
        if error is not None:
            log.error(
                "inline projection %r failed on event %d (%s of stream %r); parked it: %s",
                spec.name,
                event.position,
                event.type,
                event.stream_id,
                error.splitlines()[-1],
            )
            tx.park(spec.consumer, event, error, 1)
    tx.set_checkpoint(spec.consumer, written[-1].position)


def inline_hook(specs: Sequence[ProjectionSpec], converter: DataConverter) -> AppendHook | None:
    """The append hook that runs the inline projections, or None if there are none."""
    inline = [s for s in specs if s.inline]
    if not inline:
        return None

    def hook(tx: EventTx, written: list[StoredEvent]) -> None:
        for spec in inline:
            _inline(spec, tx, written, converter)

    return hook
