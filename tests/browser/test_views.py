"""The operational views in Chromium against ``taskloom serve`` on SQLite: every view
renders without a script error, a poisoned queue message shows its error and an admin
redrives it, the keys page is for admins only, and a reader sees no redrive button."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dashboard_server import DashServer, running, wait_until

DOCS = Path(__file__).resolve().parents[2] / "docs" / "dashboard"
VIEWS = (
    ("workers", "Workers"),
    ("schedules", "Schedules"),
    ("queues", "Queues"),
    ("entities", "Entities"),
    ("streams", "Event streams"),
    ("consumers", "Projections and subscriptions"),
    ("jobs", "Bulk jobs"),
    ("keys", "API keys"),
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DashServer]:
    tmp = tmp_path_factory.mktemp("views-browser")
    roles = ("reader", "contributor", "admin")
    with running(tmp, f"sqlite:///{tmp / 'dash.db'}", roles=roles) as found:
        with found.client() as client:
            client.enqueue("approvals", {"instance": "nobody <b>", "bad": True})

            def poisoned() -> bool:
                return len(client.peek_queue("approvals-poison")) == 1

            wait_until(poisoned, "the bad message to reach approvals-poison")
        yield found


def _signed_in(browser: Any, server: DashServer, role: str) -> Any:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(30_000)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"{server.base_url}/dashboard/signin")
    page.fill("#key", server.keys[role])
    page.click("button[type=submit]")
    page.wait_for_url(f"{server.base_url}/dashboard/")
    page.errors = errors
    return page


def _copy_shot(page: Any, path: Path) -> None:
    page.screenshot(path=str(path), full_page=True)
    if DOCS.is_dir() and not (DOCS / path.name).exists():
        shutil.copy(path, DOCS / path.name)  # the docs' picture, when missing


def test_every_view_renders_and_an_admin_redrives(
    browser: Any, server: DashServer, tmp_path: Path
) -> None:
    page = _signed_in(browser, server, "admin")
    for path, title in VIEWS:
        page.click(f"header nav a[href$='/dashboard/{path}']")
        page.wait_for_url(f"**/dashboard/{path}")
        assert page.inner_text("h1") == title
    page.goto(f"{server.base_url}/dashboard/workers")
    page.wait_for_selector("#workers tr[data-worker]")  # the serve process's heartbeat
    assert "native" in page.inner_text("#workers")
    _copy_shot(page, tmp_path / "workers.png")
    page.goto(f"{server.base_url}/dashboard/queues")
    assert page.inner_text('tr[data-queue="approvals"] [data-poison]') == "1"
    page.click('a[href$="/dashboard/queues/approvals"]')
    page.wait_for_selector("table.poison")
    poison = page.inner_text("table.poison")
    assert "the message is marked bad" in poison and "nobody <b>" in poison  # shown as text
    _copy_shot(page, tmp_path / "queue.png")
    page.click("#redrive")
    page.wait_for_selector("#done")
    assert "redrove 1 message(s)" in page.inner_text("#done")
    assert page.errors == []


def test_a_reader_gets_no_keys_and_no_redrive(browser: Any, server: DashServer) -> None:
    page = _signed_in(browser, server, "reader")
    page.goto(f"{server.base_url}/dashboard/keys")
    assert page.inner_text("h1") == "403"
    assert "may not do this" in page.inner_text("main")
    page.goto(f"{server.base_url}/dashboard/queues/approvals")
    page.wait_for_selector("table.poison")
    assert page.locator("#redrive").count() == 0
    assert page.errors == []
