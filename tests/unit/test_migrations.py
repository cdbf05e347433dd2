"""Numbered SQL migrations: their files, and how the SQLite store applies them."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

import pytest

from taskloom.errors import StoreError
from taskloom.storage.migrations import load_migrations, split_statements
from taskloom.storage.sqlite import SqliteStore


def applied(path: Path) -> list[tuple[int, str, str]]:
    with sqlite3.connect(path) as conn:
        return conn.execute(
            "SELECT version, name, applied_at FROM taskloom_migrations ORDER BY version"
        ).fetchall()


def schema(path: Path) -> list[tuple[str, str, str]]:
    with sqlite3.connect(path) as conn:
        return conn.execute(
            "SELECT type, name, sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY name"
        ).fetchall()


async def open_and_close(path: Path) -> None:
    store = SqliteStore(str(path))
    await store.open()
    await store.close()


@pytest.mark.parametrize("dialect", ["sqlite", "postgres"])
def test_migration_files_are_numbered_from_one(dialect: str) -> None:
    migrations = load_migrations(dialect)
    assert [m.version for m in migrations] == list(range(1, len(migrations) + 1))
    for migration in migrations:
        assert migration.name and split_statements(migration.sql)


def test_sqlite_has_an_initial_migration() -> None:
    first = load_migrations("sqlite")[0]
    assert (first.version, first.name) == (1, "init")


async def test_open_applies_every_migration(tmp_path: Path) -> None:
    path = tmp_path / "fresh.db"
    await open_and_close(path)
    expected = [(m.version, m.name) for m in load_migrations("sqlite")]
    assert [(version, name) for version, name, _ in applied(path)] == expected


async def test_reopening_is_idempotent(tmp_path: Path) -> None:
    path = tmp_path / "twice.db"
    await open_and_close(path)
    first_rows, first_schema = applied(path), schema(path)
    await open_and_close(path)
    assert applied(path) == first_rows
    assert schema(path) == first_schema


async def test_memory_database_is_migrated() -> None:
    store = SqliteStore(":memory:")
    await store.open()
    try:
        assert await store.get_instance("anything") is None
    finally:
        await store.close()


@pytest.mark.parametrize("attempt", range(3))
def test_concurrent_openers_migrate_once(tmp_path: Path, attempt: int) -> None:
    path = tmp_path / f"race{attempt}.db"
    openers = 6
    barrier = threading.Barrier(openers)
    errors: list[BaseException] = []

    def opener() -> None:
        async def main() -> None:
            store = SqliteStore(str(path), busy_timeout_ms=20_000)
            barrier.wait()
            await store.open()
            await store.close()

        try:
            asyncio.run(main())
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=opener) for _ in range(openers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    versions = [version for version, _, _ in applied(path)]
    assert versions == list(range(1, len(load_migrations("sqlite")) + 1))


async def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "future.db"
    await open_and_close(path)
    with sqlite3.connect(path) as conn:
        conn.execute(
            "INSERT INTO taskloom_migrations (version, name, applied_at) VALUES (999, 'x', '')"
        )
    with pytest.raises(StoreError, match=r"schema version 999.*upgrade taskloom"):
        await open_and_close(path)


async def test_driver_errors_become_store_errors_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "missing-dir" / "x.db"
    with pytest.raises(StoreError, match="missing-dir") as caught:
        await open_and_close(path)
    assert isinstance(caught.value.__cause__, sqlite3.Error)


async def test_unopened_store_says_how_to_open_it(tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path / "never.db"))
    with pytest.raises(StoreError, match=r"not open.*open\(\)"):
        await store.get_instance("x")
