"""Numbered SQL migrations, one folder per dialect: ``sql/<dialect>/0001_name.sql``.

Each backend applies, in order, the files whose number is above the version recorded
in its ``taskloom_migrations`` table, each in its own transaction.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def load_migrations(dialect: str) -> list[Migration]:
    """The migrations of ``dialect`` (``"sqlite"`` or ``"postgres"``), oldest first."""
    folder = resources.files("taskloom.storage").joinpath("sql", dialect)
    found: list[Migration] = []
    for entry in folder.iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text("utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if versions != list(range(1, len(found) + 1)):
        raise RuntimeError(f"{dialect} migrations are not numbered 1..n: {versions}")
    return found


def split_statements(sql: str) -> list[str]:
    """Split a migration into statements on lines that end with ``;``.

    Good enough for our own files, which never put ``;`` at a line end inside a string.
    """
    statements: list[str] = []
    current: list[str] = []
    for line in sql.splitlines():
        if line.strip().startswith("--") and not current:
            continue
        current.append(line)
        if line.rstrip().endswith(";"):
            statements.append("\n".join(current).strip())
            current = []
    tail = "\n".join(current).strip()
    if tail:
        statements.append(tail)
    return statements
