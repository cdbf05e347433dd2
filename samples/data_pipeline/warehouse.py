"""The pipeline's services: the target database (``warehouse``), the source folder
(``inbox``) and the source's clock (``clock``). Activities receive them by keyword
(``app.add_service``), so tests swap in a temporary database, folder and fixed clock."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

Clock = Callable[[], datetime]


def system_clock() -> datetime:
    return datetime.now(UTC)


_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    source_file  TEXT NOT NULL,
    line         INTEGER NOT NULL,
    id           TEXT NOT NULL,
    name         TEXT NOT NULL,
    amount_cents INTEGER NOT NULL,
    ingested_at  TEXT NOT NULL,
    run_id       TEXT NOT NULL,
    PRIMARY KEY (source_file, line)
);
CREATE TABLE IF NOT EXISTS ingestion_runs (
    run_id       TEXT PRIMARY KEY,
    folder       TEXT NOT NULL,
    files        INTEGER NOT NULL,
    loaded_rows  INTEGER NOT NULL,
    failed_files TEXT NOT NULL,   -- JSON: [{"file": ..., "error": ...}]
    finished_at  TEXT NOT NULL
);
"""


class Warehouse:
    """The target SQLite database. Loads replace rows by (source_file, line), so an
    activity that runs twice loads each row once."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        with closing(self._connect()) as db, db:
            db.executescript(_SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=30)
        db.row_factory = sqlite3.Row
        return db

    def load(self, run_id: str, rows: list[dict[str, Any]]) -> int:
        with closing(self._connect()) as db, db:
            db.executemany(
                "INSERT OR REPLACE INTO records (source_file, line, id, name, amount_cents, "
                "ingested_at, run_id) VALUES (:source_file, :line, :id, :name, :amount_cents, "
                ":ingested_at, :run_id)",
                [{**row, "run_id": run_id} for row in rows],
            )
        return len(rows)

    def record_run(self, summary: dict[str, Any]) -> None:
        with closing(self._connect()) as db, db:
            db.execute(
                "INSERT OR REPLACE INTO ingestion_runs VALUES (?, ?, ?, ?, ?, ?)",
                (
                    summary["run_id"],
                    summary["folder"],
                    len(summary["files"]),
                    summary["loaded_rows"],
                    json.dumps(summary["failed"]),
                    summary["finished_at"],
                ),
            )

    def records(self, source_file: str | None = None) -> list[dict[str, Any]]:
        query = "SELECT * FROM records"
        args: tuple[str, ...] = ()
        if source_file is not None:
            query += " WHERE source_file = ?"
            args = (source_file,)
        with closing(self._connect()) as db:
            rows = db.execute(query + " ORDER BY source_file, line", args).fetchall()
        return [dict(row) for row in rows]


class Inbox:
    """The source: folders of CSV and JSON files under one root. Names given by callers
    are resolved inside the root and never outside it."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()

    def folder(self, name: str) -> Path:
        path = (self.root / name).resolve()
        if not path.is_relative_to(self.root) or not path.is_dir():
            raise FileNotFoundError(f"no folder {name!r} in the inbox {str(self.root)!r}")
        return path

    def files(self, name: str) -> list[str]:
        """The CSV and JSON files of folder ``name``, as ``folder/file`` paths, sorted."""
        folder = self.folder(name)
        found = [p for p in folder.iterdir() if p.suffix.lower() in (".csv", ".json")]
        return sorted(p.relative_to(self.root).as_posix() for p in found if p.is_file())

    def read(self, relative: str) -> str:
        path = (self.root / relative).resolve()
        if not path.is_relative_to(self.root):
            raise FileNotFoundError(f"{relative!r} is outside the inbox")
        return path.read_text(encoding="utf-8")
