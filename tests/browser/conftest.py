"""Browser tests: Playwright driving Debian's Chromium (``/usr/bin/chromium``) against a
real ``taskloom serve``. Without Chromium they are skipped, except under ``CI``, where
they fail (as the PostgreSQL tests do): install it with ``apt-get install -y chromium``.

Screenshots go to the test's ``tmp_path`` (pytest keeps the last runs' directories).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path(os.environ.get("TASKLOOM_CHROMIUM", "/usr/bin/chromium"))

# The dashboard server helpers live beside the integration tests.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))


def _problem() -> str | None:
    if not CHROMIUM.exists():
        return f"{CHROMIUM} is missing (apt-get install -y chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install -e '.[dev]')"
    return None


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    problem = _problem()
    if problem:
        if os.environ.get("CI"):
            pytest.fail(f"CI needs the browser tests' Chromium: {problem}")
        pytest.skip(problem)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            yield launched
        finally:
            launched.close()
