"""The claims ledger: a SQLite table of decided claims, handed to activities as the
``ledger`` service (``app.add_service``), so tests can point it at a file of their own."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

_SCHEMA = """
CREATE TABLE IF NOT EXISTS claims (
    claim_id    TEXT PRIMARY KEY,
    claimant    TEXT NOT NULL,
    amount      REAL NOT NULL,
    status      TEXT NOT NULL,      -- Approved, Rejected, TimedOut, Invalid
    decided_by  TEXT,               -- the approver's key name; NULL when nobody decided
    reason      TEXT,
    decided_at  TEXT NOT NULL
)
"""


class ClaimsLedger:
    """Records each claim's outcome once (writing it again replaces the row, so a
    retried activity does no harm)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        with closing(self._connect()) as db, db:
            db.execute(_SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=30)
        db.row_factory = sqlite3.Row
        return db

    def record(self, outcome: dict[str, Any]) -> None:
        with closing(self._connect()) as db, db:
            db.execute(
                "INSERT OR REPLACE INTO claims (claim_id, claimant, amount, status, "
                "decided_by, reason, decided_at) VALUES (:claim_id, :claimant, :amount, "
                ":status, :decided_by, :reason, :decided_at)",
                outcome,
            )

    def get(self, claim_id: str) -> dict[str, Any] | None:
        with closing(self._connect()) as db:
            row = db.execute("SELECT * FROM claims WHERE claim_id = ?", (claim_id,)).fetchone()
        return None if row is None else dict(row)
