"""Connection helpers and the LISTEN/NOTIFY wake-up listener of the PostgreSQL store.

Kept apart from :mod:`taskloom.storage.postgres` so that module stays about the SQL of
the storage protocol. Nothing here is public API.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from taskloom.errors import ConfigurationError, StoreError
from taskloom.storage.base import ALL_KINDS, merge_kinds

log = logging.getLogger("taskloom.storage.postgres")

_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")

#: Exponential backoff bounds for reconnecting (seconds).
BACKOFF_MIN = 0.1
BACKOFF_MAX = 5.0


def validate_schema(schema: str) -> str:
    """Accept a plain lower-case SQL identifier; it is later quoted, never interpolated raw."""
    if not isinstance(schema, str) or not _IDENTIFIER.match(schema):
        raise ConfigurationError(
            f"invalid PostgreSQL schema name {schema!r}: use lower-case letters, digits and "
            "underscores, starting with a letter or underscore, at most 63 characters"
        )
    return schema


def stable_key(*parts: str) -> int:
    """A signed 64-bit integer derived from ``parts`` (advisory lock keys)."""
    digest = hashlib.sha256("\0".join(parts).encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def channel_name(schema: str, hub: str) -> str:
    """The NOTIFY channel of one hub: hashed, because hub names may be long or odd."""
    return "taskloom_" + hashlib.sha256(f"{schema}\0{hub}".encode()).hexdigest()[:24]


def parse_url(url: str) -> dict[str, Any]:
    """The libpq parameters of ``url``; a malformed URL is a :class:`ConfigurationError`."""
    try:
        return conninfo_to_dict(url)
    except psycopg.ProgrammingError as exc:
        raise ConfigurationError(
            f"malformed PostgreSQL URL: {exc}; use postgresql://USER[:PASSWORD]@HOST:PORT/DB"
        ) from None


def describe(params: dict[str, Any]) -> str:
    """Where a URL points, for error messages: host, port, database and user, never the
    password."""
    host = params.get("host") or "localhost (default)"
    port = params.get("port") or "5432"
    db = params.get("dbname") or "(default)"
    user = params.get("user") or "(default)"
    return f"database {db!r} on {host}:{port} as user {user!r}"


def connection_kwargs(params: dict[str, Any], hub: str) -> dict[str, Any]:
    """Settings every store connection gets.

    TimeZone=UTC makes timestamptz values come back as UTC-aware datetimes; the
    application name lets operators (and the reconnect test) find a hub's connections.
    """
    kwargs: dict[str, Any] = {"autocommit": True, "options": "-c TimeZone=UTC"}
    if "options" in params:
        kwargs["options"] = f"{params['options']} -c TimeZone=UTC"
    if "application_name" not in params:
        kwargs["application_name"] = f"taskloom:{hub}"[:63]
    if "connect_timeout" not in params:
        kwargs["connect_timeout"] = 5
    return kwargs


def connect_error(params: dict[str, Any], exc: BaseException) -> Exception:
    """Translate a failed first connection into a clear taskloom error.

    Authentication and missing roles or databases are configuration mistakes; anything
    else (refused, timed out) is reported as a store failure. Either message names the
    target and the driver's reason but never the password.
    """
    reason = " ".join(str(exc).split())
    password = params.get("password")
    if password:
        reason = reason.replace(str(password), "***")
    lowered = reason.lower()
    config_markers = ("authentication failed", "does not exist", "no pg_hba.conf", "password")
    kind: type[Exception] = (
        ConfigurationError if any(m in lowered for m in config_markers) else StoreError
    )
    return kind(f"cannot connect to PostgreSQL {describe(params)}: {reason}")


class NotifyListener:
    """Holds one dedicated connection that LISTENs on a hub's channel.

    Every notification calls ``wake`` with its kinds (the payload is ``SENDER:KINDS``),
    except those sent by ``ignore``: the store's own, whose listeners it woke directly.
    When the connection drops, the listener logs a warning, reconnects with exponential
    backoff and calls ``wake`` once connected again, because notifications sent while
    it was away are lost and work may be waiting. A silent network failure is caught
    by a ``SELECT 1`` whenever no notification arrived for ``check_every`` seconds.
    """

    def __init__(
        self,
        url: str,
        kwargs: dict[str, Any],
        channel: str,
        wake: Callable[[str], None],
        check_every: float = 30.0,
        *,
        ignore: str | None = None,
    ) -> None:
        self._url = url
        self._kwargs = kwargs
        self._channel = channel
        self._wake = wake
        self._check_every = check_every
        self._ignore = ignore
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._task: asyncio.Task[None] | None = None
        #: Set each time LISTEN is (re-)established; tests wait on it.
        self.connected = asyncio.Event()
        self.reconnects = 0

    async def connect(self) -> psycopg.AsyncConnection[Any]:
        conn = await psycopg.AsyncConnection.connect(self._url, **self._kwargs)
        await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self._channel)))
        return conn

    def start(self, conn: psycopg.AsyncConnection[Any]) -> None:
        """Run the listen loop on an already LISTENing connection."""
        self._conn = conn
        self.connected.set()
        self._task = asyncio.create_task(self._run(), name=f"taskloom-listen-{self._channel}")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._drop()

    @property
    def backend_pid(self) -> int | None:
        conn = self._conn
        return None if conn is None or conn.closed else conn.info.backend_pid

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        self.connected.clear()
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()

    async def _run(self) -> None:
        delay = BACKOFF_MIN
        while True:
            try:
                if self._conn is None:
                    self._conn = await self.connect()
                    self.reconnects += 1
                    self.connected.set()
                    log.info("LISTEN connection for %s re-established", self._channel)
                    # Notifications sent while we were away are gone: look for work.
                    self._wake(ALL_KINDS)
                delay = BACKOFF_MIN
                async for note in self._conn.notifies(timeout=self._check_every):
                    sender, _, kinds = note.payload.partition(":")
                    if self._ignore is None or sender != self._ignore:
                        self._wake(kinds or ALL_KINDS)
                # No notification for a while: make sure the socket is still alive.
                await self._conn.execute("SELECT 1")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning(
                    "LISTEN connection for %s lost (%s); reconnecting in %.1fs",
                    self._channel,
                    " ".join(str(exc).split()) or type(exc).__name__,
                    delay,
                )
                await self._drop()
                await asyncio.sleep(delay)
                delay = min(delay * 2, BACKOFF_MAX)


class Announcer:
    r"""Sends a hub's NOTIFY for one process, never more than one at a time.

    :meth:`announce` after every commit that may wake someone; while a notification is
    in flight, further calls fold into a single next one. So a busy process sends about
    one notification per round trip, however many transactions it commits meanwhile.

    An idle process does better: a commit that :meth:`claim`\ s the announcer sends its
    notification inside its own transaction (``pg_notify`` before ``COMMIT``, in the same
    pipeline), so other processes hear of it the moment it commits, with no round trip
    of its own; :meth:`settle` then announces whatever the commit turned out to need
    beyond what it sent. PostgreSQL serialises the commits of transactions that notify,
    which is why only one claimed commit per process may be in flight.
    """

    def __init__(self, send: Callable[[str], Awaitable[None]]) -> None:
        self._send = send
        self._task: asyncio.Task[None] | None = None
        self._kinds = ""
        self._claimed = False
        #: Notifications sent (tests and diagnostics), in transactions of their own or
        #: inside commits.
        self.sent = 0

    def announce(self, kinds: str) -> None:
        self._kinds = merge_kinds(self._kinds, kinds)
        if not self._claimed and (self._task is None or self._task.done()):
            loop = asyncio.get_running_loop()
            self._task = loop.create_task(self._flush(), name="taskloom-notify")

    def claim(self) -> bool:
        """Whether the caller's commit may carry the next notification (nothing is in
        flight or pending); if so, the caller must :meth:`settle` once it ends."""
        if self._claimed or self._kinds or (self._task is not None and not self._task.done()):
            return False
        self._claimed = True
        return True

    def settle(self, sent: str, kinds: str) -> None:
        """The claimed commit ended: its transaction notified ``sent`` ("" if it failed)
        and its outcome needs ``kinds``; the rest, and what waited meanwhile, goes now."""
        self._claimed = False
        if sent:
            self.sent += 1
        rest = "".join(k for k in kinds if k not in sent)
        if rest or self._kinds:
            self.announce(rest)

    async def _flush(self) -> None:
        while self._kinds:
            kinds, self._kinds = self._kinds, ""
            try:
                await self._send(kinds)
                self.sent += 1
            except Exception as exc:  # others fall back to their poll; say why
                log.warning("NOTIFY not sent (%s); other processes see work at their poll", exc)

    async def close(self) -> None:
        """Send what is pending, then stop."""
        task = self._task
        if task is not None and not task.done():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(task), 5.0)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
