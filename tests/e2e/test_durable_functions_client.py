"""The real ``azure-functions-durable`` client (1.7.0) against a real ``taskloom serve``:
every method of ``DurableOrchestrationClient``, as a Python Functions app would call them.

The client is built as the Functions host builds it, from the binding's JSON: ``rpcBaseUrl``
points at the key-free loopback listener (``--local-port``, like the host's own RPC port:
the SDK sends no key), while the management URLs it hands out point at the public listener
with ``code=KEY``, which requires keys (the store holds one for this hub).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

df = pytest.importorskip("azure.durable_functions")
func = pytest.importorskip("azure.functions")
http_utils = pytest.importorskip("azure.durable_functions.models.utils.http_utils")

from azure.durable_functions import OrchestrationRuntimeStatus as RS  # noqa: E402

ROOT = Path(__file__).parent.parent.parent
APP = f"{Path(__file__).parent / 'df_client_app.py'}:app"
HUB = "dfclient"
PREFIX = "/runtime/webhooks/durabletask"
PLACEHOLDER = "INSTANCEID"


@dataclass
class Served:
    public: str
    local: str
    key: str
    process: subprocess.Popen[bytes]
    log_path: Path
    tmp: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _taskloom(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "taskloom", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    tmp = tmp_path_factory.mktemp("dfclient")
    store = f"sqlite:///{tmp / 'df.db'}"
    created = _taskloom("keys", "create", "--role", "admin", "--hub", HUB, "--store", store)
    assert created.returncode == 0, created.stderr
    key = created.stdout.split()[0]
    port, local_port = _free_port(), _free_port()
    log_path = tmp / "serve.log"
    command = [
        sys.executable, "-m", "taskloom", "serve", APP, "--store", store,
        "--port", str(port), "--local-port", str(local_port), "--poll-interval", "0.05",
    ]  # fmt: skip
    with log_path.open("wb") as out:
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    server = Served(
        f"http://127.0.0.1:{port}", f"http://127.0.0.1:{local_port}", key, process, log_path, tmp
    )
    until = time.monotonic() + 60
    ready = False
    while time.monotonic() < until and not ready:
        if process.poll() is not None:
            raise RuntimeError(f"taskloom serve exited early:\n{server.log()}")
        try:
            ready = all(
                httpx.get(f"{base}/openapi.json", timeout=1).status_code == 200
                for base in (server.public, server.local)
            )
        except httpx.HTTPError:
            time.sleep(0.05)
    assert ready, server.log()
    try:
        yield server
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def binding(served: Served) -> str:
    """The client binding's JSON, in the shape the Functions host passes it."""
    instance = f"{served.public}{PREFIX}/instances/{PLACEHOLDER}"
    query = f"taskHub={HUB}&connection=Storage&code={served.key}"
    management = {
        "id": PLACEHOLDER,
        "statusQueryGetUri": f"{instance}?{query}",
        "sendEventPostUri": f"{instance}/raiseEvent/{{eventName}}?{query}",
        "terminatePostUri": f"{instance}/terminate?reason={{text}}&{query}",
        "rewindPostUri": f"{instance}/rewind?reason={{text}}&{query}",
        "purgeHistoryDeleteUri": f"{instance}?{query}",
        "restartPostUri": f"{instance}/restart?{query}",
        "suspendPostUri": f"{instance}/suspend?reason={{text}}&{query}",
        "resumePostUri": f"{instance}/resume?reason={{text}}&{query}",
    }
    orchestrators = f"{served.public}{PREFIX}/orchestrators/{{functionName}}[/{{instanceId}}]"
    return json.dumps(
        {
            "taskHubName": HUB,
            "creationUrls": {
                "createNewInstancePostUri": f"{orchestrators}?code={served.key}",
                "createAndWaitOnNewInstancePostUri": (
                    f"{orchestrators}?timeout={{timeoutInSeconds}}"
                    f"&pollingInterval={{intervalInSeconds}}&code={served.key}"
                ),
            },
            "managementUrls": management,
            "rpcBaseUrl": f"{served.local}{PREFIX}/",
            "requiredQueryStringParameters": f"code={served.key}",
        }
    )


@pytest.fixture
async def client(served: Served) -> AsyncIterator[Any]:
    yield df.DurableOrchestrationClient(binding(served))
    # The SDK keeps one aiohttp session per process; each test has its own event loop.
    await http_utils._close_session()


def request(served: Served, path: str = "/api/orders") -> Any:
    return func.HttpRequest(method="POST", url=f"{served.public}{path}", body=b"")


async def wait_for(client: Any, iid: str, wanted: Any, timeout: float = 15.0) -> Any:
    until = time.monotonic() + timeout
    status = None
    while time.monotonic() < until:
        status = await client.get_status(iid)
        if status.runtime_status == wanted:
            return status
        await asyncio.sleep(0.05)
    raise AssertionError(f"{iid} did not reach {wanted}: {status and status.to_json()}")


# -- starting and reading ----------------------------------------------------------------


