"""The CloudEvent record: the attributes of CloudEvents 1.0, checked when it is made."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from taskloom.cloudevents import rules


class CloudEvent:
    """One CloudEvents 1.0 event.

    ``CloudEvent(type, source, data=None, *, id=None, subject=None, time=None,
    datacontenttype=None, dataschema=None, extensions=None)``. Made in code, an event with
    no ``id`` gets a new UUID4 string. ``time`` is an aware ``datetime`` or an RFC 3339
    string; it reads as an aware ``datetime``, and the text it was given (or its RFC 3339
    form) is kept as :attr:`time_text`, so an event read from JSON writes the same text
    back. ``data`` is any JSON value (or a value the ``encode`` of ``to_json`` turns into
    one), or ``bytes`` for binary data. ``extensions`` maps lowercase names to strings,
    integers or booleans; a ``datetime`` value is stored as its RFC 3339 text and
    ``bytes`` as base64. Every attribute is checked: a bad one raises
    :class:`~taskloom.errors.InvalidCloudEventError`. Events are immutable and compare
    equal when all their attributes (``time`` by its text) are equal.
    """

    __slots__ = (
        "_data",
        "_datacontenttype",
        "_dataschema",
        "_extensions",
        "_id",
        "_nulls",
        "_source",
        "_specversion",
        "_subject",
        "_time",
        "_time_text",
        "_type",
    )

    def __init__(
        self,
        type: str,
        source: str,
        data: Any = None,
        *,
        id: str | None = None,
        subject: str | None = None,
        time: datetime | str | None = None,
        datacontenttype: str | None = None,
        dataschema: str | None = None,
        extensions: Mapping[str, Any] | None = None,
        specversion: str = rules.SPECVERSION,
        _nulls: Iterable[str] = (),
    ) -> None:
        rules.check_string("specversion", specversion)
        if specversion != rules.SPECVERSION:
            rules.fail("specversion", f"must be {rules.SPECVERSION!r}, not {specversion!r}")
        self._specversion = specversion
        self._id = str(uuid.uuid4()) if id is None else rules.check_string("id", id)
        self._source = rules.check_uri_reference("source", source)
        self._type = rules.check_string("type", type)
        self._subject = None if subject is None else rules.check_string("subject", subject)
        self._datacontenttype = (
            None
            if datacontenttype is None
            else rules.check_media_type("datacontenttype", datacontenttype)
        )
        self._dataschema = (
            None
            if dataschema is None
            else rules.check_uri_reference("dataschema", dataschema, absolute=True)
        )
        self._time: datetime | None
        self._time_text: str | None
        if time is None:
            self._time = self._time_text = None
        elif isinstance(time, datetime):
            self._time_text = rules.format_time("time", time)
            self._time = rules.parse_time("time", self._time_text)
        else:
            self._time = rules.parse_time("time", time)
            self._time_text = time
        if isinstance(data, bytearray | memoryview):
            data = bytes(data)
        self._data = data
        self._extensions = _extensions(extensions or {})
        self._nulls = frozenset(_nulls)

    # -- the attributes ----------------------------------------------------------------

    @property
    def id(self) -> str:
        return self._id

    @property
    def source(self) -> str:
        return self._source

    @property
    def type(self) -> str:
        return self._type

    @property
    def specversion(self) -> str:
        return self._specversion

    @property
    def subject(self) -> str | None:
        return self._subject

    @property
    def time(self) -> datetime | None:
        """The ``time`` attribute as an aware datetime (``None`` when unset)."""
        return self._time

    @property
    def time_text(self) -> str | None:
        """The ``time`` attribute as the RFC 3339 text it travels as."""
        return self._time_text

    @property
    def datacontenttype(self) -> str | None:
        return self._datacontenttype

    @property
    def dataschema(self) -> str | None:
        return self._dataschema

    @property
    def data(self) -> Any:
        return self._data

    @property
    def extensions(self) -> dict[str, str | int | bool]:
        """The extension attributes, name to value (a copy)."""
        return dict(self._extensions)

    @property
    def explicit_nulls(self) -> frozenset[str]:
        """Members the JSON form held as ``null`` (written back as ``null``; otherwise
        the same as absent, and not compared)."""
        return self._nulls

    # -- the record protocol -----------------------------------------------------------

    def _key(self) -> tuple[Any, ...]:
        typed_ext = sorted((k, v.__class__.__name__, v) for k, v in self._extensions.items())
        data = self._data
        return (
            self._specversion,
            self._id,
            self._source,
            self._type,
            self._subject,
            self._time_text,
            self._datacontenttype,
            self._dataschema,
            data.__class__ is bytes,
            data,
            typed_ext,
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CloudEvent):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash((self._id, self._source, self._type))

    def __repr__(self) -> str:
        parts = [f"type={self._type!r}", f"source={self._source!r}", f"id={self._id!r}"]
        for name in ("subject", "time_text", "datacontenttype", "dataschema"):
            value = getattr(self, name)
            if value is not None:
                parts.append(f"{name.removesuffix('_text')}={value!r}")
        if self._extensions:
            parts.append(f"extensions={self._extensions!r}")
        if self._data is not None:
            shown = repr(self._data)
            parts.append(f"data={shown if len(shown) <= 80 else shown[:77] + '...'}")
        return f"CloudEvent({', '.join(parts)})"


def _extensions(given: Mapping[str, Any]) -> dict[str, str | int | bool]:
    out: dict[str, str | int | bool] = {}
    for name, value in given.items():
        rules.check_extension_name(name)
        if isinstance(value, datetime):
            value = rules.format_time(name, value)
        elif isinstance(value, bytes | bytearray | memoryview):
            value = base64.b64encode(bytes(value)).decode("ascii")
        out[name] = rules.check_extension_value(name, value)
    return out
