"""Which stores the tests can reach: the PostgreSQL URL and the skip-or-fail rule."""

from __future__ import annotations

import os
import socket

import pytest

PG_URL = os.environ.get("TASKLOOM_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


def _postgres_problem() -> str | None:
    try:
        import psycopg
    except ImportError:
        return "psycopg is not installed (pip install -e '.[postgres]')"
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=1):
            pass
        with psycopg.connect(PG_URL, connect_timeout=3):
            pass
    except Exception as exc:
        return f"PostgreSQL at {PG_URL} is not reachable: {exc}"
    return None


_PG_PROBLEM: str | bool | None = False


def require_postgres() -> None:
    """Skip with the reason when PostgreSQL is unreachable; under ``CI``, fail instead."""
    global _PG_PROBLEM
    if _PG_PROBLEM is False:
        _PG_PROBLEM = _postgres_problem()
    if _PG_PROBLEM:
        if os.environ.get("CI"):
            pytest.fail(f"CI needs PostgreSQL: {_PG_PROBLEM}")
        pytest.skip(str(_PG_PROBLEM))
