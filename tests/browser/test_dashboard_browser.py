"""The dashboard in a real browser (Chromium via Playwright) against ``taskloom serve`` on
SQLite: list and filter; a 10,000-event history that stays responsive; an action; a
reader who sees no action buttons and whose forged POST gets 403; a hostile instance name
that stays text. Every wait is bounded (Playwright's timeouts), none is timed."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dashboard_server import DashServer, running

HOSTILE = '<script>window.pwned=1</script><img src=x onerror="window.pwned=2">\'"'
DOCS = Path(__file__).resolve().parents[2] / "docs" / "dashboard"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DashServer]:
    tmp = tmp_path_factory.mktemp("browser")
    with running(tmp, f"sqlite:///{tmp / 'dash.db'}", roles=("reader", "contributor")) as found:
        with found.client() as client:
            for i in range(12):
                client.start_new("chain", i, f"order-{i:02d}")
            client.start_new("approval", {"amount": 120}, "approval-1")
            client.start_new("retrying", None, "retrying-1")
            client.start_new("approval", {"note": HOSTILE}, HOSTILE)
            client.start_new("fan_out", 5000, "big-history")
            client.wait_for_completion("big-history", 240)
            for i in range(12):
                client.wait_for_completion(f"order-{i:02d}", 60)
        yield found


def _page(browser: Any, server: DashServer, role: str, tmp: Path, **options: Any) -> Any:
    options.setdefault("viewport", {"width": 1280, "height": 900})
    context = browser.new_context(**options)
    page = context.new_page()
    page.set_default_timeout(30_000)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("dialog", lambda dialog: dialog.accept())
    page.goto(f"{server.base_url}/dashboard/")
    page.wait_for_url("**/dashboard/signin")
    page.fill("#key", server.keys[role])
    page.click("button[type=submit]")
    page.wait_for_url(f"{server.base_url}/dashboard/")
    page.errors = errors
    return page


def _shot(page: Any, tmp: Path, name: str, docs: bool = False) -> None:
    path = tmp / f"{name}.png"
    page.screenshot(path=str(path), full_page=False)
    if docs and DOCS.is_dir() and not (DOCS / path.name).exists():
        shutil.copy(path, DOCS / path.name)  # the docs' pictures, when missing


def test_list_and_filter(browser: Any, server: DashServer, tmp_path: Path) -> None:
    page = _page(browser, server, "reader", tmp_path)
    page.wait_for_selector('tr[data-id="order-00"]')
    page.fill("input[name=prefix]", "order-1")
    page.fill(".filters input[name=name]", "chain")  # not their sub-orchestrations
    page.click(".filters button[type=submit]")
    page.wait_for_url("**prefix=order-1**")
    rows = page.locator("tr[data-id]")
    assert sorted(rows.evaluate_all("rs => rs.map(r => r.dataset.id)")) == ["order-10", "order-11"]
    page.goto(f"{server.base_url}/dashboard/?retrying=1")
    page.wait_for_selector('tr[data-id="retrying-1"]')
    page.goto(f"{server.base_url}/dashboard/")
    _shot(page, tmp_path, "instances", docs=True)
    assert page.errors == []


def test_a_10000_event_history_stays_responsive(
    browser: Any, server: DashServer, tmp_path: Path
) -> None:
    with server.client() as client:
        total = len(client.get_history("big-history"))
    assert total >= 10_000
    page = _page(browser, server, "reader", tmp_path)
    page.goto(f"{server.base_url}/dashboard/instances/big-history")
    box = page.locator("#history")
    page.wait_for_selector('#history .row[data-seq="0"]')
    # Scroll to the end: the last event's row appears (fetched on demand) ...
    box.evaluate("b => { b.scrollTop = b.scrollHeight; }")
    page.wait_for_selector(f'#history .row[data-seq="{total - 1}"]')
    assert "ExecutionCompleted" in page.inner_text(f'#history .row[data-seq="{total - 1}"]')
    # ... while only the rows in view are in the page.
    assert box.locator(".row").count() < 100
    box.evaluate("b => { b.scrollTop = b.scrollHeight / 2; }")
    middle = total // 2
    page.wait_for_selector(f'#history .row[data-seq="{middle}"]')
    page.click(f'#history .row[data-seq="{middle}"] button')
    page.wait_for_selector("#payload:not([hidden])")
    _shot(page, tmp_path, "history", docs=True)
    assert page.errors == []


def test_act_on_an_instance(browser: Any, server: DashServer, tmp_path: Path) -> None:
    page = _page(browser, server, "contributor", tmp_path)
    page.goto(f"{server.base_url}/dashboard/instances/approval-1")
    page.wait_for_selector("#why")
    _shot(page, tmp_path, "act")
    page.fill("form[action$='/actions/raise-event'] input[name=event]", "Approve")
    page.fill("form[action$='/actions/raise-event'] input[name=data]", "true")
    page.click("form[action$='/actions/raise-event'] button")
    page.wait_for_url("**/instances/approval-1")
    # The live stream turns the badge Completed without a reload (bounded wait).
    page.wait_for_selector("#status-badge.s-Completed")
    assert page.errors == []


def test_a_reader_sees_no_actions_and_a_forged_post_is_refused(
    browser: Any, server: DashServer, tmp_path: Path
) -> None:
    page = _page(browser, server, "reader", tmp_path)
    page.goto(f"{server.base_url}/dashboard/instances/retrying-1")
    page.wait_for_selector("#why")
    page.locator("#why").scroll_into_view_if_needed()
    _shot(page, tmp_path, "why", docs=True)
    assert page.locator("form[action*='/actions/']").count() == 0
    assert page.locator("button:has-text('Terminate')").count() == 0
    status = page.evaluate(
        """async () => {
            const csrf = document.querySelector("input[name=csrf]").value;
            const body = new URLSearchParams({csrf: csrf, id: "retrying-1"});
            const r = await fetch("/dashboard/actions/terminate", {method: "POST", body});
            return r.status;
        }"""
    )
    assert status == 403
    with server.client() as client:
        state = client.get_status("retrying-1")
    assert state is not None and state.runtime_status.value == "Running"


def test_a_hostile_instance_name_is_inert(browser: Any, server: DashServer, tmp_path: Path) -> None:
    page = _page(browser, server, "reader", tmp_path)
    page.goto(f"{server.base_url}/dashboard/?prefix=%3Cscript%3E")
    link = page.locator("a.iid").first
    assert link.inner_text() == HOSTILE
    link.click()
    page.wait_for_selector("h1 .iid")
    assert page.inner_text("h1 .iid") == HOSTILE
    assert page.evaluate("() => window.pwned") is None
    assert page.locator("img[src=x]").count() == 0
    assert page.errors == []


def test_a_phone_in_dark_mode_with_the_keyboard(
    browser: Any, server: DashServer, tmp_path: Path
) -> None:
    page = _page(
        browser,
        server,
        "reader",
        tmp_path,
        viewport={"width": 390, "height": 844},
        color_scheme="dark",
        has_touch=True,
    )
    page.wait_for_selector('tr[data-id="order-00"]')
    # Nothing wider than the phone: the table scrolls inside its own box.
    assert page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth")
    background = "() => getComputedStyle(document.body).backgroundColor"
    assert page.evaluate(background) == "rgb(15, 19, 24)"  # the dark palette
    _shot(page, tmp_path, "phone-dark", docs=True)
    page.click("#theme-toggle")
    assert page.evaluate("() => document.documentElement.dataset.theme") == "light"
    assert page.evaluate(background) == "rgb(255, 255, 255)"
    page.reload()  # the choice is kept
    assert page.evaluate("() => document.documentElement.dataset.theme") == "light"
    # Keyboard: the first Tab reaches the skip link, then links in order; Enter follows.
    page.keyboard.press("Tab")
    assert page.evaluate("() => document.activeElement.className") == "skip"
    for _ in range(60):
        page.keyboard.press("Tab")
        if page.evaluate("() => document.activeElement.classList.contains('iid')"):
            break
    else:
        raise AssertionError("Tab never reached an instance link")
    target = page.evaluate("() => document.activeElement.textContent")
    page.keyboard.press("Enter")
    page.wait_for_selector("h1 .iid")
    assert page.inner_text("h1 .iid") == target
    assert page.errors == []


UNLABELLED = """() => Array.from(document.querySelectorAll("input, select, textarea, button"))
    .filter(e => e.type !== "hidden")
    .filter(e => !(e.labels && e.labels.length) && !e.getAttribute("aria-label")
                 && !(e.textContent || "").trim())
    .map(e => e.outerHTML)"""


def test_every_control_has_a_name(browser: Any, server: DashServer, tmp_path: Path) -> None:
    page = _page(browser, server, "contributor", tmp_path)
    for path in ("/dashboard/", "/dashboard/instances/approval-1", "/dashboard/instances/order-01"):
        page.goto(server.base_url + path)
        page.wait_for_selector("main h1")
        assert page.evaluate(UNLABELLED) == [], path
