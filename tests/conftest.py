"""Fixtures shared by every test folder.

``store_url`` (and ``store``) are parametrized over the backends: ``sqlite`` (a file in
``tmp_path``) and ``postgres`` (the server on 127.0.0.1:5432, database ``test``, a fresh
task hub per test). Without a reachable server the PostgreSQL cases are skipped with the
reason, except when ``CI`` is set, where they fail.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from backends import PG_URL, require_postgres

from taskloom.storage import Store, open_store


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest) -> str:
    if request.param == "postgres":
        require_postgres()
    return str(request.param)


@pytest.fixture
def hub() -> str:
    return "t" + uuid.uuid4().hex[:12]


@pytest.fixture
def store_url(backend: str, tmp_path: Path) -> str:
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'taskloom.db'}"
    return PG_URL


@pytest.fixture
async def store(store_url: str, hub: str) -> AsyncIterator[Store]:
    s = open_store(store_url, hub=hub)
    await s.open()
    try:
        yield s
    finally:
        await s.close()
