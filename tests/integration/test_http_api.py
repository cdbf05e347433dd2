"""The management API of a real ``taskloom serve`` over HTTP: every route, status code
and Durable Functions field name."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from http_server import PREFIX, Server, running, wait_status

PAYLOAD_FIELDS = {
    "id",
    "statusQueryGetUri",
    "sendEventPostUri",
    "terminatePostUri",
    "rewindPostUri",
    "purgeHistoryDeleteUri",
    "suspendPostUri",
    "resumePostUri",
    "restartPostUri",
}
STATUS_FIELDS = {
    "name",
    "instanceId",
    "runtimeStatus",
    "input",
    "customStatus",
    "output",
    "createdTime",
    "lastUpdatedTime",
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    roles = ("reader", "worker", "contributor", "admin")
    with running(tmp_path_factory.mktemp("http"), roles=roles) as srv:
        yield srv


@pytest.fixture
def http(server: Server) -> Iterator[httpx.Client]:
    with server.client("contributor") as client:
        yield client


def start(http: httpx.Client, name: str, iid: str, body: object = None) -> httpx.Response:
    response = http.post(f"{PREFIX}/orchestrators/{name}/{iid}", json=body)
    assert response.status_code == 202, response.text
    return response


def test_start_returns_202_location_and_the_management_payload(
    http: httpx.Client, server: Server
) -> None:
    response = start(http, "add_one", "start-1", 20)
    payload = response.json()
    assert set(payload) == PAYLOAD_FIELDS
    assert payload["id"] == "start-1"
    assert response.headers["Location"] == payload["statusQueryGetUri"]
    assert payload["statusQueryGetUri"].startswith(f"{server.base_url}{PREFIX}/instances/start-1")
    assert "/raiseEvent/{eventName}" in payload["sendEventPostUri"]
    body = wait_status(http, "start-1", "Completed")
    assert body["output"] == 41


def test_start_with_a_random_id(http: httpx.Client) -> None:
    response = http.post(f"{PREFIX}/orchestrators/add_one", json=1)
    assert response.status_code == 202
    iid = response.json()["id"]
    assert wait_status(http, iid, "Completed")["output"] == 3


def test_start_rejects_bad_json_unknown_orchestrators_and_running_ids(http: httpx.Client) -> None:
    bad = http.post(f"{PREFIX}/orchestrators/add_one", content=b"{not json")
    assert bad.status_code == 400
    assert "JSON" in bad.json()["detail"]
    unknown = http.post(f"{PREFIX}/orchestrators/no_such_thing", json=1)
    assert unknown.status_code == 400
    assert "no_such_thing" in unknown.json()["detail"]
    start(http, "wait_approval", "dup-1")
    assert http.post(f"{PREFIX}/orchestrators/wait_approval/dup-1").status_code == 409


def test_status_202_while_running_200_when_finished_404_unknown(http: httpx.Client) -> None:
    start(http, "wait_approval", "status-1", {"claim": 7})
    running_ = wait_status(http, "status-1", "Running")
    response = http.get(f"{PREFIX}/instances/status-1")
    assert response.status_code == 202
    assert response.headers["Location"].endswith("/instances/status-1")
    assert set(running_) >= STATUS_FIELDS
    assert running_["input"] == {"claim": 7}
    assert running_["customStatus"] == "waiting"
    no_input = http.get(f"{PREFIX}/instances/status-1", params={"showInput": "false"}).json()
    assert no_input["input"] is None
    http.post(f"{PREFIX}/instances/status-1/raiseEvent/Approval", json=True)
    done = wait_status(http, "status-1", "Completed")
    assert http.get(f"{PREFIX}/instances/status-1").status_code == 200
    assert done["output"] == {"approved": True}
    assert http.get(f"{PREFIX}/instances/nope-404").status_code == 404


def test_status_with_history(http: httpx.Client) -> None:
    start(http, "add_one", "hist-1", 5)
    wait_status(http, "hist-1", "Completed")
    url = f"{PREFIX}/instances/hist-1"
    plain = http.get(url).json()
    assert "historyEvents" not in plain
    # Durable Functions' shape: the TaskScheduled folded into its TaskCompleted, no
    # OrchestratorStarted, results only with showHistoryOutput.
    events = http.get(url, params={"showHistory": "true"}).json()["historyEvents"]
    kinds = [e["EventType"] for e in events]
    assert kinds == ["ExecutionStarted", "TaskCompleted", "ExecutionCompleted"]
    started, completed, finished = events
    assert started["FunctionName"] == "add_one" and "Input" not in started
    assert completed["FunctionName"] == "double" and "Result" not in completed
    assert completed["ScheduledTime"] <= completed["Timestamp"]
    assert completed["Timestamp"].endswith("Z")
    assert finished["OrchestrationStatus"] == "Completed" and "Result" not in finished
    params = {"showHistory": "true", "showHistoryOutput": "true"}
    events = http.get(url, params=params).json()["historyEvents"]
    assert events[1]["Result"] == 10 and events[2]["Result"] == 11
    # taskloom's own form stays available.
    params = {"showHistory": "true", "showHistoryOutput": "true", "historyFormat": "taskloom"}
    events = http.get(url, params=params).json()["historyEvents"]
    kinds = [e["kind"] for e in events]
    assert "OrchestratorStarted" in kinds and "TaskScheduled" in kinds
    assert next(e for e in events if e["kind"] == "TaskCompleted")["result"] == 10


def test_list_filters_and_pages_with_the_continuation_header(http: httpx.Client) -> None:
    since = datetime.now(UTC) - timedelta(seconds=1)
    for n in range(5):
        start(http, "add_one", f"page-{n}", n)
    for n in range(5):
        wait_status(http, f"page-{n}", "Completed")
    seen: list[str] = []
    headers: dict[str, str] = {}
    params = {"instanceIdPrefix": "page-", "top": "2", "createdTimeFrom": since.isoformat()}
    pages = 0
    while True:
        response = http.get(f"{PREFIX}/instances", params=params, headers=headers)
        assert response.status_code == 200
        assert isinstance(response.json(), list)
        seen += [item["instanceId"] for item in response.json()]
        pages += 1
        token = response.headers.get("x-ms-continuation-token")
        if not token:
            break
        headers = {"x-ms-continuation-token": token}
    assert sorted(seen) == [f"page-{n}" for n in range(5)]
    assert pages == 3
    completed = http.get(
        f"{PREFIX}/instances",
        params={"runtimeStatus": "Completed,Failed", "instanceIdPrefix": "page-"},
    ).json()
    assert len(completed) == 5
    running_only = http.get(
        f"{PREFIX}/instances", params={"runtimeStatus": "Running", "instanceIdPrefix": "page-"}
    )
    assert running_only.json() == []
    future = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    assert http.get(f"{PREFIX}/instances", params={"createdTimeFrom": future}).json() == []
    past = "2000-01-01T00:00:00Z"
    assert http.get(f"{PREFIX}/instances", params={"createdTimeTo": past}).json() == []


@pytest.mark.parametrize(
    "params",
    [{"runtimeStatus": "Sleeping"}, {"top": "0"}, {"top": "x"}, {"createdTimeFrom": "yesterday"}],
)
def test_list_rejects_bad_parameters_with_400(http: httpx.Client, params: dict[str, str]) -> None:
    response = http.get(f"{PREFIX}/instances", params=params)
    assert response.status_code == 400
    assert response.json()["detail"]


def test_list_rejects_a_bad_continuation_token(http: httpx.Client) -> None:
    response = http.get(f"{PREFIX}/instances", headers={"x-ms-continuation-token": "garbage!"})
    assert response.status_code == 400


def test_raise_event_202_404_410_400(http: httpx.Client) -> None:
    start(http, "wait_approval", "event-1")
    wait_status(http, "event-1", "Running")
    url = f"{PREFIX}/instances/event-1/raiseEvent/Approval"
    assert http.post(url, content=b"{oops").status_code == 400
    assert http.post(url, json={"by": "ann"}).status_code == 202
    assert wait_status(http, "event-1", "Completed")["output"] == {"approved": {"by": "ann"}}
    assert http.post(url, json=1).status_code == 410
    assert http.post(f"{PREFIX}/instances/ghost/raiseEvent/Approval", json=1).status_code == 404


def test_terminate_suspend_resume(http: httpx.Client) -> None:
    start(http, "wait_approval", "ctl-1")
    wait_status(http, "ctl-1", "Running")
    base = f"{PREFIX}/instances/ctl-1"
    assert http.post(f"{base}/suspend", params={"reason": "lunch"}).status_code == 202
    wait_status(http, "ctl-1", "Suspended")
    assert http.get(base).status_code == 202
    assert http.post(f"{base}/resume", params={"reason": "back"}).status_code == 202
    wait_status(http, "ctl-1", "Running")
    assert http.post(f"{base}/terminate", params={"reason": "stop"}).status_code == 202
    body = wait_status(http, "ctl-1", "Terminated")
    assert http.get(base).status_code == 200
    assert body["runtimeStatus"] == "Terminated"
    for operation in ("terminate", "suspend", "resume"):
        assert http.post(f"{base}/{operation}").status_code == 410
        assert http.post(f"{PREFIX}/instances/ghost/{operation}").status_code == 404


def test_rewind_a_failed_instance_and_410_for_others(http: httpx.Client) -> None:
    start(http, "fail_once", "rewind-1", "boom")
    failed = wait_status(http, "rewind-1", "Failed")
    assert "boom" in str(failed["output"])
    assert failed["failureDetails"]["message"]
    assert http.get(f"{PREFIX}/instances/rewind-1").status_code == 200
    assert (
        http.post(f"{PREFIX}/instances/rewind-1/rewind", params={"reason": "x"}).status_code == 202
    )
    start(http, "add_one", "rewind-2", 1)
    wait_status(http, "rewind-2", "Completed")
    assert http.post(f"{PREFIX}/instances/rewind-2/rewind").status_code == 410
    assert http.post(f"{PREFIX}/instances/ghost/rewind").status_code == 404


def test_restart_with_a_new_id_and_with_the_same_id(http: httpx.Client) -> None:
    start(http, "add_one", "restart-1", 7)
    wait_status(http, "restart-1", "Completed")
    response = http.post(f"{PREFIX}/instances/restart-1/restart")
    assert response.status_code == 202
    payload = response.json()
    assert set(payload) == PAYLOAD_FIELDS and payload["id"] != "restart-1"
    again = wait_status(http, payload["id"], "Completed")
    assert again["input"] == 7 and again["output"] == 15
    same = http.post(
        f"{PREFIX}/instances/restart-1/restart", params={"restartWithNewInstanceId": "false"}
    )
    assert same.status_code == 202 and same.json()["id"] == "restart-1"
    start(http, "wait_approval", "restart-2")
    busy = http.post(
        f"{PREFIX}/instances/restart-2/restart", params={"restartWithNewInstanceId": "false"}
    )
    assert busy.status_code == 409
    assert http.post(f"{PREFIX}/instances/ghost/restart").status_code == 404


def test_purge_one(http: httpx.Client) -> None:
    start(http, "add_one", "purge-1", 1)
    wait_status(http, "purge-1", "Completed")
    response = http.delete(f"{PREFIX}/instances/purge-1")
    assert response.status_code == 200
    assert response.json() == {"instancesDeleted": 1}
    assert http.get(f"{PREFIX}/instances/purge-1").status_code == 404
    assert http.delete(f"{PREFIX}/instances/purge-1").status_code == 404
    # As Durable Functions: 412 for an instance that has not finished.
    start(http, "wait_approval", "purge-2")
    running = http.delete(f"{PREFIX}/instances/purge-2")
    assert running.status_code == 412
    assert "Running" in running.json()["ExceptionMessage"] or "Pending" in running.text


def test_purge_by_filter(http: httpx.Client) -> None:
    since = datetime.now(UTC)
    for n in range(3):
        start(http, "add_one", f"bulk-{n}", n)
    for n in range(3):
        wait_status(http, f"bulk-{n}", "Completed")
    until = datetime.now(UTC) + timedelta(seconds=1)
    params = {
        "createdTimeFrom": since.isoformat(),
        "createdTimeTo": until.isoformat(),
        "runtimeStatus": "Completed",
    }
    response = http.delete(f"{PREFIX}/instances", params=params)
    assert response.status_code == 200
    assert response.json()["instancesDeleted"] >= 3
    assert http.get(f"{PREFIX}/instances/bulk-0").status_code == 404
    # As in Durable Functions: 404 when nothing matched, 400 without createdTimeFrom.
    assert http.delete(f"{PREFIX}/instances", params=params).status_code == 404
    assert http.delete(f"{PREFIX}/instances").status_code == 400


def test_openapi_document(server: Server) -> None:
    document = httpx.get(f"{server.base_url}/openapi.json").json()
    paths = document["paths"]
    for path in (
        "/orchestrators/{functionName}",
        "/orchestrators/{functionName}/{instanceId}",
        "/instances",
        "/instances/{instanceId}",
        "/instances/{instanceId}/raiseEvent/{eventName}",
        "/instances/{instanceId}/terminate",
        "/instances/{instanceId}/suspend",
        "/instances/{instanceId}/resume",
        "/instances/{instanceId}/rewind",
        "/instances/{instanceId}/restart",
        "/links/{token}",
    ):
        assert PREFIX + path in paths, path
    assert "/api/double/{value}" in paths
    listing = paths[f"{PREFIX}/instances"]["get"]
    names = {p["name"] for p in listing["parameters"]}
    expected = {"runtimeStatus", "createdTimeFrom", "createdTimeTo", "instanceIdPrefix", "top"}
    assert expected | {"x-ms-continuation-token"} <= names
    assert "422" not in str(document)


def test_user_routes_get_the_client_and_make_check_status_responses(http: httpx.Client) -> None:
    response = http.post("/api/double/4")
    assert response.status_code == 202
    payload = response.json()
    assert set(payload) == PAYLOAD_FIELDS
    assert wait_status(http, payload["id"], "Completed")["output"] == 9
    status = http.get(response.headers["Location"])
    assert status.json()["output"] == 9


def test_access_log_names_instances_and_never_keys(server: Server, http: httpx.Client) -> None:
    start(http, "add_one", "logged-1", 1)
    key = server.keys["reader"]
    httpx.get(f"{server.base_url}{PREFIX}/instances/logged-1", params={"code": key})
    wait_status(http, "logged-1", "Completed")
    log = server.log()
    assert "logged-1" in log
    for secret in server.keys.values():
        assert secret not in log


# -- Durable Functions fidelity (each found with azure-functions-durable's client) ------


def test_error_bodies_carry_message_and_exception_message(http: httpx.Client) -> None:
    # The SDK's start_new reads ExceptionMessage from a 400 and crashes without it.
    for response in (
        http.post(f"{PREFIX}/orchestrators/no_such_thing", json=1),
        http.get(f"{PREFIX}/instances/nope-fidelity"),
        http.get(f"{PREFIX}/instances", params={"top": "0"}),
        httpx.get(f"{http.base_url}{PREFIX}/instances"),  # no key: 401
    ):
        body = response.json()
        assert response.status_code >= 400
        assert body["detail"] and body["Message"] == body["ExceptionMessage"] == body["detail"]


def test_start_passes_the_version_through(http: httpx.Client) -> None:
    response = http.post(f"{PREFIX}/orchestrators/add_one/versioned-1?version=2.1", json=1)
    assert response.status_code == 202, response.text
    wait_status(http, "versioned-1", "Completed")
    params = {"showHistory": "true", "historyFormat": "taskloom"}
    events = http.get(f"{PREFIX}/instances/versioned-1", params=params).json()["historyEvents"]
    started = next(e for e in events if e["kind"] == "ExecutionStarted")
    assert started["version"] == "2.1"


def test_list_and_purge_answer_with_and_without_the_trailing_slash(http: httpx.Client) -> None:
    start(http, "add_one", "slash-1", 1)
    wait_status(http, "slash-1", "Completed")
    for path in (f"{PREFIX}/instances", f"{PREFIX}/instances/"):
        listed = http.get(path, params={"instanceIdPrefix": "slash-"}, follow_redirects=False)
        assert listed.status_code == 200, (path, listed.status_code)
        assert [s["instanceId"] for s in listed.json()] == ["slash-1"]
    since = (datetime.now(UTC) - timedelta(minutes=5)).isoformat()
    params = {"createdTimeFrom": since, "runtimeStatus": "Completed"}
    purged = http.delete(f"{PREFIX}/instances/", params=params, follow_redirects=False)
    assert purged.status_code == 200 and purged.json()["instancesDeleted"] >= 1
    again = http.delete(f"{PREFIX}/instances", params=params, follow_redirects=False)
    assert again.status_code == 404
    assert http.get(f"{PREFIX}/instances/slash-1").status_code == 404


def test_history_of_a_failure_and_a_pending_task_in_durable_functions_shape(
    http: httpx.Client,
) -> None:
    start(http, "fail_once", "hist-fail", "boom")
    wait_status(http, "hist-fail", "Failed")
    url = f"{PREFIX}/instances/hist-fail"
    events = http.get(url, params={"showHistory": "true"}).json()["historyEvents"]
    failed = next(e for e in events if e["EventType"] == "TaskFailed")
    assert failed["FunctionName"] == "explode" and "ScheduledTime" in failed
    assert "boom" in failed["Reason"]
    assert failed["FailureDetails"]["ErrorType"].endswith("RuntimeError")
    assert events[-1]["EventType"] == "ExecutionCompleted"
    assert events[-1]["OrchestrationStatus"] == "Failed"
    assert all("kind" not in e and "EventId" not in e for e in events)
    start(http, "wait_approval", "hist-wait")
    wait_status(http, "hist-wait", "Running")
    events = http.get(f"{PREFIX}/instances/hist-wait", params={"showHistory": "true"}).json()
    kinds = [e["EventType"] for e in events["historyEvents"]]
    assert kinds == ["ExecutionStarted", "TimerCreated"]
    assert events["historyEvents"][1]["FireAt"].endswith("Z")
    http.post(f"{PREFIX}/instances/hist-wait/terminate")
