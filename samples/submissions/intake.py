"""The intake table of seed 002 (Azure Table Storage there): a SQLite file with a
``work_items`` table, one row per work item.

A row starts ``Unprocessed``; a discovery claims it (``Processing``, atomically, so two
discoveries running at once never claim the same row); the workflow writes a terminal
status (``Pass`` or ``Fail``) back once, idempotently.

    table = IntakeTable("intake.db")
    table.add("row-1", {"outcome": "Pass"})
    for item in table.claim(10):          # WorkItem(row_key="row-1", status="Processing", ...)
        ...
    table.complete("row-1", "Pass", attempts=1, job_id="job-000001")
    table.list_rows()

By hand::

    python -m samples.submissions.intake intake.db add row-1 row-2 --payload '{"outcome": "Fail"}'
    python -m samples.submissions.intake intake.db list [--status Unprocessed]
    python -m samples.submissions.intake intake.db reset row-2     # back to Unprocessed
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

UNPROCESSED, PROCESSING = "Unprocessed", "Processing"
PASS, FAIL = "Pass", "Fail"
TERMINAL = (PASS, FAIL)
STATUSES = (UNPROCESSED, PROCESSING, *TERMINAL)

__all__ = [
    "FAIL",
    "PASS",
    "PROCESSING",
    "STATUSES",
    "TERMINAL",
    "UNPROCESSED",
    "IntakeConflictError",
    "IntakeTable",
    "UnknownRowError",
    "WorkItem",
    "main",
]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS work_items (
    row_key      TEXT PRIMARY KEY,
    payload      TEXT NOT NULL,              -- JSON
    status       TEXT NOT NULL DEFAULT 'Unprocessed',
    attempts     INTEGER NOT NULL DEFAULT 0, -- submissions made for the row's last run
    claims       INTEGER NOT NULL DEFAULT 0, -- how often a discovery claimed it
    job_id       TEXT,                       -- the external job of the terminal attempt
    detail       TEXT,                       -- why it ended so (free text)
    created_at   TEXT NOT NULL,              -- ISO 8601, UTC
    updated_at   TEXT NOT NULL,
    claimed_at   TEXT,
    completed_at TEXT
);
CREATE INDEX IF NOT EXISTS work_items_status ON work_items (status, created_at, row_key);
"""


class UnknownRowError(KeyError):
    """No row has that key."""


class IntakeConflictError(ValueError):
    """A write that contradicts the row's state (e.g. a second, different terminal status)."""


@dataclass(frozen=True)
class WorkItem:
    row_key: str
    payload: Any
    status: str
    attempts: int
    claims: int
    job_id: str | None
    detail: str | None
    created_at: str
    updated_at: str
    claimed_at: str | None
    completed_at: str | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _now(now: datetime | None) -> str:
    return (now or datetime.now(UTC)).isoformat()


def _item(row: sqlite3.Row) -> WorkItem:
    values = dict(row)
    values["payload"] = json.loads(values["payload"])
    return WorkItem(**values)


