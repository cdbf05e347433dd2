"""The CloudEvents 1.0 type system, checked: strings, URIs, timestamps, media types,
extension names and values. Each check raises :class:`InvalidCloudEventError` naming the
attribute and the rule it breaks."""

from __future__ import annotations

import base64
import binascii
import re
from datetime import UTC, datetime, timedelta, timezone
from typing import NoReturn

from taskloom.errors import InvalidCloudEventError

SPECVERSION = "1.0"
INT_MIN = -(2**31)
INT_MAX = 2**31 - 1

# The context attributes of the spec; none of them, nor ``data``, names an extension.
CORE = ("specversion", "id", "source", "type", "datacontenttype", "dataschema", "subject", "time")
RESERVED = frozenset((*CORE, "data", "data_base64"))

_EXT_NAME = re.compile(r"[a-z0-9]+\Z")
_TIME = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?"
    r"(?:([Zz])|([+-])(\d{2}):(\d{2}))\Z",
    re.ASCII,
)
# RFC 2045: a token is any ASCII printable but space and the tspecials ()<>@,;:\"/[]?=
_TOKEN = r"[!#$%&'*+\-.0-9A-Z^_`a-z{|}~]+"
_MEDIA_TYPE = re.compile(
    rf"({_TOKEN})/({_TOKEN})((?:[ \t]*;[ \t]*{_TOKEN}=(?:{_TOKEN}|\"(?:[^\"\\\r\n]|\\.)*\"))*)"
    r"[ \t]*\Z",
    re.ASCII,
)
_PARAM = re.compile(rf"[ \t]*;[ \t]*({_TOKEN})=({_TOKEN}|\"(?:[^\"\\\r\n]|\\.)*\")", re.ASCII)
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*\Z")
# RFC 3986 characters outside the authority: unreserved, sub-delims, ":", "@", "/", "?",
# "#" and percent-escapes (checked apart).
_URI_CHARS = re.compile(r"[A-Za-z0-9\-._~!$&'()*+,;=:@/?#%\[\]]*\Z")
_PCT = re.compile(r"%(?![0-9A-Fa-f]{2})")


def fail(attribute: str, rule: str) -> NoReturn:
    raise InvalidCloudEventError(attribute, rule)


def check_string(attribute: str, value: object, *, non_empty: bool = True) -> str:
    """A CloudEvents ``String``: no control characters, noncharacters or lone surrogates."""
    if not isinstance(value, str):
        fail(attribute, f"must be a string, not {json_type(value)}")
    if non_empty and not value:
        fail(attribute, "must be a non-empty string")
    for ch in value:
        code = ord(ch)
        if code < 0x20 or 0x7F <= code <= 0x9F:
            fail(attribute, f"must not hold the control character U+{code:04X}")
        if 0xD800 <= code <= 0xDFFF:
            fail(attribute, f"must not hold the unpaired surrogate U+{code:04X}")
        if 0xFDD0 <= code <= 0xFDEF or (code & 0xFFFE) == 0xFFFE:
            fail(attribute, f"must not hold the Unicode noncharacter U+{code:04X}")
    return value


def check_uri_reference(attribute: str, value: object, *, absolute: bool = False) -> str:
    """An RFC 3986 ``URI-reference`` or, with ``absolute``, an ``absolute-URI`` (4.3)."""
    text = check_string(attribute, value)
    kind = "an absolute URI (RFC 3986 section 4.3)" if absolute else "a URI-reference (RFC 3986)"
    if not _URI_CHARS.match(text):
        bad = next(ch for ch in text if not _URI_CHARS.match(ch))
        fail(attribute, f"must be {kind}: {bad!r} must be percent-encoded")
    if _PCT.search(text):
        fail(attribute, f"must be {kind}: '%' must start a two-hex-digit escape")
    rest, hashmark, fragment = text.partition("#")
    if "#" in fragment:
        fail(attribute, f"must be {kind}: at most one '#' may start the fragment")
    first = re.split(r"[/?]", rest, maxsplit=1)[0]
    scheme = None
    if ":" in first:
        scheme, _, rest = rest.partition(":")
        if not _SCHEME.match(scheme):
            fail(attribute, f"must be {kind}: the scheme {scheme!r} is malformed")
    if absolute and scheme is None:
        fail(attribute, f"must be {kind}: it needs a scheme, such as https:")
    if absolute and hashmark:
        fail(attribute, f"must be {kind}: an absolute URI has no fragment")
    hier, _, query = rest.partition("?")
    authority, path = "", hier
    if hier.startswith("//"):
        authority, slash, path = hier[2:].partition("/")
        path = slash + path
        host_port = authority.rpartition("@")[2]
        host, port = host_port, ""
        if host_port.startswith("["):
            host, bracket, port = host_port.partition("]")
            if not bracket or (port and not port.startswith(":")):
                fail(attribute, f"must be {kind}: the IP literal in the authority is malformed")
            port = port[1:]
        elif ":" in host_port:
            host, _, port = host_port.partition(":")
        if "[" in host[1:] or "]" in host or (port and not port.isdigit()):
            fail(attribute, f"must be {kind}: the authority {authority!r} is malformed")
    if any(c in "[]" for c in path + query + fragment):
        fail(attribute, f"must be {kind}: '[' and ']' belong only in the authority")
    return text


