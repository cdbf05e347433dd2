"""A bulk terminate with a dry run, in Chromium against ``taskloom serve`` on SQLite:
from the filtered instance list to the bulk page, the dry run's count and sample, the
confirm button, the job's audit page; a reader sees the dry run but no confirm button."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dashboard_server import DashServer, running

import taskloom as tl

DOCS = Path(__file__).resolve().parents[2] / "docs" / "dashboard"
COUNT = 8


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DashServer]:
    tmp = tmp_path_factory.mktemp("bulk-browser")
    with running(tmp, f"sqlite:///{tmp / 'dash.db'}", roles=("reader", "contributor")) as found:
        with found.client() as client:
            for i in range(COUNT):
                client.start_new("approval", {"amount": i}, f"bulkb-{i:02d}")
            client.start_new("approval", {"amount": 99}, "keep-me")
            for iid in [*(f"bulkb-{i:02d}" for i in range(COUNT)), "keep-me"]:
                client.wait_for_start(iid, 30)
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


def _shot(page: Any, tmp: Path, name: str) -> None:
    path = tmp / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    if DOCS.is_dir() and not (DOCS / path.name).exists():
        shutil.copy(path, DOCS / path.name)  # the docs' picture, when missing


def test_bulk_terminate_with_a_dry_run(browser: Any, server: DashServer, tmp_path: Path) -> None:
    page = _signed_in(browser, server, "contributor")
    page.goto(f"{server.base_url}/dashboard/?prefix=bulkb-")
    page.wait_for_selector('tr[data-id="bulkb-00"]')
    page.click("text=Bulk action on these")
    page.wait_for_url("**/dashboard/bulk?**")
    assert page.input_value("input[name=prefix]") == "bulkb-"
    page.select_option("#bulk-action", "terminate")
    page.fill("input[name=reason]", "cleanup from the browser")
    page.fill("input[name=rate]", "100")
    page.click("#dry-run")
    page.wait_for_selector("#dry-result")
    assert page.inner_text("#dry-count") == str(COUNT)
    sample = page.locator("#dry-sample tbody tr").count()
    assert sample == COUNT
    with server.client() as client:  # the dry run acted on nothing
        assert client.get_status("bulkb-00").runtime_status is tl.Status.RUNNING  # type: ignore[union-attr]
    _shot(page, tmp_path, "bulk")
    page.click("#bulk-run")
    page.wait_for_url("**/dashboard/jobs/bulk-terminate-**")
    job = page.url.rsplit("/", 1)[1]
    with server.client() as client:
        state = client.wait_for_completion(job, 60)
        assert state.runtime_status is tl.Status.COMPLETED, state.failure_details
        for i in range(COUNT):
            done = client.wait_for_completion(f"bulkb-{i:02d}", 30)
            assert done.runtime_status is tl.Status.TERMINATED
        assert client.get_status("keep-me").runtime_status is tl.Status.RUNNING  # type: ignore[union-attr]
    page.wait_for_selector("#status-badge:has-text('Completed')")  # over the live stream
    page.reload()
    assert page.inner_text("#status-badge") == "Completed"
    assert page.inner_text("#job-applied") == str(COUNT)
    assert "contributor-key" in page.inner_text("#job-by")
    assert page.locator("#job-pages a.iid").count() == COUNT
    _shot(page, tmp_path, "bulk-job")
    page.goto(f"{server.base_url}/dashboard/jobs")
    page.wait_for_selector(f'#jobs tr[data-id="{job}"]')
    assert page.errors == []


def test_a_reader_sees_the_dry_run_but_no_confirm_button(
    browser: Any, server: DashServer, tmp_path: Path
) -> None:
    page = _signed_in(browser, server, "reader")
    page.goto(f"{server.base_url}/dashboard/bulk?dry=1&action=suspend&prefix=keep-")
    page.wait_for_selector("#dry-result")
    assert page.inner_text("#dry-count") == "1"
    assert page.locator("#bulk-confirm").count() == 0
    assert "may look but not act" in page.inner_text("#dry-result")
    assert page.errors == []