async def test_start_new_get_status_and_history(client: Any) -> None:
    iid = await client.start_new("hello", None, "World")
    assert isinstance(iid, str) and iid
    status = await wait_for(client, iid, RS.Completed)
    assert status.output == "Hello World!"
    assert status.name == "hello" and status.instance_id == iid
    assert status.custom_status == {"step": "greeting"}
    # As in Durable Functions: the input is what the body held, the SDK's JSON string.
    assert status.input_ == '"World"'
    assert status.created_time is not None and status.last_updated_time is not None

    full = await client.get_status(iid, show_history=True, show_history_output=True)
    events = full.historyEvents  # the SDK keeps members it does not know as attributes
    assert [e["EventType"] for e in events] == [
        "ExecutionStarted",
        "TaskCompleted",
        "ExecutionCompleted",
    ]
    assert events[0]["FunctionName"] == "hello"
    assert events[1]["FunctionName"] == "greet" and events[1]["Result"] == "Hello World!"
    assert events[1]["ScheduledTime"] <= events[1]["Timestamp"]
    assert events[2]["OrchestrationStatus"] == "Completed"


async def test_start_new_with_an_instance_id_and_a_version(client: Any) -> None:
    iid = await client.start_new("hello", "with-id-1", "Ada", version="1.2")
    assert iid == "with-id-1"
    assert (await wait_for(client, iid, RS.Completed)).output == "Hello Ada!"


async def test_start_new_of_an_unknown_orchestrator_raises_the_servers_message(
    client: Any,
) -> None:
    # Without ExceptionMessage in the 400 body the SDK raised KeyError instead.
    with pytest.raises(Exception, match="no orchestrator named 'nope'"):
        await client.start_new("nope", None, 1)


async def test_get_status_of_an_unknown_instance(client: Any) -> None:
    status = await client.get_status("no-such-instance")
    assert status.runtime_status is None and not status


async def test_get_status_all_and_by(client: Any) -> None:
    since = datetime.now(UTC) - timedelta(seconds=2)
    ids = [await client.start_new("hello", f"listed-{n}", str(n)) for n in range(3)]
    for iid in ids:
        await wait_for(client, iid, RS.Completed)
    everything = await client.get_status_all()  # GET instances/ (trailing slash)
    assert set(ids) <= {s.instance_id for s in everything}
    found = await client.get_status_by(
        created_time_from=since,
        created_time_to=datetime.now(UTC) + timedelta(seconds=2),
        runtime_status=[RS.Completed],
        instance_id_prefix="listed-",
    )
    assert sorted(s.instance_id for s in found) == ids
    assert await client.get_status_by(runtime_status=[RS.Suspended]) == []


# -- events and control ------------------------------------------------------------------


async def test_raise_event(client: Any) -> None:
    iid = await client.start_new("wait_go", "event-1")
    await wait_for(client, iid, RS.Running)
    await client.raise_event(iid, "Go", {"n": 7})
    assert (await wait_for(client, iid, RS.Completed)).output == {"n": 7}
    with pytest.raises(Exception, match="is gone"):
        await client.raise_event(iid, "Go", 1)
    with pytest.raises(Exception, match="No instance"):
        await client.raise_event("no-such-instance", "Go", 1)


async def test_suspend_resume_terminate(client: Any) -> None:
    iid = await client.start_new("wait_go", "control-1")
    await wait_for(client, iid, RS.Running)
    await client.suspend(iid, "a pause")
    await wait_for(client, iid, RS.Suspended)
    await client.resume(iid, "carry on")
    await wait_for(client, iid, RS.Running)
    await client.terminate(iid, "no longer needed")
    status = await wait_for(client, iid, RS.Terminated)
    assert "no longer needed" in json.dumps(status.output)
    await client.terminate(iid, "again")  # 410 for a finished instance: accepted quietly
    for control in (client.terminate, client.suspend, client.resume):
        with pytest.raises(Exception, match="No instance"):
            await control("no-such-instance", "why")


async def test_rewind_a_failed_instance(client: Any, served: Served) -> None:
    marker = served.tmp / "rewind-marker"
    iid = await client.start_new("flaky", "rewind-1", str(marker))
    failed = await wait_for(client, iid, RS.Failed)
    assert "failing the first time" in json.dumps(failed.output)
    await client.rewind(iid, "the cause is fixed")
    assert (await wait_for(client, iid, RS.Completed)).output == "fixed"
    with pytest.raises(Exception, match="only supported on failed"):
        await client.rewind(iid, "not failed")


async def test_restart(client: Any) -> None:
    iid = await client.start_new("hello", "restart-1", "Bo")
    await wait_for(client, iid, RS.Completed)
    # Durable Functions answers restart with the check-status payload, which the SDK
    # returns as it is.
    fresh = await client.restart(iid)
    assert fresh["id"] != iid and fresh["statusQueryGetUri"]
    assert (await wait_for(client, fresh["id"], RS.Completed)).output == "Hello Bo!"
    same = await client.restart(iid, restart_with_new_instance_id=False)
    assert same["id"] == iid
    assert (await wait_for(client, iid, RS.Completed)).output == "Hello Bo!"
    with pytest.raises(Exception, match="No instance"):
        await client.restart("no-such-instance")


