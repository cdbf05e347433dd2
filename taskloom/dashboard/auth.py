"""Who is looking: the dashboard's sign-in, session cookies and CSRF tokens.

The dashboard takes the HTTP API's keys and roles (:mod:`taskloom.security`): a person
signs in by pasting a key into a form (POSTed, never in a URL), and the key is kept in an
``HttpOnly``, ``SameSite=Strict`` cookie, ``Secure`` unless the page is plain http on a
loopback address. Each browser also gets a random session id cookie; the CSRF token every
POST must carry is an HMAC, under a secret kept in the store, of that id and the key's id,
so a token is worth nothing in another browser or after signing in with another key.

A hub with no keys behaves as the HTTP API does: a host bound to loopback (or the
key-free ``--local-port`` listener) lets local callers act as ``admin``, and refuses
requests addressed to a foreign name or sent from a foreign page.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from taskloom import security
from taskloom.http.auth import KeyCache, Principal, _refuse_foreign_browsers
from taskloom.storage.host_base import HostStore

KEY_COOKIE = "tl_key"
SID_COOKIE = "tl_sid"
CSRF_FIELD = "csrf"
_LOOPBACK = frozenset({"localhost", "127.0.0.1", "[::1]", "::1"})


@dataclass(frozen=True)
class Session:
    """The signed-in caller of one request and the CSRF token of their forms."""

    principal: Principal
    csrf: str
    signed_in: bool  # by a key (False: an open host's keyless admin)

    @property
    def can_write(self) -> bool:
        return security.allows(self.principal.role, "write")

    @property
    def can_admin(self) -> bool:
        return security.allows(self.principal.role, "admin")


def key_cache(request: Request) -> KeyCache:
    """The host's key lookups (shared with the HTTP API's, so revocations agree)."""
    found: KeyCache = request.app.state.taskloom_keys
    return found


async def _secret(request: Request) -> str:
    state = request.app.state
    secret: str | None = getattr(state, "dashboard_csrf_secret", None)
    if secret is None:
        store: HostStore = state.taskloom_host_store
        secret = await store.secret("dashboard-csrf", security.new_secret())
        state.dashboard_csrf_secret = secret
    return secret


def _sid(request: Request) -> str:
    """The browser's session id; a new one (set on the response) when it has none."""
    sid = request.cookies.get(SID_COOKIE)
    if sid and len(sid) <= 64:
        return sid
    sid = getattr(request.state, "dashboard_new_sid", None) or secrets.token_urlsafe(24)
    request.state.dashboard_new_sid = sid
    return sid


async def csrf_token(request: Request, basis: str) -> str:
    mac = hmac.new((await _secret(request)).encode(), digestmod=hashlib.sha256)
    mac.update(f"{_sid(request)}|{basis}".encode())
    return mac.hexdigest()


def secure_cookies(request: Request) -> bool:
    """Secure cookies, except for plain http to a loopback address (local development)."""
    host = request.url.hostname or ""
    return request.url.scheme == "https" or host not in _LOOPBACK


def set_sid(request: Request, response: Response, sid: str) -> None:
    response.set_cookie(
        SID_COOKIE,
        sid,
        httponly=True,
        samesite="strict",
        secure=secure_cookies(request),
        path="/dashboard",
    )


def set_key(request: Request, response: Response, key: str | None) -> None:
    if key is None:
        response.delete_cookie(KEY_COOKIE, path="/dashboard")
        return
    response.set_cookie(
        KEY_COOKIE,
        key,
        httponly=True,
        samesite="strict",
        secure=secure_cookies(request),
        path="/dashboard",
    )


async def current(request: Request) -> Session | None:
    """The request's session, or None when the caller must sign in (no key on a hub
    that needs one, or a key that is unknown or revoked)."""
    state = request.app.state
    key = request.cookies.get(KEY_COOKIE)
    if key:
        record = await key_cache(request).lookup(key)
        if record is None:
            return None
        principal = Principal(record.id, record.role, record.name)
        session = Session(principal, await csrf_token(request, f"key:{record.id}"), True)
    elif getattr(state, "taskloom_local", False):
        _refuse_foreign_browsers(request, local_listener=True)
        session = Session(
            Principal(None, "admin", "local"), await csrf_token(request, "open"), False
        )
    elif state.taskloom_open and not await key_cache(request).any_keys():
        _refuse_foreign_browsers(request)
        session = Session(Principal(None, "admin"), await csrf_token(request, "open"), False)
    else:
        return None
    request.state.dashboard_session = session
    request.state.principal = session.principal  # the access log names the key id
    return session


async def require(request: Request, permission: str = "read") -> Session:
    """The session, or 401 (sign in) / 403 (role lacks ``permission``)."""
    session = await current(request)
    if session is None:
        raise HTTPException(401, "sign in with an API key to see this page")
    if not security.allows(session.principal.role, permission):
        raise HTTPException(
            403,
            f"role {session.principal.role!r} may not do this (it needs {permission!r} "
            "rights); ask an admin for a contributor key",
        )
    return session


def check_csrf(request: Request, session: Session, form: dict[str, str]) -> None:
    """403 unless ``form`` carries the session's CSRF token (and comes from this site)."""
    origin = request.headers.get("origin")
    if origin is not None and origin != "null":
        expected = f"{request.url.scheme}://{request.url.netloc}"
        if origin != expected:
            raise HTTPException(403, f"cross-site form from {origin!r} refused")
    sent = form.get(CSRF_FIELD, "")
    if not sent or not hmac.compare_digest(sent, session.csrf):
        raise HTTPException(
            403,
            "the form's CSRF token is missing or stale: reload the page and try again",
        )
