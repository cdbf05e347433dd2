"""The event store's CLI commands, run as a user runs them, against a SQLite file:
``events``, ``projections`` and ``subscriptions``. Bad input exits non-zero with one
line on stderr and leaves the log as it was."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import taskloom as tl
from taskloom.storage import open_store
from taskloom.storage.events_base import EventLogStore, EventTx

ROOT = Path(__file__).resolve().parents[2]

HUB = "shop"

APP_SOURCE = """
import taskloom as tl

app = tl.App("shop")


@app.projection("totals", inline=True)
def totals(event, view):
    if event.type == "Boom":
        raise RuntimeError("boom on purpose")
    doc = view.get(event.stream_id) or {"count": 0}
    doc["count"] += 1
    view.put(event.stream_id, doc)
"""


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'events.db'}"


@pytest.fixture
def app_file(tmp_path: Path) -> Path:
    path = tmp_path / "shop_app.py"
    path.write_text(APP_SOURCE)
    return path


def run(url: str, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-m", "taskloom", *args, "--store", url],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    if ok:
        assert done.returncode == 0, (args, done.stdout, done.stderr)
    return done


def fails(url: str, *args: str, message: str) -> None:
    """The command exits 2 with one ``taskloom: error:`` line naming ``message``."""
    done = run(url, *args, ok=False)
    assert done.returncode == 2, (args, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("taskloom: error: "), done.stderr
    assert message in lines[0], done.stderr
    assert done.stdout == ""


def log_of(url: str, hub: str = HUB) -> list[tl.RecordedEvent]:
    with tl.EventStore(url, hub=hub) as es:
        return es.read_all(limit=10_000)


def load(app_file: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"shop_{id(app_file)}", app_file)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# -- events ------------------------------------------------------------------------------


def test_append_read_and_tail(url: str) -> None:
    out = run(url, "events", "append", "order-1", "Placed", '{"sku": "a"}', "--hub", HUB)
    assert out.stdout.strip() == "version 1 position 1"
    out = run(
        url,
        *("events", "append", "order-1", "Paid", "[1, 2]", "--expected", "1"),
        *("--id", "pay-1", "--metadata", '{"correlation": "c-1"}', "--hub", HUB),
    )
    assert out.stdout.strip() == "version 2 position 2"
    # An idempotent retry (same id) writes nothing and returns the first result.
    again = run(url, "events", "append", "order-1", "Paid", "[1, 2]", "--id", "pay-1", "--hub", HUB)
    assert again.stdout.strip() == "version 2 position 2"
    run(url, "events", "append", "order-2", "Placed", "--expected", "no-stream", "--hub", HUB)
    run(url, "events", "append", "order-2", "Shipped", "--expected", "exists", "--hub", HUB)

    read = run(url, "events", "read", "order-1", "--hub", HUB).stdout.splitlines()
    assert read == ['1\t1\tPlaced\t{"sku": "a"}', "2\t2\tPaid\t[1, 2]"]
    as_json = run(url, "events", "read", "order-1", "--json", "--hub", HUB)
    rows = [json.loads(line) for line in as_json.stdout.splitlines()]
    assert [r["type"] for r in rows] == ["Placed", "Paid"]
    assert rows[1]["id"] == "pay-1" and rows[1]["metadata"] == {"correlation": "c-1"}
    assert rows[1]["streamId"] == "order-1" and rows[1]["data"] == [1, 2]
    back = run(url, "events", "read", "order-1", "--backwards", "--limit", "1", "--hub", HUB)
    assert back.stdout.splitlines() == ["2\t2\tPaid\t[1, 2]"]
    assert run(url, "events", "read", "order-1", "--from", "2", "--hub", HUB).stdout.startswith(
        "2\t2\tPaid"
    )
    empty = run(url, "events", "read", "nothing", "--hub", HUB)
    assert empty.stdout == "" and "no events in stream 'nothing'" in empty.stderr

    tail = run(url, "events", "tail", "--hub", HUB).stdout.splitlines()
    assert [line.split("\t")[:3] for line in tail] == [
        ["1", "order-1@1", "Placed"],
        ["2", "order-1@2", "Paid"],
        ["3", "order-2@1", "Placed"],
        ["4", "order-2@2", "Shipped"],
    ]
    after = run(url, "events", "tail", "--after", "1", "--limit", "2", "--hub", HUB)
    assert [line.split("\t")[0] for line in after.stdout.splitlines()] == ["2", "3"]
    typed = run(url, "events", "tail", "--types", "Placed, Shipped", "--json", "--hub", HUB)
    assert [json.loads(line)["position"] for line in typed.stdout.splitlines()] == [1, 3, 4]
    assert run(url, "events", "tail", "--after", "head", "--hub", HUB).stdout == ""
    # Without --hub the commands use hub "default", which holds nothing.
    assert run(url, "events", "tail").stdout == ""


def test_tail_follow_prints_new_events_until_ctrl_c(url: str) -> None:
    run(url, "events", "append", "s", "First", "--hub", HUB)
    follow = subprocess.Popen(
        [sys.executable, "-m", "taskloom", "events", "tail", "--follow", "--store", url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        assert follow.stdout is not None
        # hub "default" here: append there while it follows.
        with tl.EventStore(url) as es:
            es.append("s", [tl.NewEvent("One")])
            first = follow.stdout.readline()
            es.append("s", [tl.NewEvent("Two", {"n": 2})])
            second = follow.stdout.readline()
        assert first.split("\t")[1:3] == ["s@1", "One"]
        assert second.split("\t")[1:3] == ["s@2", "Two"]
        time.sleep(0.2)
        follow.send_signal(signal.SIGINT)
        _, err = follow.communicate(timeout=10)
        assert follow.returncode == 0, err
        assert "Traceback" not in err
    finally:
        if follow.poll() is None:
            follow.kill()
            follow.wait()


def test_bad_appends_write_nothing(url: str) -> None:
    run(url, "events", "append", "order-1", "Placed", "--hub", HUB)
    before = log_of(url)
    cases: list[tuple[list[str], str]] = [
        (["order-1", "Paid", "{not json"], "DATA_JSON is not JSON: "),
        (["order-1", "Paid", '{"a":'], "at line 1 column 6"),
        (["order-1", "Paid", "'x'"], "DATA_JSON is not JSON: Expecting value at line 1 column 1"),
        (["order-1", ""], "non-empty type"),
        (["order-1", "   "], "non-empty type"),
        (["s" * 201, "Paid"], "is 201 characters long; the limit is 200"),
        (["", "Paid"], "is not a non-empty string"),
        (["order-1", "Paid", "--expected", "5"], "expected version 5, but stream 'order-1'"),
        (["order-1", "Paid", "--expected", "no-stream"], "expected tl.NO_STREAM"),
        (["new-stream", "Paid", "--expected", "exists"], "'new-stream' does not exist"),
        (["order-1", "Paid", "--expected", "latest"], "--expected 'latest' is not a version"),
        (["order-1", "Paid", "--expected", "-1"], "--expected '-1' is not a version"),
        (["order-1", "Paid", "--metadata", "{bad"], "--metadata is not JSON"),
        (["order-1", "Paid", "--metadata", "[1]"], "it must be a JSON object"),
        (["order-1", "Paid", "--id", ""], "has id ''"),
    ]
    # Independent refusals: run them side by side to keep the test fast.
    with ThreadPoolExecutor(8) as pool:
        list(
            pool.map(
                lambda c: fails(url, "events", "append", *c[0], "--hub", HUB, message=c[1]), cases
            )
        )
    assert log_of(url) == before


def test_bad_input_on_a_fresh_store_writes_nothing(url: str) -> None:
    fails(url, "events", "append", "s", "T", "nope", "--hub", HUB, message="DATA_JSON is not JSON")
    fails(url, "events", "read", "x" * 300, "--hub", HUB, message="the limit is 200")
    fails(url, "events", "read", "s", "--limit", "-1", "--hub", HUB, message="--limit -1")
    fails(url, "events", "tail", "--after", "soon", "--hub", HUB, message="--after 'soon'")
    fails(url, "events", "tail", "--limit", "0", "--hub", HUB, message="--limit 0")
    fails(url, "events", "tail", "--types", ",", "--hub", HUB, message="names no type")
    assert log_of(url) == []


# -- projections -------------------------------------------------------------------------


def test_projections_list_rebuild_and_replay(url: str, app_file: Path) -> None:
    spec = f"{app_file}:app"
    # Appended by the CLI, which does not know the app: the projection has not run.
    for stream in ("a", "a", "b"):
        run(url, "events", "append", stream, "Added", "--hub", HUB)
    listing = run(url, "projections", "list", spec, "--json").stdout.splitlines()
    (row,) = [json.loads(line) for line in listing]
    assert row["name"] == "totals" and row["mode"] == "inline"
    assert (row["position"], row["head"], row["lag"], row["parked"]) == (0, 3, 3, 0)

    done = run(url, "projections", "rebuild", spec, "totals")
    assert "rebuilt projection 'totals'" in done.stdout
    assert "3 events applied" in done.stdout
    with tl.EventStore(url, hub=HUB) as es:
        assert es.view("totals").get("a") == {"count": 2}
        assert es.view("totals").get("b") == {"count": 1}

    # An append through the app's store runs the inline projection; a raising handler
    # parks the event at once.
    module = load(app_file)
    with module.app.client(url) as client:
        client.events.append("c", [tl.NewEvent("Boom")])
    table = run(url, "projections", "list", "--hub", HUB).stdout.splitlines()
    assert table[0].split()[:3] == ["NAME", "KIND", "POSITION"]
    assert table[1].split()[:8] == ["totals", "projection", "4", "4", "0", "1", "-", "1"]

    fails(
        url,
        *("projections", "replay", "totals", "--position", "99", "--hub", HUB),
        message="no parked event at position(s) [99]",
    )
    fails(
        url, "projections", "replay", "nope", "--hub", HUB, message="no consumer 'projection:nope'"
    )
    out = run(url, "projections", "replay", "projection:totals", "--position", "4", "--hub", HUB)
    assert out.stdout.startswith("1 parked event(s) of 'projection:totals' marked for replay")

    # The handler raises on event 4: the rebuild refuses to swap unless forced.
    fails(url, "projections", "rebuild", spec, "totals", message="the live copy was kept")
    forced = run(url, "projections", "rebuild", spec, "totals", "--force")
    assert "4 events applied" in forced.stdout

    fails(url, "projections", "rebuild", spec, "missing", message="no projection 'missing'")
    fails(url, "projections", "rebuild", "no_such_module:app", "x", message="cannot import")
    fails(
        url, "projections", "rebuild", f"{app_file}:nothing", "x", message="is not a taskloom App"
    )
    fails(url, "projections", "rebuild", "noapp", "x", message="expected MODULE:APP")
    assert len(log_of(url)) == 4


# -- subscriptions -----------------------------------------------------------------------


async def _park(url: str, consumer: str) -> None:
    """What a subscription runner does when a handler keeps failing: park the event."""
    store = open_store(url, hub=HUB)
    assert isinstance(store, EventLogStore)
    await store.open()
    try:
        now = datetime.now(UTC)
        await store.consumer_ensure(consumer, 1, 0, now)
        (lease,) = await store.consumer_lease(consumer, "test", now, 30, 1)
        (event,) = await store.read_log(1, 1)

        def park(tx: EventTx) -> int:
            tx.park(consumer, event, "Traceback ...\nValueError: mail server down", 3)
            return event.position

        assert await store.consumer_apply(lease, now, park) == event.position
        await store.consumer_release(consumer, [lease])
    finally:
        await store.close()


def test_subscriptions_list_parked_replay_and_reset(url: str) -> None:
    for stream in ("a", "b", "c"):
        run(url, "events", "append", stream, "Added", "--hub", HUB)
    asyncio.run(_park(url, "subscription:notify"))

    listed: list[Any] = [
        json.loads(line)
        for line in run(url, "subscriptions", "list", "--json", "--hub", HUB).stdout.splitlines()
    ]
    assert [r["name"] for r in listed] == ["notify"]
    assert (listed[0]["position"], listed[0]["lag"], listed[0]["parked"]) == (2, 1, 1)
    table = run(url, "subscriptions", "list", "--hub", HUB).stdout.splitlines()
    assert table[1].split()[:8] == ["notify", "subscription", "2", "3", "1", "1", "-", "1"]

    parked = run(url, "subscriptions", "parked", "notify", "--hub", HUB).stdout.splitlines()
    assert parked[1].split()[:4] == ["2", "b@1", "Added", "3"]
    assert parked[1].endswith("ValueError: mail server down")
    (row,) = [
        json.loads(line)
        for line in run(url, "subscriptions", "parked", "notify", "--json", "--hub", HUB)
        .stdout.strip()
        .splitlines()
    ]
    assert (row["position"], row["streamId"], row["attempts"]) == (2, "b", 3)

    fails(
        url,
        *("subscriptions", "replay", "notify", "--position", "1", "--hub", HUB),
        message="no parked event at position(s) [1]",
    )
    out = run(url, "subscriptions", "replay", "notify", "--hub", HUB)
    assert out.stdout.startswith("1 parked event(s) of 'subscription:notify' marked for replay")

    out = run(url, "subscriptions", "reset", "notify", "--position", "0", "--hub", HUB)
    assert out.stdout.strip() == "'subscription:notify': 1 partition(s) moved to position 0"
    again = json.loads(run(url, "subscriptions", "list", "--json", "--hub", HUB).stdout)
    assert (again["position"], again["lag"]) == (0, 3)

    for args in (
        ("reset", "nobody", "--position", "0"),
        ("replay", "nobody"),
        ("parked", "nobody"),
    ):
        fails(
            url,
            "subscriptions",
            *args,
            "--hub",
            HUB,
            message="no consumer 'subscription:nobody' in hub 'shop': known subscriptions are "
            "subscription:notify",
        )
    fails(
        url,
        *("subscriptions", "reset", "notify", "--position", "-3", "--hub", HUB),
        message="--position -3 must be >= 0",
    )
    still = json.loads(run(url, "subscriptions", "list", "--json", "--hub", HUB).stdout)
    assert still["position"] == 0
    assert len(log_of(url)) == 3
