"""Signed event links over HTTP: raise exactly one event on exactly one instance, with
no key, until they expire; altered or expired links get 403."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import timedelta

import httpx
import pytest
from http_server import HUB, PREFIX, Server, running, wait_status

import taskloom as tl


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running(tmp_path_factory.mktemp("links"), roles=("contributor",)) as srv:
        yield srv


@pytest.fixture
def http(server: Server) -> Iterator[httpx.Client]:
    with server.client("contributor") as client:
        yield client


def make_link(server: Server, iid: str, expires_in: timedelta, data: object = None) -> str:
    async def make() -> str:
        async with tl.AsyncClient(server.store_url, HUB, base_url=server.base_url) as client:
            return await client.create_event_link(iid, "Approval", expires_in, data=data)

    return asyncio.run(make())


def test_a_link_raises_its_event_without_a_key(server: Server, http: httpx.Client) -> None:
    http.post(f"{PREFIX}/orchestrators/wait_approval/link-1")
    wait_status(http, "link-1", "Running")
    url = http.get("/api/link/link-1").json()["url"]
    assert url.startswith(f"{server.base_url}{PREFIX}/links/")
    opened = httpx.get(url)
    assert opened.status_code == 200
    assert "text/html" in opened.headers["content-type"]
    assert "Recorded: Approval for link-1" in opened.text
    assert wait_status(http, "link-1", "Completed")["output"] == {"approved": {"by": "link"}}
    # The instance finished: the same link now changes nothing.
    assert httpx.get(url).status_code == 410
    assert server.keys["contributor"] not in url


def test_post_works_too(server: Server, http: httpx.Client) -> None:
    http.post(f"{PREFIX}/orchestrators/wait_approval/link-2")
    url = make_link(server, "link-2", timedelta(minutes=1), data="yes")
    assert httpx.post(url).status_code == 200
    assert wait_status(http, "link-2", "Completed")["output"] == {"approved": "yes"}


def test_altered_and_expired_links_get_403(server: Server, http: httpx.Client) -> None:
    http.post(f"{PREFIX}/orchestrators/wait_approval/link-3")
    http.post(f"{PREFIX}/orchestrators/wait_approval/link-3b")
    url = make_link(server, "link-3", timedelta(minutes=1), data=True)
    base, token = url.rsplit("/", 1)
    payload, mac = token.split(".")
    other = make_link(server, "link-3b", timedelta(minutes=1), data=True)
    other_payload = other.rsplit("/", 1)[1].split(".")[0]
    for forged in (
        f"{other_payload}.{mac}",  # another instance's payload with this signature
        f"{payload}.{mac[:-2]}AA",  # a changed signature
        f"{payload[:-2]}.{mac}",  # a truncated payload
        "not-a-token",
    ):
        response = httpx.get(f"{base}/{forged}")
        assert response.status_code == 403, forged
    expired = make_link(server, "link-3", timedelta(seconds=-5))
    assert httpx.get(expired).status_code == 403
    assert http.get(f"{PREFIX}/instances/link-3").json()["runtimeStatus"] == "Running"
    assert http.get(f"{PREFIX}/instances/link-3b").json()["runtimeStatus"] == "Running"


def test_a_link_to_a_purged_instance_gets_404(server: Server, http: httpx.Client) -> None:
    http.post(f"{PREFIX}/orchestrators/add_one/link-4", json=1)
    wait_status(http, "link-4", "Completed")
    url = make_link(server, "link-4", timedelta(minutes=1))
    assert http.delete(f"{PREFIX}/instances/link-4").status_code == 200
    assert httpx.get(url).status_code == 404
