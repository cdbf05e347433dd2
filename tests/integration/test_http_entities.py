"""The entity routes of the management API over HTTP (``TestEnv(http=True)``, SQLite and
PostgreSQL): signal, read, list with paging and filters, names that ignore case, and the
400s that say what to do."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

import taskloom as tl
from taskloom import security
from taskloom.storage.host_base import HostStore, KeyRecord
from taskloom.testing import TestEnv

PREFIX = "/runtime/webhooks/durabletask"


def _app() -> tl.App:
    app = tl.App("ent" + uuid.uuid4().hex[:8])

    @app.entity
    def Counter(ctx: tl.EntityContext) -> None:
        value = ctx.get_state(lambda: 0)
        if ctx.operation_name == "add":
            ctx.set_state(value + ctx.get_input())
        elif ctx.operation_name == "reset":
            ctx.set_state(0)

    @app.entity
    def Bag(ctx: tl.EntityContext) -> None:
        items = ctx.get_state(list)
        if ctx.operation_name == "put":
            ctx.set_state([*items, ctx.get_input()])

    return app


@dataclass
class Served:
    env: TestEnv
    http: httpx.Client
    reader: httpx.Client


def _key(env: TestEnv, role: str) -> dict[str, str]:
    key = security.new_key()
    name = f"ent-{role}-{uuid.uuid4().hex[:6]}"
    record = KeyRecord(name, name, role, security.hash_key(key), datetime.now(UTC))
    store = env.store
    assert isinstance(store, HostStore)
    env.run(store.key_create(record))
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def served(store_url: str) -> Iterator[Served]:
    with TestEnv(_app(), store=store_url, http=True) as env:
        assert env.base_url is not None
        admin = httpx.Client(base_url=env.base_url, timeout=30, headers=_key(env, "admin"))
        reader = httpx.Client(base_url=env.base_url, timeout=30, headers=_key(env, "reader"))
        with admin, reader:
            yield Served(env, admin, reader)


def _state_becomes(http: httpx.Client, path: str, expected: Any) -> httpx.Response:
    until = time.monotonic() + 20
    while True:
        response = http.get(f"{PREFIX}/entities/{path}")
        if response.status_code == 200 and response.json() == expected:
            return response
        assert time.monotonic() < until, (response.status_code, response.text)
        time.sleep(0.05)


def _signal(http: httpx.Client, path: str, op: str, body: Any = None) -> None:
    response = http.post(f"{PREFIX}/entities/{path}", params={"op": op}, json=body)
    assert response.status_code == 202, response.text
    assert response.content == b""


def test_signal_then_read_the_state_names_ignore_case(served: Served) -> None:
    _signal(served.http, "Counter/c1", "add", 5)
    _signal(served.http, "COUNTER/c1", "add", 2)
    response = _state_becomes(served.http, "counter/c1", 7)
    assert response.headers["content-type"].startswith("application/json")
    assert served.env.client.read_entity_state(tl.EntityId("counter", "c1")).entity_state == 7
    # A readers' key reads but may not signal.
    assert served.reader.get(f"{PREFIX}/entities/CoUnTeR/c1").json() == 7
    refused = served.reader.post(f"{PREFIX}/entities/counter/c1", params={"op": "add"}, json=1)
    assert refused.status_code == 403


def test_a_body_less_signal_and_keys_with_slashes_and_the_empty_key(served: Served) -> None:
    _signal(served.http, "counter/a/b", "add", 3)
    _signal(served.http, "counter/a/b", "reset")
    _signal(served.http, "counter/a/b", "add", 4)
    _state_becomes(served.http, "counter/a/b", 4)
    assert served.env.client.read_entity_state("@counter@a/b").entity_state == 4
    _signal(served.http, "counter/$", "add", 9)
    _state_becomes(served.http, "counter/$", 9)
    assert served.env.client.read_entity_state(tl.EntityId("counter", "")).entity_state == 9


def test_an_entity_without_state_is_404_with_a_message(served: Served) -> None:
    missing = served.http.get(f"{PREFIX}/entities/counter/never")
    assert missing.status_code == 404
    body = missing.json()
    assert "does not exist" in body["detail"]
    assert body["Message"] == body["ExceptionMessage"] == body["detail"]


@pytest.mark.parametrize(
    ("path", "params", "content", "says"),
    [
        ("counter/k", {}, b"1", "?op="),
        ("counter/k", {"op": ""}, b"1", "op"),
        ("counter/k", {"op": "add"}, b"{not json", "not valid JSON"),
        ("count@er/k", {"op": "add"}, b"1", "'@'"),
        ("nosuch/k", {"op": "add"}, b"1", "no entity named 'nosuch'"),
        ("counter/", {"op": "add"}, b"1", "no entity key"),
        ("counter/" + "k" * 300, {"op": "add"}, b"1", "at most"),
    ],
)
def test_bad_signals_are_400s_that_say_what_to_do(
    served: Served, path: str, params: dict[str, str], content: bytes, says: str
) -> None:
    response = served.http.post(
        f"{PREFIX}/entities/{path}",
        params=params,
        content=content,
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 400, response.text
    assert says in response.json()["detail"]


def test_list_entities_in_the_durable_functions_shape(served: Served) -> None:
    started = datetime.now(UTC) - timedelta(seconds=1)
    for key in ("x1", "x2", "x3"):
        _signal(served.http, f"counter/{key}", "add", 1)
    _signal(served.http, "bag/b1", "put", "apple")
    for key in ("x1", "x2", "x3"):
        _state_becomes(served.http, f"counter/{key}", 1)
    _state_becomes(served.http, "bag/b1", ["apple"])

    listed = served.reader.get(f"{PREFIX}/entities/Counter", params={"fetchState": "true"})
    assert listed.status_code == 200
    assert "x-ms-continuation-token" not in listed.headers
    items = listed.json()
    assert [i["entityId"] for i in items] == [
        {"name": "counter", "key": k} for k in ("x1", "x2", "x3")
    ]
    assert all(i["state"] == 1 for i in items)
    moment = datetime.fromisoformat(items[0]["lastOperationTime"].replace("Z", "+00:00"))
    assert started <= moment <= datetime.now(UTC) + timedelta(seconds=5)
    # Without fetchState there is no state; the trailing slash lists too.
    bare = served.http.get(f"{PREFIX}/entities/counter/").json()
    assert [set(i) for i in bare] == [{"entityId", "lastOperationTime"}] * 3

    everything = served.http.get(f"{PREFIX}/entities/", params={"fetchState": True}).json()
    assert {(i["entityId"]["name"], i["entityId"]["key"]) for i in everything} == {
        ("counter", "x1"), ("counter", "x2"), ("counter", "x3"), ("bag", "b1"),
    }  # fmt: skip
    assert served.http.get(f"{PREFIX}/entities").json() == [
        {k: v for k, v in i.items() if k != "state"} for i in everything
    ]


def test_list_entities_pages_and_filters_by_last_operation_time(served: Served) -> None:
    for key in ("p1", "p2", "p3"):
        _signal(served.http, f"counter/{key}", "add", 2)
    for key in ("p1", "p2", "p3"):
        _state_becomes(served.http, f"counter/{key}", 2)
    seen: list[str] = []
    token: str | None = None
    for _ in range(10):
        headers = {"x-ms-continuation-token": token} if token else {}
        page = served.http.get(f"{PREFIX}/entities/counter", params={"top": 1}, headers=headers)
        assert page.status_code == 200
        assert len(page.json()) <= 1
        seen += [i["entityId"]["key"] for i in page.json()]
        token = page.headers.get("x-ms-continuation-token")
        if token is None:
            break
    assert seen == ["p1", "p2", "p3"]

    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    earlier = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    none = served.http.get(f"{PREFIX}/entities/counter", params={"lastOperationTimeFrom": later})
    assert none.status_code == 200 and none.json() == []
    window = {"lastOperationTimeFrom": earlier, "lastOperationTimeTo": later}
    assert len(served.http.get(f"{PREFIX}/entities/counter", params=window).json()) == 3
    before = served.http.get(f"{PREFIX}/entities/counter", params={"lastOperationTimeTo": earlier})
    assert before.json() == []


@pytest.mark.parametrize(
    ("path", "params", "headers", "says"),
    [
        ("counter", {"lastOperationTimeFrom": "yesterday"}, {}, "not a date-time"),
        ("counter", {"top": "0"}, {}, "top"),
        ("counter", {"fetchState": "maybe"}, {}, "fetchState"),
        ("count@er", {}, {}, "'@'"),
        ("", {}, {"x-ms-continuation-token": "garbage!"}, ""),
    ],
)
def test_bad_lists_are_400s(
    served: Served, path: str, params: dict[str, str], headers: dict[str, str], says: str
) -> None:
    response = served.http.get(f"{PREFIX}/entities/{path}", params=params, headers=headers)
    assert response.status_code == 400, response.text
    assert says in response.json()["detail"]


def test_the_routes_are_in_the_openapi_document(served: Served) -> None:
    paths = served.http.get("/openapi.json").json()["paths"]
    one = paths[f"{PREFIX}/entities/{{entityName}}/{{entityKey}}"]
    assert one["get"]["summary"] and one["post"]["summary"]
    assert {"200", "400", "401", "403", "404"} <= set(one["get"]["responses"])
    assert {"202", "400", "401", "403"} <= set(one["post"]["responses"])
    listed = paths[f"{PREFIX}/entities/{{entityName}}"]["get"]
    names = {p["name"] for p in listed["parameters"]}
    assert {"fetchState", "top", "lastOperationTimeFrom", "lastOperationTimeTo"} <= names
    assert "x-ms-continuation-token" in names
    assert f"{PREFIX}/entities" in paths