class IntakeTable:
    """The ``work_items`` table in the SQLite file at ``path`` (created on first use).

    Every method opens its own connection, so one instance may be shared by threads
    and processes; writes take SQLite's write lock up front (``BEGIN IMMEDIATE``)."""

    def __init__(self, path: str | Path, *, busy_timeout: float = 30.0) -> None:
        self.path = Path(path)
        self.busy_timeout = busy_timeout
        with self._tx():
            pass

    def __repr__(self) -> str:
        return f"IntakeTable({str(self.path)!r})"

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """A write transaction holding the write lock from its first statement."""
        conn = sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None)
        conn.row_factory = sqlite3.Row
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.executescript(_SCHEMA)
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        finally:
            conn.close()

    # -- writes ---------------------------------------------------------------------

    def add(self, row_key: str, payload: Any = None, *, now: datetime | None = None) -> bool:
        """Add an ``Unprocessed`` row; False (and no change) when the key exists."""
        return self.add_many([(row_key, payload)], now=now) == 1

    def add_many(self, rows: Iterable[tuple[str, Any]], *, now: datetime | None = None) -> int:
        """Add ``(row_key, payload)`` rows; keys that exist are left alone. Returns how
        many were added."""
        stamp = _now(now)
        added = 0
        with self._tx() as conn:
            for row_key, payload in rows:
                if not row_key:
                    raise ValueError("a row key must be a non-empty string")
                cursor = conn.execute(
                    "INSERT OR IGNORE INTO work_items (row_key, payload, created_at, updated_at)"
                    " VALUES (?, ?, ?, ?)",
                    (row_key, json.dumps({} if payload is None else payload), stamp, stamp),
                )
                added += cursor.rowcount
        return added

    def claim(self, limit: int, *, now: datetime | None = None) -> list[WorkItem]:
        """Move up to ``limit`` ``Unprocessed`` rows (oldest first) to ``Processing`` and
        return them. Atomic: concurrent claims never return the same row."""
        if limit < 1:
            return []
        stamp = _now(now)
        with self._tx() as conn:
            rows = conn.execute(
                "UPDATE work_items SET status = ?, claims = claims + 1, claimed_at = ?,"
                " updated_at = ? WHERE row_key IN (SELECT row_key FROM work_items"
                " WHERE status = ? ORDER BY created_at, row_key LIMIT ?) RETURNING *",
                (PROCESSING, stamp, stamp, UNPROCESSED, limit),
            ).fetchall()
        return sorted((_item(r) for r in rows), key=lambda i: (i.created_at, i.row_key))

    def complete(
        self,
        row_key: str,
        status: str,
        *,
        attempts: int,
        job_id: str | None = None,
        detail: str | None = None,
        now: datetime | None = None,
    ) -> WorkItem:
        """Write a terminal status back. Idempotent: writing the status the row already
        has changes nothing and returns the row; a different terminal status raises
        :class:`IntakeConflictError`, an unknown row :class:`UnknownRowError`."""
        if status not in TERMINAL:
            raise ValueError(f"{status!r} is not a terminal status ({', '.join(TERMINAL)})")
        stamp = _now(now)
        with self._tx() as conn:
            row = conn.execute("SELECT * FROM work_items WHERE row_key = ?", (row_key,)).fetchone()
            if row is None:
                raise UnknownRowError(row_key)
            if row["status"] in TERMINAL:
                if row["status"] != status:
                    raise IntakeConflictError(
                        f"row {row_key!r} is already {row['status']}; not writing {status}"
                    )
                return _item(row)
            row = conn.execute(
                "UPDATE work_items SET status = ?, attempts = ?, job_id = ?, detail = ?,"
                " completed_at = ?, updated_at = ? WHERE row_key = ? RETURNING *",
                (status, attempts, job_id, detail, stamp, stamp, row_key),
            ).fetchone()
        return _item(row)

    def reset(self, row_key: str, *, now: datetime | None = None) -> WorkItem:
        """Put a row back to ``Unprocessed`` (to run it again, by hand)."""
        stamp = _now(now)
        with self._tx() as conn:
            row = conn.execute(
                "UPDATE work_items SET status = ?, attempts = 0, job_id = NULL, detail = NULL,"
                " completed_at = NULL, updated_at = ? WHERE row_key = ? RETURNING *",
                (UNPROCESSED, stamp, row_key),
            ).fetchone()
        if row is None:
            raise UnknownRowError(row_key)
        return _item(row)

    # -- reads ----------------------------------------------------------------------

    def get(self, row_key: str) -> WorkItem | None:
        with self._tx() as conn:
            row = conn.execute("SELECT * FROM work_items WHERE row_key = ?", (row_key,)).fetchone()
        return None if row is None else _item(row)

    def list_rows(self, status: str | None = None) -> list[WorkItem]:
        """All rows (or those with ``status``), oldest first."""
        query = "SELECT * FROM work_items"
        params: tuple[Any, ...] = ()
        if status is not None:
            query += " WHERE status = ?"
            params = (status,)
        with self._tx() as conn:
            rows = conn.execute(query + " ORDER BY created_at, row_key", params).fetchall()
        return [_item(r) for r in rows]

    def counts(self) -> dict[str, int]:
        """Rows per status."""
        with self._tx() as conn:
            rows = conn.execute("SELECT status, COUNT(*) FROM work_items GROUP BY status")
            return {status: n for status, n in rows}


# -- command line -----------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m samples.submissions.intake", description="The intake table, by hand."
    )
    parser.add_argument("db", help="the SQLite file (created when missing)")
    commands = parser.add_subparsers(dest="command", required=True)
    add = commands.add_parser("add", help="add Unprocessed rows")
    add.add_argument("row_keys", nargs="+", metavar="ROW_KEY")
    add.add_argument("--payload", default="{}", help="the rows' payload, JSON (default {})")
    add.add_argument(
        "--outcome",
        action="append",
        choices=("Pass", "Fail", "FailCanRetry"),
        help="the job service's outcome per attempt (repeat for attempts 2, 3, ...)",
    )
    listing = commands.add_parser("list", help="print the rows as JSON lines")
    listing.add_argument("--status", choices=STATUSES)
    reset = commands.add_parser("reset", help="put rows back to Unprocessed")
    reset.add_argument("row_keys", nargs="+", metavar="ROW_KEY")
    args = parser.parse_args(argv)

    table = IntakeTable(args.db)
    if args.command == "add":
        payload = json.loads(args.payload)
        if args.outcome:
            if not isinstance(payload, dict):
                parser.error("--outcome needs a JSON object --payload")
            payload["outcome"] = args.outcome
        added = table.add_many((key, payload) for key in args.row_keys)
        print(f"added {added} of {len(args.row_keys)} rows")
    elif args.command == "list":
        for item in table.list_rows(args.status):
            print(json.dumps(item.to_dict()))
    else:
        for key in args.row_keys:
            try:
                table.reset(key)
            except UnknownRowError:
                parser.error(f"no row {key!r}")
        print(f"reset {len(args.row_keys)} rows")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