# -- purging -----------------------------------------------------------------------------


async def test_purge_instance_history(client: Any) -> None:
    iid = await client.start_new("hello", "purge-1", "x")
    await wait_for(client, iid, RS.Completed)
    assert (await client.purge_instance_history(iid)).instances_deleted == 1
    assert (await client.purge_instance_history(iid)).instances_deleted == 0  # 404
    running = await client.start_new("wait_go", "purge-running")
    await wait_for(client, running, RS.Running)
    # Durable Functions answers 412 for an instance that has not finished; the SDK raises.
    with pytest.raises(Exception, match="412"):
        await client.purge_instance_history(running)
    await client.terminate(running, "done")


async def test_purge_instance_history_by(client: Any) -> None:
    since = datetime.now(UTC) - timedelta(seconds=2)
    ids = [await client.start_new("hello", f"bulk-{n}", "y") for n in range(2)]
    for iid in ids:
        await wait_for(client, iid, RS.Completed)
    result = await client.purge_instance_history_by(  # DELETE instances/ (trailing slash)
        created_time_from=since, runtime_status=[RS.Completed]
    )
    assert result.instances_deleted >= 2
    assert not await client.get_status(ids[0])
    nothing = await client.purge_instance_history_by(created_time_from=datetime.now(UTC))
    assert nothing.instances_deleted == 0


# -- HTTP responses for the app's own routes ----------------------------------------------


async def test_create_check_status_response_and_the_payload(client: Any, served: Served) -> None:
    iid = await client.start_new("wait_go", "payload-1")
    response = client.create_check_status_response(request(served), iid)
    assert response.status_code == 202
    payload = json.loads(response.get_body())
    assert response.headers["Location"] == payload["statusQueryGetUri"]
    assert payload == client.create_http_management_payload(iid)
    assert payload == client.get_client_response_links(None, iid)
    # The URLs work against the public listener, with the key they carry.
    with httpx.Client(timeout=10) as http:
        assert http.get(payload["statusQueryGetUri"]).json()["instanceId"] == iid
        sent = http.post(payload["sendEventPostUri"].replace("{eventName}", "Go"), json=3)
        assert sent.status_code == 202
    assert (await wait_for(client, iid, RS.Completed)).output == 3
    with httpx.Client(timeout=10) as http:
        assert http.delete(payload["purgeHistoryDeleteUri"]).json() == {"instancesDeleted": 1}


async def test_wait_for_completion_or_create_check_status_response(
    client: Any, served: Served
) -> None:
    iid = await client.start_new("hello", "wait-1", "Cy")
    done = await client.wait_for_completion_or_create_check_status_response(
        request(served), iid, timeout_in_milliseconds=10_000, retry_interval_in_milliseconds=50
    )
    assert done.status_code == 200 and b"Hello Cy!" in done.get_body()
    waiting = await client.start_new("wait_go", "wait-2")
    pending = await client.wait_for_completion_or_create_check_status_response(
        request(served), waiting, timeout_in_milliseconds=300, retry_interval_in_milliseconds=100
    )
    assert pending.status_code == 202
    assert json.loads(pending.get_body())["id"] == waiting
    await client.terminate(waiting, "done")


# -- keys: the public listener requires them ---------------------------------------------


async def test_the_public_listener_requires_a_key(served: Served) -> None:
    public = json.loads(binding(served))
    public["rpcBaseUrl"] = f"{served.public}{PREFIX}/"
    sdk = df.DurableOrchestrationClient(json.dumps(public))
    try:
        with pytest.raises(Exception, match="401"):
            await sdk.get_status_all()
    finally:
        await http_utils._close_session()
    with httpx.Client(timeout=10) as http:
        assert http.get(f"{served.public}{PREFIX}/instances").status_code == 401
        assert http.get(f"{served.local}{PREFIX}/instances").status_code == 200
        foreign = http.get(f"{served.local}{PREFIX}/instances", headers={"Host": "evil.example"})
        assert foreign.status_code == 403
    assert "NO KEYS REQUIRED" in served.log() and "API keys required" in served.log()


# -- entities --------------------------------------------------------------------------


async def test_signal_entity_and_read_entity_state(client: Any, served: Served) -> None:
    counter = df.EntityId("Counter", "df-c1")
    missing = await client.read_entity_state(df.EntityId("Counter", "never-signalled"))
    assert not missing.entity_exists
    await client.signal_entity(counter, "add", 5)
    await client.signal_entity(counter, "add", 2)
    until = time.monotonic() + 15
    state = None
    while time.monotonic() < until:
        state = await client.read_entity_state(counter)
        if state.entity_exists and state.entity_state == 7:
            break
        await asyncio.sleep(0.05)
    assert state is not None and state.entity_exists and state.entity_state == 7
