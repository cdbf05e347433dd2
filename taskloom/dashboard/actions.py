"""Placeholder: filled in by the next commits."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from taskloom.dashboard.app import Views


def register(views: Views) -> None:
    """No routes yet."""
