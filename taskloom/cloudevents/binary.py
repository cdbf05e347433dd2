"""The binary content mode of the CloudEvents HTTP binding: attributes in ``ce-*`` headers,
``datacontenttype`` in ``Content-Type``, the data as the body.

Header names are matched without regard to case. Values are percent-encoded on the way
out (space, ``"``, ``%`` and everything outside printable ASCII, as UTF-8 bytes) and, on
the way in, unquoted if double-quoted, then percent-decoded once; invalid UTF-8 is refused.
A body of a JSON content type (``application/json``, ``*+json``) arrives as parsed JSON,
a ``text/*`` body as ``str`` (by its charset, UTF-8 by default), any other as ``bytes``; an
empty body as ``None``. Extension values arrive as strings (headers carry no types).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from taskloom.cloudevents import rules
from taskloom.cloudevents.event import CloudEvent
from taskloom.cloudevents.jsontext import Encode, parse_json_body, to_json_value

_PLAIN = frozenset(chr(c) for c in range(0x21, 0x7F)) - {'"', "%"}
_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})")
_HEADER_ATTRS = ("specversion", "id", "source", "type", "subject", "time", "dataschema")


def from_binary(headers: Mapping[str, str], body: bytes) -> CloudEvent:
    """A CloudEvent from an HTTP message in binary content mode, checked strictly."""
    attrs: dict[str, str] = {}
    content_type: str | None = None
    for key, raw in headers.items():
        lower = key.lower()
        if lower == "content-type":
            content_type = raw.strip()
            continue
        if not lower.startswith("ce-"):
            continue
        name = lower[3:]
        if name in attrs:
            rules.fail(name, f"is given twice (header {key!r} repeats another)")
        if name == "datacontenttype":
            rules.fail(name, "travels as the Content-Type header in binary mode, not ce-*")
        if name not in _HEADER_ATTRS:
            rules.check_extension_name(name)
        attrs[name] = decode_header_value(name, raw)
    if content_type is not None and rules.media_type(content_type)[0].startswith(
        "application/cloudevents"
    ):
        rules.fail(
            "datacontenttype",
            f"{content_type!r} is a structured or batched body: read it with "
            "parse_structured or parse_batch",
        )
    for name in ("specversion", "id", "source", "type"):
        if name not in attrs:
            rules.fail(name, f"is required: send it as the header ce-{name}")
    if content_type is not None:
        rules.check_media_type("datacontenttype", content_type)
    data = _read_body(content_type, body)
    return CloudEvent(
        attrs.pop("type"),
        attrs.pop("source"),
        data,
        id=attrs.pop("id"),
        specversion=attrs.pop("specversion"),
        subject=attrs.pop("subject", None),
        time=attrs.pop("time", None),
        dataschema=attrs.pop("dataschema", None),
        datacontenttype=content_type,
        extensions=attrs,
    )


def to_binary(event: CloudEvent, *, encode: Encode | None = None) -> tuple[dict[str, str], bytes]:
    """The event as binary-mode HTTP headers and body. JSON data with no
    ``datacontenttype`` is sent as ``application/json``; ``bytes`` as they are."""
    headers = {
        "ce-specversion": event.specversion,
        "ce-id": encode_header_value(event.id),
        "ce-source": encode_header_value(event.source),
        "ce-type": encode_header_value(event.type),
    }
    for name in ("subject", "dataschema"):
        value = getattr(event, name)
        if value is not None:
            headers[f"ce-{name}"] = encode_header_value(value)
    if event.time_text is not None:
        headers["ce-time"] = encode_header_value(event.time_text)
    for name, ext in event.extensions.items():
        text = ("true" if ext else "false") if isinstance(ext, bool) else str(ext)
        headers[f"ce-{name}"] = encode_header_value(text)
    content_type = event.datacontenttype
    data = event.data
    if data is None:
        body = b""
    elif isinstance(data, bytes):
        body = data
    elif rules.is_json_media_type(content_type):
        body = json.dumps(to_json_value(data, encode, "data"), separators=(",", ":")).encode()
        content_type = content_type or "application/json"
    elif isinstance(data, str):
        charset = rules.media_type(content_type or "")[1].get("charset", "utf-8")
        try:
            body = data.encode(charset)
        except (LookupError, UnicodeError) as exc:
            rules.fail("data", f"cannot be encoded as {charset!r} for {content_type!r}: {exc}")
    else:
        rules.fail(
            "data",
            f"must be bytes or str to be the body of a {content_type!r} message, "
            f"not {type(data).__name__}",
        )
    if content_type is not None:
        headers["content-type"] = content_type
    return headers, body


def encode_header_value(text: str) -> str:
    """Percent-encode what the HTTP binding says must be (upper-case hex digits)."""
    if all(ch in _PLAIN for ch in text):
        return text
    return "".join(
        ch if ch in _PLAIN else "".join(f"%{b:02X}" for b in ch.encode("utf-8", "surrogatepass"))
        for ch in text
    )


def decode_header_value(name: str, raw: str) -> str:
    """Unquote a double-quoted value, then percent-decode once as UTF-8."""
    value = raw.strip(" \t")
    if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
        value = re.sub(r"\\(.)", r"\1", value[1:-1])
    if "%" not in value:
        return value
    if re.search(r"%(?![0-9A-Fa-f]{2})", value):
        rules.fail(name, "has a '%' that starts no two-hex-digit escape (header percent-encoding)")
    try:
        raw_bytes = value.encode("utf-8")
    except UnicodeEncodeError:
        rules.fail(name, "must be a header value of valid characters")
    decoded = _ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), raw_bytes.decode("latin-1"))
    try:
        return decoded.encode("latin-1").decode("utf-8")
    except UnicodeDecodeError:
        rules.fail(name, "percent-decodes to bytes that are not valid UTF-8 (HTTP binding)")


def _read_body(content_type: str | None, body: bytes) -> Any:
    if not body:
        return None
    if content_type is None:
        return bytes(body)
    if rules.is_json_media_type(content_type):
        return parse_json_body(body)
    essence, params = rules.media_type(content_type)
    if essence.startswith("text/"):
        charset = params.get("charset", "utf-8")
        try:
            return bytes(body).decode(charset)
        except LookupError:
            rules.fail("datacontenttype", f"names the unknown charset {charset!r}")
        except UnicodeDecodeError as exc:
            rules.fail("body", f"must be text in {charset!r} as Content-Type says: {exc.reason}")
    return bytes(body)
