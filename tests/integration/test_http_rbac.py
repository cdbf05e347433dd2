"""Every management route x every role x no key, over HTTP: 401 without a valid key,
403 when the role is not enough, and never 500."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from http_server import PREFIX, Server, running

ROLES = ("reader", "worker", "contributor", "admin")
# (method, path, params, body, the permission it needs)
ROUTES = [
    ("POST", "/orchestrators/add_one", {}, 1, "write"),
    ("POST", "/orchestrators/add_one/rbac-{role}", {}, 1, "write"),
    ("GET", "/instances", {}, None, "read"),
    ("GET", "/instances/rbac-ghost", {}, None, "read"),
    ("POST", "/instances/rbac-ghost/raiseEvent/Approval", {}, 1, "write"),
    ("POST", "/instances/rbac-ghost/terminate", {"reason": "x"}, None, "write"),
    ("POST", "/instances/rbac-ghost/suspend", {}, None, "write"),
    ("POST", "/instances/rbac-ghost/resume", {}, None, "write"),
    ("POST", "/instances/rbac-ghost/rewind", {}, None, "write"),
    ("POST", "/instances/rbac-ghost/restart", {}, None, "write"),
    ("DELETE", "/instances/rbac-ghost", {}, None, "write"),
    ("DELETE", "/instances", {"createdTimeFrom": "2000-01-01T00:00:00Z"}, None, "write"),
    ("GET", "/keys", {}, None, "admin"),
    ("POST", "/keys", {}, {"name": "made-by-{role}", "role": "reader"}, "admin"),
    ("DELETE", "/keys/no-such-key", {}, None, "admin"),
]
ALLOWED = {
    "read": {"reader", "worker", "contributor", "admin"},
    "write": {"contributor", "admin"},
    "admin": {"admin"},
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running(tmp_path_factory.mktemp("rbac"), roles=ROLES) as srv:
        yield srv


def _call(server: Server, route: tuple[object, ...], role: str, headers: dict[str, str]) -> int:
    method, path, params, body, _ = route
    url = f"{server.base_url}{PREFIX}{str(path).format(role=role)}"
    if isinstance(body, dict):
        body = {k: str(v).format(role=role) for k, v in body.items()}
    response = httpx.request(
        str(method),
        url,
        params=params,
        json=body,
        headers=headers,
        timeout=10,  # type: ignore[arg-type]
    )
    return response.status_code


@pytest.mark.parametrize("route", ROUTES, ids=[f"{r[0]} {r[1]}" for r in ROUTES])
def test_rbac_matrix(server: Server, route: tuple[object, ...]) -> None:
    permission = str(route[4])
    for role in ROLES:
        status = _call(server, route, role, {"Authorization": f"Bearer {server.keys[role]}"})
        assert status < 500, (role, status)
        if role in ALLOWED[permission]:
            assert status not in (401, 403), (role, status)
        else:
            assert status == 403, (role, status)
    assert _call(server, route, "none", {}) == 401
    assert _call(server, route, "bad", {"Authorization": "Bearer tlk_not-a-key"}) == 401


def test_key_in_the_query_string(server: Server) -> None:
    url = f"{server.base_url}{PREFIX}/instances"
    assert httpx.get(url, params={"code": server.keys["reader"]}).status_code == 200
    assert httpx.get(url, params={"code": "wrong"}).status_code == 401
    write = f"{server.base_url}{PREFIX}/orchestrators/add_one"
    assert httpx.post(write, params={"code": server.keys["reader"]}).status_code == 403


def test_a_revoked_key_stops_working(server: Server) -> None:
    admin = {"Authorization": f"Bearer {server.keys['admin']}"}
    created = httpx.post(
        f"{server.base_url}{PREFIX}/keys", json={"name": "short-lived", "role": "reader"},
        headers=admin,
    )  # fmt: skip
    assert created.status_code == 201
    key = created.json()
    assert key["key"].startswith("tlk_") and key["role"] == "reader"
    mine = {"Authorization": f"Bearer {key['key']}"}
    assert httpx.get(f"{server.base_url}{PREFIX}/instances", headers=mine).status_code == 200
    listed = httpx.get(f"{server.base_url}{PREFIX}/keys", headers=admin).json()
    assert key["id"] in {k["id"] for k in listed}
    assert all("key" not in k for k in listed)
    revoked = httpx.delete(f"{server.base_url}{PREFIX}/keys/{key['id']}", headers=admin)
    assert revoked.status_code == 200
    # The server caches key lookups for two seconds at most.
    import time

    time.sleep(2.2)
    assert httpx.get(f"{server.base_url}{PREFIX}/instances", headers=mine).status_code == 401


def test_user_routes_and_the_openapi_document_need_no_key(server: Server) -> None:
    assert httpx.get(f"{server.base_url}/openapi.json").status_code == 200
    assert httpx.post(f"{server.base_url}/api/double/2").status_code == 202
