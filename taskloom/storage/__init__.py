"""Stores: where task hubs live. :func:`open_store` picks a backend from a URL."""

from __future__ import annotations

from taskloom.errors import ConfigurationError
from taskloom.storage.base import Store

__all__ = ["SCHEMES", "Store", "open_store"]

SCHEMES = ("sqlite:///PATH", "sqlite:///:memory:", "postgresql://USER@HOST:PORT/DB")


def open_store(url: str, hub: str = "default", **options: object) -> Store:
    """A (not yet opened) store for ``url``, bound to task hub ``hub``.

    ``sqlite:///relative/path.db``, ``sqlite:////absolute/path.db`` and
    ``postgresql://...`` (also ``postgres://``) are accepted.
    """
    if not isinstance(url, str) or "://" not in url:
        raise ConfigurationError(f"malformed store URL {url!r}: use one of {', '.join(SCHEMES)}")
    scheme = url.split("://", 1)[0].lower()
    if scheme == "sqlite":
        from taskloom.storage.sqlite import SqliteStore

        rest = url[len("sqlite://") :]
        if not rest.startswith("/") or rest == "/":
            raise ConfigurationError(
                f"malformed SQLite URL {url!r}: write sqlite:///relative.db or "
                "sqlite:////absolute/path.db"
            )
        return SqliteStore(rest[1:], hub=hub, **options)  # type: ignore[arg-type]
    if scheme in ("postgresql", "postgres"):
        try:
            from taskloom.storage.postgres import PostgresStore
        except ImportError as exc:  # pragma: no cover - depends on installed extras
            raise ConfigurationError(
                "the PostgreSQL backend needs its extra: pip install 'taskloom[postgres]'"
            ) from exc
        return PostgresStore(url, hub=hub, **options)  # type: ignore[arg-type]
    raise ConfigurationError(
        f"unknown store scheme {scheme!r} in {url!r}: use one of {', '.join(SCHEMES)}"
    )
