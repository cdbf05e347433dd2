"""``taskloom topics ...`` run as a user runs it, against a SQLite file: publishing one
event or a file, reading back, webhook subscriptions, dead letters, redrive and replay.
Bad input exits 2 with one ``taskloom: error:`` line and writes nothing."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import taskloom as tl

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'topics.db'}"


def run(url: str, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-m", "taskloom", "topics", *args, "--store", url],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    if ok:
        assert done.returncode == 0, (args, done.stdout, done.stderr)
    return done


def lines(url: str, *args: str) -> list[Any]:
    return [json.loads(line) for line in run(url, *args).stdout.splitlines()]


def fails(url: str, *args: str, message: str) -> None:
    done = run(url, *args, ok=False)
    assert done.returncode == 2, (args, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    errors = done.stderr.strip().splitlines()
    assert len(errors) == 1 and errors[0].startswith("taskloom: error: "), done.stderr
    assert message in errors[0], done.stderr
    assert done.stdout == ""


def test_publish_and_read(url: str, tmp_path: Path) -> None:
    out = lines(
        url,
        "publish", "orders", "--type", "order.placed", "--source", "/shop",
        "--id", "o-1", "--subject", "orders/1", "--data", '{"n": 1}',
    )  # fmt: skip
    assert out[0]["published"] == 1
    data_file = tmp_path / "data.json"
    data_file.write_text('["a", 2]')
    lines(
        url, "publish", "orders", "--type", "t2", "--source", "/shop", "--data-file", str(data_file)
    )
    batch = [
        {
            "specversion": "1.0",
            "id": "f-1",
            "source": "/f",
            "type": "t",
            "time": "2024-05-01T12:00:00.123456789Z",
        },
        {"specversion": "1.0", "id": "f-2", "source": "/f", "type": "t", "data_base64": "AAEC"},
    ]
    (tmp_path / "batch.json").write_text(json.dumps(batch))
    (tmp_path / "one.json").write_text(json.dumps({**batch[0], "id": "f-3", "subject": None}))
    assert (
        lines(url, "publish", "files", "--file", str(tmp_path / "batch.json"))[0]["published"] == 2
    )
    lines(url, "publish", "files", "--file", str(tmp_path / "one.json"))

    got = lines(url, "read", "orders")
    assert got[0]["event"] == {
        "specversion": "1.0",
        "id": "o-1",
        "source": "/shop",
        "type": "order.placed",
        "subject": "orders/1",
        "data": {"n": 1},
    }
    assert got[1]["event"]["data"] == ["a", 2] and got[1]["event"]["id"]  # a new UUID
    files = [g["event"] for g in lines(url, "read", "files")]
    assert files == [*batch, {**batch[0], "id": "f-3", "subject": None}]
    after = lines(url, "read", "files", "--after", str(lines(url, "read", "files")[0]["position"]))
    assert [g["event"]["id"] for g in after] == ["f-2", "f-3"]
    assert len(lines(url, "read", "files", "--limit", "1")) == 1
    assert len(lines(url, "read", "files", "--since", "2000-01-01T00:00:00Z")) == 3


def test_bad_input_exits_2_and_writes_nothing(url: str, tmp_path: Path) -> None:
    lines(url, "publish", "orders", "--type", "t", "--source", "/s", "--id", "keep")
    bad_batch = tmp_path / "bad.json"
    bad_batch.write_text(
        json.dumps([{"specversion": "1.0", "id": "1", "source": "/s", "type": "t"}, {}])
    )
    fails(url, "publish", "orders", "--file", str(bad_batch), message="batch[1]")
    fails(
        url,
        "publish",
        "orders",
        "--type",
        "t",
        "--source",
        "/s",
        "--data",
        "{nope",
        message="--data is not JSON",
    )
    fails(url, "publish", "orders", "--source", "/s", message="--type and --source")
    fails(url, "publish", "bad name", "--type", "t", "--source", "/s", message="topic name")
    fails(
        url,
        "publish",
        "orders",
        "--type",
        "t",
        "--source",
        "/s",
        "--file",
        str(bad_batch),
        message="--file",
    )
    fails(url, "publish", "orders", "--file", str(tmp_path / "missing.json"), message="cannot read")
    fails(url, "publish", "orders", "--type", "t", "--source", "bad source", message="source")
    fails(url, "read", "orders", "--since", "yesterday", message="RFC 3339")
    fails(url, "read", "orders", "--after", "-1", message="--after")
    fails(
        url,
        "subscribe",
        "orders",
        "--name",
        "h",
        "--endpoint",
        "ftp://x",
        "--no-validate",
        message="endpoint",
    )
    fails(
        url, "subscribe", "orders", "--name", "h", "--endpoint", "http://127.0.0.1:9/",
        "--filter", '{"colour": 1}', "--no-validate", message="colour",
    )  # fmt: skip
    fails(
        url, "subscribe", "orders", "--name", "h", "--endpoint", "http://127.0.0.1:9/",
        "--max-delivery-attempts", "0", "--no-validate", message="maxDeliveryAttempts",
    )  # fmt: skip
    fails(url, "unsubscribe", "nothing-here", message="no webhook subscription")
    fails(url, "replay", "orders", "--subscription", "nope", message="no subscription 'nope'")
    assert [g["event"]["id"] for g in lines(url, "read", "orders")] == ["keep"]
    assert lines(url, "list", "--json") == []


def test_subscriptions(url: str) -> None:
    from taskloom.topics import webhook

    made = lines(
        url,
        "subscribe", "orders", "--name", "hook", "--endpoint", "http://127.0.0.1:9/hook",
        "--types", "order.placed,order.paid", "--subject-begins-with", "orders/",
        "--max-delivery-attempts", "5", "--event-ttl-minutes", "30", "--max-events-per-batch", "10",
        "--schema", "cloudevents", "--secret", "s3cret-value", "--no-validate",
    )  # fmt: skip
    assert made[0]["created"] is True and "secret" not in made[0]["spec"]
    assert made[0]["spec"]["filter"]["includedEventTypes"] == ["order.placed", "order.paid"]
    assert made[0]["spec"]["retryPolicy"]["eventTimeToLiveInMinutes"] == 30
    listed = lines(url, "list", "orders", "--json")
    assert [s["name"] for s in listed] == ["hook"] and listed[0]["lag"] == 0
    table = run(url, "list").stdout
    assert "hook" in table and "http://127.0.0.1:9/hook" in table and "s3cret" not in table
    if hasattr(webhook, "subscribe_webhook"):  # nothing listens on port 9: refused
        fails(
            url,
            "subscribe",
            "orders",
            "--name",
            "checked",
            "--endpoint",
            "http://127.0.0.1:9/",
            message="handshake",
        )
        assert [s["name"] for s in lines(url, "list", "--json")] == ["hook"]
    lines(url, "publish", "orders", "--type", "order.placed", "--source", "/s")
    assert lines(url, "list", "orders", "--json")[0]["lag"] == 1
    assert lines(url, "replay", "orders", "--subscription", "hook", "--after", "0") == [
        {"subscriptions": 1}
    ]
    assert lines(url, "replay", "orders", "--since", "2000-01-01T00:00:00Z") == [
        {"subscriptions": 1}
    ]
    both = run(url, "replay", "orders", "--after", "0", "--since", "2000-01-01T00:00:00Z", ok=False)
    assert both.returncode == 2 and "not allowed with" in both.stderr
    assert lines(url, "unsubscribe", "hook") == [{"deleted": "hook"}]
    assert lines(url, "list", "--json") == []


def test_dead_letters_and_redrive(url: str) -> None:
    app = tl.App("default")

    @app.event_trigger("failing", max_delivery_attempts=1)
    def always_fails(event: tl.CloudEvent, client: tl.Client) -> None:
        raise RuntimeError("refused on purpose")

    with tl.testing.TestEnv(app, store=url) as env:
        env.client.publish("failing", tl.CloudEvent("t", "/s", {"n": 1}, id="dl-1"))
        deadline = time.monotonic() + 20
        while not env.client.dead_letters("failing"):
            assert time.monotonic() < deadline, "no dead letter in time"
            time.sleep(0.05)

    letters = lines(url, "dead-letters", "failing", "--subscription", "always_fails")
    assert len(letters) == 1 and letters[0]["event"]["id"] == "dl-1"
    assert letters[0]["deliveryAttempts"] == 1 and letters[0]["deadLetterReason"]
    fails(url, "dead-letters", "failing", "--subscription", "nope", message="no subscription")
    assert lines(url, "redrive", "failing", "--id", "other") == [{"redriven": 0}]
    assert lines(url, "redrive", "failing", "--subscription", "always_fails", "--id", "dl-1") == [
        {"redriven": 1}
    ]
    assert lines(url, "dead-letters", "failing") == []
    listed = lines(url, "list", "failing", "--json")
    assert listed[0]["kind"] != "webhook" and listed[0]["pending"] == 1
