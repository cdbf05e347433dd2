"""API keys with roles, and signed links that let a person raise one event.

Roles, each including the rights of the ones before it where marked:

- ``reader``: status, history and lists.
- ``worker``: reserved for remote workers (reads too).
- ``contributor``: reader + start, raise events, terminate, suspend, resume, rewind,
  restart, purge, enqueue, trigger schedules.
- ``admin``: contributor + manage keys, webhook subscriptions of topics, redrive and
  replay.
- ``publisher``: publish CloudEvents to topics (``publish``) and nothing else; the
  ``contributor`` and ``admin`` roles may publish too.

Keys are ``tlk_`` plus 43 random URL-safe characters; only their SHA-256 is stored.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from typing import Any

ROLES = ("reader", "worker", "contributor", "admin", "publisher")

_GRANTS: dict[str, frozenset[str]] = {
    "reader": frozenset({"read"}),
    "worker": frozenset({"read", "work"}),
    "contributor": frozenset({"read", "write", "publish"}),
    "admin": frozenset({"read", "write", "admin", "publish"}),
    "publisher": frozenset({"publish"}),
}


def allows(role: str, permission: str) -> bool:
    """Whether ``role`` has ``permission`` (``read``, ``write``, ``work``, ``admin``,
    ``publish``)."""
    return permission in _GRANTS.get(role, frozenset())


def check_role(role: str) -> str:
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; use one of: {', '.join(ROLES)}")
    return role


def new_key() -> str:
    return "tlk_" + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_secret() -> str:
    return secrets.token_urlsafe(32)


@dataclass(frozen=True)
class EventLink:
    """What a signed link allows: raise ``event_name`` with ``data`` on ``instance_id``
    until ``expires`` (Unix seconds)."""

    instance_id: str
    event_name: str
    expires: int
    data: Any = None


def sign_link(link: EventLink, secret: str) -> str:
    """An opaque token: the link's fields and an HMAC-SHA256 over them."""
    payload = json.dumps(
        [link.instance_id, link.event_name, link.expires, link.data], separators=(",", ":")
    ).encode()
    mac = hmac.new(secret.encode(), payload, hashlib.sha256).digest()
    return f"{_b64(payload)}.{_b64(mac)}"


def verify_link(token: str, secret: str, now: float) -> EventLink | None:
    """The link a token grants, or None if it was altered, malformed or has expired."""
    try:
        payload_text, mac_text = token.split(".")
        payload = _unb64(payload_text)
        mac = _unb64(mac_text)
    except ValueError:
        return None
    expected = hmac.new(secret.encode(), payload, hashlib.sha256).digest()
    if not hmac.compare_digest(mac, expected):
        return None
    try:
        instance_id, event_name, expires, data = json.loads(payload)
    except (ValueError, TypeError):
        return None
    if not isinstance(expires, int) or expires < now:
        return None
    return EventLink(str(instance_id), str(event_name), expires, data)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, TypeError) as exc:
        raise ValueError("not base64") from exc