def parse_time(attribute: str, value: object) -> datetime:
    """An RFC 3339 ``date-time`` read as an aware datetime (a leap second reads as the
    instant after :59; digits past microseconds are dropped from the datetime only)."""
    text = check_string(attribute, value)
    m = _TIME.match(text)
    rule = "must be an RFC 3339 timestamp such as 2018-04-05T17:31:00Z"
    if not m:
        fail(attribute, f"{rule}, not {text!r}")
    year, month, day, hour, minute, second = (int(g) for g in m.group(1, 2, 3, 4, 5, 6))
    fraction = (m.group(7) or "")[:6].ljust(6, "0")
    if m.group(8):
        tz: timezone = UTC
    else:
        off_h, off_m = int(m.group(10)), int(m.group(11))
        if off_h > 23 or off_m > 59:
            fail(attribute, f"{rule}: the offset {text[-6:]!r} is out of range")
        sign = -1 if m.group(9) == "-" else 1
        tz = timezone(sign * timedelta(hours=off_h, minutes=off_m))
    if second > 60:
        fail(attribute, f"{rule}: second {second} is out of range")
    try:
        moment = datetime(year, month, day, hour, minute, min(second, 59), int(fraction), tzinfo=tz)
    except ValueError as exc:
        fail(attribute, f"{rule}: {exc}")
    return moment + timedelta(seconds=1) if second == 60 else moment


def format_time(attribute: str, moment: datetime) -> str:
    """An aware datetime as RFC 3339 text, ``Z`` for UTC."""
    offset = moment.utcoffset()
    if offset is None:
        fail(attribute, "must be a timezone-aware datetime (pass tzinfo=datetime.UTC)")
    if offset % timedelta(minutes=1):
        fail(attribute, "must have a UTC offset of whole minutes to be RFC 3339")
    if not 1 <= moment.year <= 9999:
        fail(attribute, "must have a four-digit year")
    text = moment.isoformat()
    return text[:-6] + "Z" if offset == timedelta(0) else text


def check_media_type(attribute: str, value: object) -> str:
    """An RFC 2046 media type: ``type/subtype`` with optional ``; name=value`` parameters."""
    text = check_string(attribute, value)
    if not _MEDIA_TYPE.match(text):
        fail(attribute, f"must be an RFC 2046 media type such as application/json, not {text!r}")
    return text


def media_type(content_type: str) -> tuple[str, dict[str, str]]:
    """The lowercase ``type/subtype`` of a checked media type and its parameters."""
    m = _MEDIA_TYPE.match(content_type)
    if not m:
        return content_type.strip().lower(), {}
    params = {
        name.lower(): (raw[1:-1].replace("\\", "") if raw.startswith('"') else raw)
        for name, raw in _PARAM.findall(m.group(3))
    }
    return f"{m.group(1)}/{m.group(2)}".lower(), params


def is_json_media_type(content_type: str | None) -> bool:
    """JSON data: no content type, ``application/json`` or any ``+json`` subtype."""
    if content_type is None:
        return True
    essence = media_type(content_type)[0]
    return essence in ("application/json", "text/json") or essence.endswith("+json")


def check_extension_name(name: object) -> str:
    """Lowercase ``a-z0-9``, at least one character, not a core name nor ``data``. The spec
    only advises (SHOULD NOT) names over 20 characters, so longer ones are accepted."""
    if not isinstance(name, str) or not _EXT_NAME.match(name):
        fail(
            str(name),
            "is not a valid extension attribute name: use only lowercase letters a-z "
            "and digits 0-9, at least one character",
        )
    if name in RESERVED:
        fail(name, "is a reserved name and cannot be an extension attribute")
    return name


def check_extension_value(name: str, value: object) -> str | int | bool:
    """A String, an Integer in the signed 32-bit range, or a Boolean (URI, URI-reference,
    Timestamp and Binary values travel as their canonical strings)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        if not INT_MIN <= value <= INT_MAX:
            fail(name, f"must be an Integer between {INT_MIN} and {INT_MAX}, not {value}")
        return value
    if isinstance(value, str):
        return check_string(name, value, non_empty=False)
    fail(
        name,
        "must be a string, an integer or a boolean (a CloudEvents extension type), "
        f"not {json_type(value)}",
    )


def decode_base64(attribute: str, value: object) -> bytes:
    """Canonical RFC 4648 base64 (padded, no line breaks), so it re-encodes unchanged."""
    text = check_string(attribute, value, non_empty=False)
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        fail(attribute, "must be RFC 4648 base64 text (A-Z a-z 0-9 + /, padded with =)")
    if base64.b64encode(raw).decode("ascii") != text:
        fail(attribute, "must be canonical RFC 4648 base64 (unused trailing bits zero)")
    return raw


def json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return f"the number {value!r}"
    if isinstance(value, list | tuple):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__
