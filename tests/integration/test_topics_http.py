"""Topics over HTTP against a real host on loopback (``TestEnv(http=True)``), on SQLite
and PostgreSQL: the binding's three modes and Event Grid's schema read back unchanged,
refusals naming the attribute and rule with nothing stored, 413 and 415, roles, webhook
subscriptions with the validation handshake, dead letters and redrive."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

import taskloom as tl
from taskloom import security
from taskloom.storage.host_base import HostStore, KeyRecord

DATA = Path(__file__).resolve().parents[1] / "data" / "cloudevents"
ROLES = ("reader", "publisher", "contributor", "admin")
CE = "application/cloudevents+json"
BATCH = "application/cloudevents-batch+json"


def cases(name: str) -> list[dict[str, Any]]:
    loaded: dict[str, Any] = json.loads((DATA / f"{name}.json").read_text())
    return list(loaded["tests"])


def make_app(hub: str) -> tl.App:
    app = tl.App(hub)

    @app.event_trigger("failing", max_delivery_attempts=1)
    def always_fails(event: tl.CloudEvent, client: tl.Client) -> None:
        raise RuntimeError("refused on purpose")

    return app


class Host:
    def __init__(self, env: tl.testing.TestEnv, keys: dict[str, str]) -> None:
        assert env.base_url is not None
        self.env = env
        self.base_url = env.base_url
        self.keys = keys

    def http(self, role: str | None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.keys[role]}"} if role else {}
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=20)


@pytest.fixture
def host(store_url: str, hub: str) -> Iterator[Host]:
    with tl.testing.TestEnv(make_app(hub), http=True, store=store_url) as env:
        store = env.store
        assert isinstance(store, HostStore)
        keys = {}
        for role in ROLES:
            key = security.new_key()
            record = KeyRecord(
                id=f"k-{role}",
                name=f"k-{role}",
                role=role,
                key_hash=security.hash_key(key),
                created_at=datetime.now(UTC),
            )
            env.run(store.key_create(record))
            keys[role] = key
        yield Host(env, keys)


def read(http: httpx.Client, topic: str, **params: Any) -> list[dict[str, Any]]:
    response = http.get(f"/api/topics/{topic}/events", params=params)
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()
    return found


def test_three_modes_and_event_grid_are_read_back_unchanged(host: Host) -> None:
    with host.http("publisher") as pub, host.http("reader") as reader:
        for i, case in enumerate(cases("valid-events")):
            body = json.dumps(case["event"]).encode()
            answer = pub.post(
                f"/api/topics/v{i}/events", content=body, headers={"content-type": CE}
            )
            assert answer.status_code == 200, (case["id"], answer.text)
            assert answer.json()["published"] == 1
            got = read(reader, f"v{i}")
            assert [g["event"] for g in got] == [case["event"]], case["id"]
            assert got[0]["position"] == answer.json()["positions"][0]
            assert got[0]["publishedAt"]
        for i, case in enumerate(cases("valid-batches")):
            body = json.dumps(case["batch"]).encode()
            answer = pub.post(
                f"/api/topics/b{i}/events",
                content=body,
                headers={"content-type": f"{BATCH}; charset=utf-8"},
            )
            if not case["batch"]:
                assert answer.status_code == 400 and answer.json()["attribute"] == "body"
                continue
            assert answer.status_code == 200, (case["id"], answer.text)
            distinct = {(e["source"], e["id"]) for e in case["batch"]}
            got = [g["event"] for g in read(reader, f"b{i}")]
            assert len(got) == len(distinct)
            assert all(e in case["batch"] for e in got), case["id"]

        binary = pub.post(
            "/api/topics/bin/events",
            content=b'{"order": 17, "items": ["a"]}',
            headers={
                "content-type": "application/json",
                "ce-specversion": "1.0",
                "ce-id": "b-1",
                "ce-source": "/shop",
                "ce-type": "order.placed",
                "ce-subject": "orders/17",
                "ce-traceparent": "00-abc-01",
            },
        )
        assert binary.status_code == 200, binary.text
        text = pub.post(
            "/api/topics/bin/events",
            content="héllo".encode(),
            headers={
                "content-type": "text/plain; charset=utf-8",
                "ce-specversion": "1.0",
                "ce-id": "b-2",
                "ce-source": "/shop",
                "ce-type": "note",
            },
        )
        assert text.status_code == 200, text.text
        got = [g["event"] for g in read(reader, "bin")]
        assert got[0] == {
            "specversion": "1.0",
            "id": "b-1",
            "source": "/shop",
            "type": "order.placed",
            "subject": "orders/17",
            "datacontenttype": "application/json",
            "traceparent": "00-abc-01",
            "data": {"order": 17, "items": ["a"]},
        }
        assert got[1]["data"] == "héllo"

        grid = [
            {
                "id": "g-1",
                "subject": "orders/1",
                "eventType": "order.placed",
                "eventTime": "2024-05-01T12:00:00.1234567Z",
                "data": {"n": 1},
                "dataVersion": "1.0",
            },
            {
                "id": "g-2",
                "topic": "grid",
                "subject": "orders/2",
                "eventType": "order.shipped",
                "eventTime": "2024-05-01T12:00:01Z",
                "data": None,
            },
        ]
        answer = pub.post("/api/topics/grid/events", json=grid)
        assert answer.status_code == 200 and answer.json()["published"] == 2, answer.text
        again = pub.post(  # Event Grid's header, no content type: the same events again
            "/api/topics/grid/events",
            content=json.dumps(grid).encode(),
            headers={"aeg-event-type": "Notification", "content-type": ""},
        )
        assert again.status_code == 200 and again.json()["positions"] == answer.json()["positions"]
        got = [g["event"] for g in read(reader, "grid")]
        assert len(got) == 2
        assert got[0]["source"] == "grid" and got[0]["type"] == "order.placed"
        assert got[0]["time"] == "2024-05-01T12:00:00.1234567Z"
        assert got[0]["dataversion"] == "1.0" and got[0]["data"] == {"n": 1}
        # reading pages on with after=, and since= takes RFC 3339
        first = read(reader, "grid", limit=1)
        assert [g["event"]["id"] for g in first] == ["g-1"]
        rest = read(reader, "grid", after=first[0]["position"])
        assert [g["event"]["id"] for g in rest] == ["g-2"]
        assert len(read(reader, "grid", since="2000-01-01T00:00:00Z")) == 2
        assert (
            reader.get("/api/topics/grid/events", params={"since": "yesterday"}).status_code == 400
        )
        assert read(reader, "never-published") == []


def test_refused_events_and_batches_name_the_attribute_and_store_nothing(host: Host) -> None:
    with host.http("publisher") as pub, host.http("reader") as reader:
        for i, case in enumerate(cases("invalid-events")):
            body = case["event"] if "event" in case else case.get("body")
            content = body.encode() if isinstance(body, str) else json.dumps(body).encode()
            answer = pub.post(
                f"/api/topics/x{i}/events", content=content, headers={"content-type": CE}
            )
            assert answer.status_code == 400, (case["id"], answer.text)
            refused = answer.json()
            assert refused["attribute"] and refused["rule"], case["id"]
            assert refused["attribute"] in refused["detail"]
            assert read(reader, f"x{i}") == [], case["id"]
        for i, case in enumerate(cases("invalid-batches")):
            body = case["batch"] if "batch" in case else case.get("body")
            content = body.encode() if isinstance(body, str) else json.dumps(body).encode()
            answer = pub.post(
                f"/api/topics/y{i}/events", content=content, headers={"content-type": BATCH}
            )
            assert answer.status_code == 400, (case["id"], answer.text)
            assert answer.json()["attribute"] and answer.json()["rule"]
            assert read(reader, f"y{i}") == [], case["id"]

        good = {"specversion": "1.0", "id": "ok", "source": "/s", "type": "t"}
        bad = {"specversion": "1.0", "id": "bad", "source": "/s", "type": "t", "time": "nope"}
        answer = pub.post(
            "/api/topics/mixed/events",
            content=json.dumps([good, bad]),
            headers={"content-type": BATCH},
        )
        assert answer.status_code == 400
        assert answer.json()["attribute"] == "batch[1].time"
        assert read(reader, "mixed") == []

        missing_id = pub.post(
            "/api/topics/mixed/events",
            content=b"{}",
            headers={
                "content-type": "application/json",
                "ce-specversion": "1.0",
                "ce-source": "/s",
                "ce-type": "t",
            },
        )
        assert missing_id.status_code == 400 and missing_id.json()["attribute"] == "id"
        grid = pub.post("/api/topics/mixed/events", json=[{"id": "1", "subject": "s"}])
        assert grid.status_code == 400 and grid.json()["attribute"] == "batch[0].eventType"
        not_array = pub.post("/api/topics/mixed/events", json={"id": "1"})
        assert not_array.status_code == 400 and not_array.json()["attribute"] == "body"
        assert read(reader, "mixed") == []


def test_size_limits_content_types_and_topic_names(host: Host) -> None:
    mib = 1024 * 1024
    with host.http("publisher") as pub, host.http("reader") as reader:
        event = {"specversion": "1.0", "id": "big", "source": "/s", "type": "t"}
        event["data"] = "x" * (mib - len(json.dumps(event)) - 20)
        fits = json.dumps(event).encode()
        assert len(fits) <= mib
        assert (
            pub.post(
                "/api/topics/big/events", content=fits, headers={"content-type": CE}
            ).status_code
            == 200
        )
        event["id"], event["data"] = "bigger", "x" * mib
        too_big = pub.post(
            "/api/topics/big/events", content=json.dumps(event), headers={"content-type": CE}
        )
        assert too_big.status_code == 413 and "1 MiB" in too_big.json()["detail"]

        def chunks() -> Iterator[bytes]:  # no Content-Length: refused while reading
            yield b'[{"specversion": "1.0", "id": "c", "source": "/s", "type": "t", "data": "'
            for _ in range(20):
                yield b"y" * 65536
            yield b'"}]'

        chunked = pub.post(
            "/api/topics/big/events", content=chunks(), headers={"content-type": BATCH}
        )
        assert chunked.status_code == 413
        assert [g["event"]["id"] for g in read(reader, "big")] == ["big"]

        plain = pub.post(
            "/api/topics/t/events", content=b"hello", headers={"content-type": "text/plain"}
        )
        assert plain.status_code == 415 and "ce-" in plain.json()["detail"]
        nothing = pub.post("/api/topics/t/events", content=b"", headers={"content-type": ""})
        assert nothing.status_code == 415
        avro = pub.post(
            "/api/topics/t/events",
            content=b"x",
            headers={"content-type": "application/cloudevents+avro"},
        )
        assert avro.status_code == 415
        validation = pub.post(
            "/api/topics/t/events", json=[], headers={"aeg-event-type": "SubscriptionValidation"}
        )
        assert validation.status_code == 400
        for name in ("-starts-with-dash", "has space", "x" * 101):
            answer = pub.post(
                f"/api/topics/{name}/events", content=fits, headers={"content-type": CE}
            )
            assert answer.status_code in (400, 404), (name, answer.status_code)
            assert answer.status_code != 404 or len(name) <= 100
        bad_name = pub.post(
            "/api/topics/bad!name/events", content=fits, headers={"content-type": CE}
        )
        assert bad_name.status_code == 400 and "topic" in bad_name.json()["detail"]
        assert read(reader, "t") == []


def test_roles(host: Host) -> None:
    event = json.dumps({"specversion": "1.0", "id": "r", "source": "/s", "type": "t"})
    spec = {"endpoint": "http://127.0.0.1:9/hook"}
    put = "/api/topics/roles/subscriptions/hook"

    def status(role: str | None, method: str, path: str, **kw: Any) -> int:
        with host.http(role) as http:
            return http.request(method, path, **kw).status_code

    publish = {"content": event, "headers": {"content-type": CE}}
    assert status("publisher", "POST", "/api/topics/roles/events", **publish) == 200
    assert status("contributor", "POST", "/api/topics/roles/events", **publish) == 200
    assert status("admin", "POST", "/api/topics/roles/events", **publish) == 200
    assert status("reader", "POST", "/api/topics/roles/events", **publish) == 403
    assert status(None, "POST", "/api/topics/roles/events", **publish) == 401
    for role, wanted in (("publisher", 403), ("reader", 200), (None, 401)):
        assert status(role, "GET", "/api/topics/roles/events") == wanted, role
        assert status(role, "GET", "/api/topics/roles/subscriptions") == wanted, role
        assert status(role, "GET", "/api/topics/roles/deadletters") == wanted, role
    for role in ("publisher", "reader", "contributor"):
        assert status(role, "PUT", put, params={"validate": "false"}, json=spec) == 403, role
        assert status(role, "DELETE", put) == 403, role
        assert status(role, "POST", "/api/topics/roles/deadletters/redrive", json={}) == 403
        assert status(role, "POST", "/api/topics/roles/replay", json={}) == 403
    assert status(None, "PUT", put, json=spec) == 401
    assert status("admin", "PUT", put, params={"validate": "false"}, json=spec) == 201
    # the publisher role is a key role like the others
    with host.http("admin") as admin:
        made = admin.post(
            "/runtime/webhooks/durabletask/keys", json={"name": "pub2", "role": "publisher"}
        )
        assert made.status_code == 201, made.text


class Receiver:
    """A webhook receiver on loopback: answers the CloudEvents handshake when
    ``allow``, and records what it is sent."""

    def __init__(self, allow: bool) -> None:
        self.allow = allow
        self.seen: list[str] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_OPTIONS(self) -> None:
                receiver.seen.append("OPTIONS")
                origin = self.headers.get("WebHook-Request-Origin", "")
                self.send_response(200 if receiver.allow else 403)
                if receiver.allow:
                    self.send_header("WebHook-Allowed-Origin", origin)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                receiver.seen.append("POST")
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def wait_for(predicate: Callable[[], bool], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def test_webhook_subscriptions(host: Host) -> None:
    from taskloom.topics import webhook

    handshake = hasattr(webhook, "subscribe_webhook")
    good, bad = Receiver(allow=True), Receiver(allow=False)
    path = "/api/topics/orders/subscriptions"
    try:
        with host.http("admin") as admin:
            spec = {
                "endpoint": good.url,
                "filter": {"includedEventTypes": ["order.placed"], "subjectBeginsWith": "orders/"},
                "retryPolicy": {"maxDeliveryAttempts": 5, "eventTimeToLiveInMinutes": 60},
                "deliverySchema": "cloudevents",
                "maxEventsPerBatch": 1,
                "secret": "s3cret-value",
                "timeoutInSeconds": 10,
            }
            made = admin.put(f"{path}/hook", json=spec)
            assert made.status_code == 201, made.text
            assert made.json()["created"] is True and "secret" not in made.json()["spec"]
            if handshake:
                assert made.json()["validated"] is True and "OPTIONS" in good.seen
            changed = admin.put(f"{path}/hook", json={**spec, "maxEventsPerBatch": 10})
            assert changed.status_code == 200 and changed.json()["created"] is False
            listed = admin.get(path).json()
            hook = next(s for s in listed if s["name"] == "hook")
            assert hook["kind"] == "webhook" and hook["spec"]["endpoint"] == good.url
            assert hook["spec"]["maxEventsPerBatch"] == 10
            assert "s3cret-value" not in json.dumps(listed)
            assert {"lag", "pending", "deadLetters", "position"} <= set(hook)

            if handshake:
                refused = admin.put(f"{path}/refused", json={"endpoint": bad.url})
                assert refused.status_code == 400 and bad.url in refused.json()["detail"]
                assert "refused" not in [s["name"] for s in admin.get(path).json()]
            skipped = admin.put(
                f"{path}/unchecked", params={"validate": "false"}, json={"endpoint": bad.url}
            )
            assert skipped.status_code == 201 and skipped.json()["validated"] is False

            for body, word in (
                ({"endpoint": "ftp://x"}, "endpoint"),
                ({"endpoint": good.url, "filter": "types"}, "filter"),
                ({"endpoint": good.url, "retryPolicy": {"maxDeliveryAttempts": 0}}, "maxDelivery"),
                ({"endpoint": good.url, "colour": "red"}, "colour"),
                ({"endpoint": good.url, "deliverySchema": "xml"}, "deliverySchema"),
                ({}, "endpoint"),
                ([1], "object"),
            ):
                answer = admin.put(f"{path}/broken", params={"validate": "false"}, json=body)
                assert answer.status_code == 400, (body, answer.text)
                assert word in answer.json()["detail"], (body, answer.json())
            empty = admin.put(
                f"{path}/broken", content=b"", headers={"content-type": "application/json"}
            )
            assert empty.status_code == 400
            clash = admin.put(
                "/api/topics/other/subscriptions/hook",
                params={"validate": "false"},
                json={"endpoint": good.url},
            )
            assert clash.status_code == 409
            trigger = admin.put(
                "/api/topics/failing/subscriptions/always_fails",
                params={"validate": "false"},
                json={"endpoint": good.url},
            )
            assert trigger.status_code == 409

            assert admin.delete(f"{path}/unchecked").json() == {"deleted": True}
            assert admin.delete(f"{path}/unchecked").status_code == 404
            assert admin.delete("/api/topics/failing/subscriptions/always_fails").status_code == 409
            assert [s["name"] for s in admin.get(path).json()] == ["hook"]
    finally:
        good.close()
        bad.close()


def test_dead_letters_redrive_and_replay(host: Host) -> None:
    event = {"specversion": "1.0", "id": "dl-1", "source": "/s", "type": "t", "data": {"n": 1}}
    with host.http("publisher") as pub, host.http("admin") as admin:
        answer = pub.post(
            "/api/topics/failing/events", content=json.dumps(event), headers={"content-type": CE}
        )
        assert answer.status_code == 200

        def dead() -> list[dict[str, Any]]:
            response = admin.get("/api/topics/failing/deadletters")
            assert response.status_code == 200, response.text
            found: list[dict[str, Any]] = response.json()
            return found

        wait_for(lambda: len(dead()) == 1)
        letter = dead()[0]
        assert letter["event"] == event and letter["subscription"] == "always_fails"
        assert letter["deliveryAttempts"] == 1 and letter["deadLetterReason"]
        one = admin.get("/api/topics/failing/deadletters", params={"subscription": "always_fails"})
        assert len(one.json()) == 1
        assert (
            admin.get("/api/topics/failing/deadletters", params={"subscription": "nope"}).json()
            == []
        )

        none = admin.post(
            "/api/topics/failing/deadletters/redrive",
            json={"subscription": "always_fails", "ids": ["x"]},
        )
        assert none.status_code == 200 and none.json() == {"redriven": 0}
        unknown = admin.post(
            "/api/topics/failing/deadletters/redrive", json={"subscription": "nope"}
        )
        assert unknown.status_code == 404 and "nope" in unknown.json()["detail"]
        extra = admin.post("/api/topics/failing/deadletters/redrive", json={"everything": True})
        assert extra.status_code == 400
        redriven = admin.post(
            "/api/topics/failing/deadletters/redrive",
            json={"subscription": "always_fails", "ids": ["dl-1"]},
        )
        assert redriven.status_code == 200 and redriven.json() == {"redriven": 1}
        wait_for(lambda: len(dead()) == 1)  # it fails again, and is dead-lettered again

        replayed = admin.post(
            "/api/topics/failing/replay", json={"subscription": "always_fails", "after": 0}
        )
        assert replayed.status_code == 200 and replayed.json() == {"subscriptions": 1}
        since = admin.post("/api/topics/failing/replay", json={"since": "2000-01-01T00:00:00Z"})
        assert since.status_code == 200 and since.json() == {"subscriptions": 1}
        both = admin.post(
            "/api/topics/failing/replay", json={"after": 1, "since": "2000-01-01T00:00:00Z"}
        )
        assert both.status_code == 400
        assert admin.post("/api/topics/failing/replay", json={"since": "soon"}).status_code == 400
        assert admin.post("/api/topics/failing/replay", json={"after": -1}).status_code == 400
        assert (
            admin.post("/api/topics/failing/replay", json={"subscription": "nope"}).status_code
            == 404
        )


def test_openapi_documents_the_topic_routes(host: Host) -> None:
    with host.http(None) as http:
        doc = http.get("/openapi.json").json()
    post = doc["paths"]["/api/topics/{topic}/events"]["post"]
    assert {"200", "400", "401", "403", "413", "415"} <= set(post["responses"])
    assert {CE, BATCH, "application/json"} <= set(post["requestBody"]["content"])
    for path, method in (
        ("/api/topics/{topic}/events", "get"),
        ("/api/topics/{topic}/subscriptions", "get"),
        ("/api/topics/{topic}/subscriptions/{name}", "put"),
        ("/api/topics/{topic}/subscriptions/{name}", "delete"),
        ("/api/topics/{topic}/deadletters", "get"),
        ("/api/topics/{topic}/deadletters/redrive", "post"),
        ("/api/topics/{topic}/replay", "post"),
    ):
        operation = doc["paths"][path][method]
        assert operation["summary"], path
        assert "400" in operation["responses"] and "401" in operation["responses"], path
