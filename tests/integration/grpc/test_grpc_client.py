"""The client RPCs with the SDK's own client (``durabletask.client.TaskHubGrpcClient``)
against a real sidecar on SQLite and PostgreSQL, a native taskloom worker running the
orchestrations: start, read, wait, events, terminate, suspend and resume, restart,
rewind, queries with paging, purges, history, and the statuses of bad requests."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import grpc
import pytest
from durabletask import client as dt
from durabletask.internal import orchestrator_service_pb2 as pb
from google.protobuf import wrappers_pb2
from grpc_client_env import SidecarEnv

from taskloom import history as h
from taskloom import manage
from taskloom.storage import open_store

T = TypeVar("T")
S = dt.OrchestrationStatus


@pytest.fixture
def sidecar(store_url: str, hub: str) -> Iterator[SidecarEnv]:
    env = SidecarEnv(store_url, hub).start()
    try:
        yield env
    finally:
        env.stop()


@pytest.fixture
def c(sidecar: SidecarEnv) -> dt.TaskHubGrpcClient:
    return sidecar.client()


@pytest.fixture
def stub(sidecar: SidecarEnv) -> Iterator[Any]:
    with grpc.insecure_channel(sidecar.address) as channel:
        yield sidecar.stub(channel)


def wait_until(probe: Callable[[], T | None], what: str, timeout: float = 15.0) -> T:
    """``probe()`` once it returns something truthy; fails after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        found = probe()
        if found:
            return found
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)


def status_is(c: dt.TaskHubGrpcClient, iid: str, status: S) -> Callable[[], Any]:
    def probe() -> Any:
        state = c.get_orchestration_state(iid)
        return state if state is not None and state.runtime_status == status else None

    return probe


def code_of(call: Callable[[], object]) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    err: Any = caught.value
    return err.code(), err.details()


# -- start, read, wait -------------------------------------------------------------------


def test_start_get_and_wait(c: dt.TaskHubGrpcClient) -> None:
    iid = c.schedule_new_orchestration("chain", input="Paris")
    started = c.wait_for_orchestration_start(iid, timeout=15)
    assert started is not None and started.runtime_status != S.PENDING
    done = c.wait_for_orchestration_completion(iid, timeout=15)
    assert done is not None
    assert done.runtime_status == S.COMPLETED
    assert done.name == "chain"
    assert json.loads(done.serialized_output or "") == [
        "Hello Tokyo!",
        "Hello Seattle!",
        "Hello Paris!",
    ]
    assert done.serialized_input == json.dumps("Paris")
    bare = c.get_orchestration_state(iid, fetch_payloads=False)
    assert bare is not None and bare.serialized_input is None and bare.serialized_output is None
    assert bare.runtime_status == S.COMPLETED


def test_version_tags_trace_and_scheduled_start(sidecar: SidecarEnv, stub: Any) -> None:
    at = datetime.now(UTC) + timedelta(milliseconds=300)
    request = pb.CreateInstanceRequest(
        name="chain",
        instanceId="tagged-1",
        input=_sv('"Oslo"'),
        version=_sv("1.2"),
        tags={"team": "a"},
        parentTraceContext=pb.TraceContext(
            traceParent="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            traceState=_sv("k=v"),
        ),
    )
    request.scheduledStartTimestamp.FromDatetime(at)
    assert stub.StartInstance(request).instanceId == "tagged-1"
    record = sidecar.call(sidecar.store.get_instance("tagged-1"))
    assert record.version == "1.2"
    assert record.scheduled_start_at is not None
    c = sidecar.client()
    done = c.wait_for_orchestration_completion("tagged-1", timeout=15)
    assert done is not None and done.runtime_status == S.COMPLETED
    history = sidecar.call(sidecar.store.get_history("tagged-1"))
    started = next(e for e in history if isinstance(e, h.ExecutionStarted))
    assert started.tags == {"team": "a"}
    assert started.trace_parent == "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    assert started.trace_state == "k=v"
    state = stub.GetInstance(pb.GetInstanceRequest(instanceId="tagged-1")).orchestrationState
    assert state.version.value == "1.2"
    assert state.HasField("scheduledStartTimestamp") and state.HasField("completedTimestamp")
    assert dict(state.tags) == {"team": "a"}  # read from the history's ExecutionStarted
    # Before its first episode, the tags come from the start waiting in the inbox.
    later = pb.CreateInstanceRequest(name="chain", instanceId="tagged-2", tags={"team": "b"})
    later.scheduledStartTimestamp.FromDatetime(datetime.now(UTC) + timedelta(hours=1))
    stub.StartInstance(later)
    pending = stub.GetInstance(pb.GetInstanceRequest(instanceId="tagged-2")).orchestrationState
    assert pending.orchestrationStatus == pb.ORCHESTRATION_STATUS_PENDING
    assert dict(pending.tags) == {"team": "b"}
    stub.StartInstance(pb.CreateInstanceRequest(name="chain", instanceId="tagged-3"))
    query = pb.InstanceQuery(instanceIdPrefix=_sv("tagged-"), maxInstanceCount=10)
    page = stub.QueryInstances(pb.QueryInstancesRequest(query=query))
    assert {s.instanceId: dict(s.tags) for s in page.orchestrationState} == {
        "tagged-1": {"team": "a"},
        "tagged-2": {"team": "b"},
        "tagged-3": {},
    }


def _sv(value: str) -> Any:
    return wrappers_pb2.StringValue(value=value)


def test_unknown_instances(c: dt.TaskHubGrpcClient) -> None:
    assert c.get_orchestration_state("nope") is None
    assert c.wait_for_orchestration_start("nope", timeout=5) is None
    assert c.wait_for_orchestration_completion("nope", timeout=5) is None
    for call in (
        lambda: c.raise_orchestration_event("nope", "Approval", data=1),
        lambda: c.terminate_orchestration("nope"),
        lambda: c.suspend_orchestration("nope"),
        lambda: c.resume_orchestration("nope"),
        lambda: c.rewind_orchestration("nope"),
        lambda: c.restart_orchestration("nope"),
        lambda: c.get_orchestration_history("nope"),
    ):
        code, details = code_of(call)
        assert code == grpc.StatusCode.NOT_FOUND, details
        assert "nope" in details
    assert c.purge_orchestration("nope").deleted_instance_count == 0


def test_wait_times_out_at_the_callers_deadline(c: dt.TaskHubGrpcClient) -> None:
    iid = c.schedule_new_orchestration("wait_event")
    with pytest.raises(TimeoutError):
        c.wait_for_orchestration_completion(iid, timeout=0.5)
    c.raise_orchestration_event(iid, "Approval", data="late")
    done = c.wait_for_orchestration_completion(iid, timeout=15)
    assert done is not None and done.serialized_output == json.dumps("late")


def test_existing_running_id_is_already_exists(c: dt.TaskHubGrpcClient) -> None:
    c.schedule_new_orchestration("wait_event", instance_id="dup")
    code, details = code_of(lambda: c.schedule_new_orchestration("wait_event", instance_id="dup"))
    assert code == grpc.StatusCode.ALREADY_EXISTS, details
    policy = pb.OrchestrationIdReusePolicy(replaceableStatus=[pb.ORCHESTRATION_STATUS_FAILED])
    c.terminate_orchestration("dup")
    c.wait_for_orchestration_completion("dup", timeout=15)
    code, details = code_of(
        lambda: c.schedule_new_orchestration(
            "wait_event", instance_id="dup", reuse_id_policy=policy
        )
    )
    assert code == grpc.StatusCode.ALREADY_EXISTS and "Terminated" in details
    # Without a policy, a finished instance is replaced (as taskloom's own clients do).
    assert c.schedule_new_orchestration("wait_event", instance_id="dup") == "dup"
    assert c.wait_for_orchestration_start("dup", timeout=15) is not None


def test_malformed_requests_are_invalid_argument(c: dt.TaskHubGrpcClient, stub: Any) -> None:
    code, details = code_of(lambda: stub.StartInstance(pb.CreateInstanceRequest(name="")))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "name" in details
    code, details = code_of(
        lambda: stub.QueryInstances(
            pb.QueryInstancesRequest(query=pb.InstanceQuery(continuationToken=_sv("garbage!")))
        )
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "token" in details
    code, details = code_of(lambda: stub.RaiseEvent(pb.RaiseEventRequest(instanceId="x")))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    code, details = code_of(lambda: stub.PurgeInstances(pb.PurgeInstancesRequest()))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "instanceId" in details
    code, details = code_of(
        lambda: stub.QueryInstances(
            pb.QueryInstancesRequest(query=pb.InstanceQuery(runtimeStatus=[42]))
        )
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "42" in details


# -- control -----------------------------------------------------------------------------


def test_raise_event(c: dt.TaskHubGrpcClient) -> None:
    iid = c.schedule_new_orchestration("wait_event")
    c.raise_orchestration_event(iid, "Approval", data={"ok": True})
    done = c.wait_for_orchestration_completion(iid, timeout=15)
    assert done is not None and json.loads(done.serialized_output or "") == {"ok": True}
    code, details = code_of(lambda: c.raise_orchestration_event(iid, "Approval", data=2))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "finished" in details


def test_terminate_recursive(c: dt.TaskHubGrpcClient) -> None:
    iid = c.schedule_new_orchestration("parent_of_waiter", instance_id="root")
    wait_until(status_is(c, "root-child", S.RUNNING), "the child to run")
    c.terminate_orchestration(iid, output="enough")
    done = c.wait_for_orchestration_completion(iid, timeout=15)
    assert done is not None and done.runtime_status == S.TERMINATED
    assert done.serialized_output == json.dumps("enough")
    child = c.wait_for_orchestration_completion("root-child", timeout=15)
    assert child is not None and child.runtime_status == S.TERMINATED


def test_terminate_not_recursive_leaves_the_child(c: dt.TaskHubGrpcClient) -> None:
    iid = c.schedule_new_orchestration("parent_of_waiter", instance_id="top")
    wait_until(status_is(c, "top-child", S.RUNNING), "the child to run")
    c.terminate_orchestration(iid, recursive=False)
    assert c.wait_for_orchestration_completion(iid, timeout=15) is not None
    child = c.get_orchestration_state("top-child")
    assert child is not None and child.runtime_status == S.RUNNING


def test_suspend_and_resume(c: dt.TaskHubGrpcClient) -> None:
    iid = c.schedule_new_orchestration("wait_event")
    c.wait_for_orchestration_start(iid, timeout=15)
    c.suspend_orchestration(iid, reason="hold on")
    wait_until(status_is(c, iid, S.SUSPENDED), "suspension")
    c.raise_orchestration_event(iid, "Approval", data=42)
    with pytest.raises(TimeoutError):
        c.wait_for_orchestration_completion(iid, timeout=0.5)
    c.resume_orchestration(iid, reason="go")
    done = c.wait_for_orchestration_completion(iid, timeout=15)
    assert done is not None and done.runtime_status == S.COMPLETED
    assert done.serialized_output == "42"


def test_restart_same_and_new_id(c: dt.TaskHubGrpcClient) -> None:
    iid = c.schedule_new_orchestration("chain", input="Rome")
    first = c.wait_for_orchestration_completion(iid, timeout=15)
    assert first is not None
    assert c.restart_orchestration(iid) == iid
    again = c.wait_for_orchestration_completion(iid, timeout=15)
    assert again is not None and again.runtime_status == S.COMPLETED
    assert again.serialized_output == first.serialized_output
    new_id = c.restart_orchestration(iid, restart_with_new_instance_id=True)
    assert new_id != iid
    other = c.wait_for_orchestration_completion(new_id, timeout=15)
    assert other is not None and other.serialized_input == json.dumps("Rome")
    running = c.schedule_new_orchestration("wait_event")
    c.wait_for_orchestration_start(running, timeout=15)
    code, details = code_of(lambda: c.restart_orchestration(running))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "Running" in details


def test_rewind(c: dt.TaskHubGrpcClient, tmp_path: Path) -> None:
    flag = tmp_path / "flag"
    iid = c.schedule_new_orchestration("rewindable", input=str(flag))
    failed = c.wait_for_orchestration_completion(iid, timeout=15)
    assert failed is not None and failed.runtime_status == S.FAILED
    assert failed.failure_details is not None and "missing" in failed.failure_details.message
    flag.write_text("ok")
    c.rewind_orchestration(iid, reason="flag is there now")
    done = wait_until(status_is(c, iid, S.COMPLETED), "the rewound run")
    assert json.loads(done.serialized_output or "") == ["Hello before!", "flag found"]
    code, details = code_of(lambda: c.rewind_orchestration(iid))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "Failed" in details


# -- queries and purges ------------------------------------------------------------------


def test_query_and_list_with_paging(c: dt.TaskHubGrpcClient, stub: Any) -> None:
    ids = [c.schedule_new_orchestration("chain", instance_id=f"q-{i}") for i in range(5)]
    for iid in ids:
        c.wait_for_orchestration_completion(iid, timeout=15)
    running = c.schedule_new_orchestration("wait_event", instance_id="other")
    c.wait_for_orchestration_start(running, timeout=15)
    page = stub.QueryInstances(
        pb.QueryInstancesRequest(
            query=pb.InstanceQuery(instanceIdPrefix=_sv("q-"), maxInstanceCount=2)
        )
    )
    assert len(page.orchestrationState) == 2 and page.continuationToken.value
    assert not page.orchestrationState[0].HasField("input")
    everything = c.get_all_orchestration_states(
        dt.OrchestrationQuery(
            instance_id_prefix="q-", max_instance_count=2, fetch_inputs_and_outputs=True
        )
    )
    assert sorted(s.instance_id for s in everything) == ids
    assert all(s.serialized_output for s in everything)
    by_status = c.get_all_orchestration_states(dt.OrchestrationQuery(runtime_status=[S.RUNNING]))
    assert [s.instance_id for s in by_status] == ["other"]
    seen: list[str] = []
    token: str | None = None
    pages = 0
    while True:
        listed = c.list_instance_ids(
            runtime_status=[S.COMPLETED], page_size=2, continuation_token=token
        )
        seen += listed.items
        pages += 1
        token = listed.continuation_token
        # The key names the page's last instance, as the protocol's name says.
        assert token is None or token.endswith(":" + listed.items[-1])
        if token is None:
            break
    assert sorted(seen) == ids and pages == 3
    since = c.list_instance_ids(completed_time_from=datetime.now(UTC) + timedelta(hours=1))
    assert since.items == []


def test_purge_by_id_recursive_and_by_filter(c: dt.TaskHubGrpcClient) -> None:
    iid = c.schedule_new_orchestration("parent_explicit_id", input="kid", instance_id="mum")
    c.wait_for_orchestration_completion(iid, timeout=15)
    assert c.get_orchestration_state("kid") is not None
    running = c.schedule_new_orchestration("wait_event")
    c.wait_for_orchestration_start(running, timeout=15)
    code, details = code_of(lambda: c.purge_orchestration(running))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "terminate" in details
    assert c.purge_orchestration(iid, recursive=True).deleted_instance_count == 2
    assert c.get_orchestration_state("kid") is None
    done = [c.schedule_new_orchestration("chain") for _ in range(3)]
    for d in done:
        c.wait_for_orchestration_completion(d, timeout=15)
    result = c.purge_orchestrations_by(runtime_status=[S.COMPLETED])
    assert result.deleted_instance_count == 3 and result.is_complete is True
    assert all(c.get_orchestration_state(d) is None for d in done)
    assert c.get_orchestration_state(running) is not None


def test_history_stream(c: dt.TaskHubGrpcClient) -> None:
    iid = c.schedule_new_orchestration("chain", input="Lima")
    c.wait_for_orchestration_completion(iid, timeout=15)
    events = c.get_orchestration_history(iid)
    kinds = [type(e).__name__ for e in events]
    assert kinds[0] in ("ExecutionStartedEvent", "OrchestratorStartedEvent")
    assert "TaskCompletedEvent" in kinds and kinds[-1] == "ExecutionCompletedEvent"


def test_a_reader_key_reads_but_does_not_write(
    sidecar: SidecarEnv, c: dt.TaskHubGrpcClient
) -> None:
    iid = c.schedule_new_orchestration("chain", input="Bern")
    c.wait_for_orchestration_completion(iid, timeout=15)
    now = datetime.now(UTC)
    reader = sidecar.call(manage.create_key(sidecar.store, "reader", None, now))
    r = sidecar.client(metadata=[("authorization", f"Bearer {reader.key}")])
    state = r.get_orchestration_state(iid)
    assert state is not None and state.runtime_status == S.COMPLETED
    for call in (
        lambda: r.schedule_new_orchestration("chain"),
        lambda: r.terminate_orchestration(iid),
        lambda: r.purge_orchestration(iid),
    ):
        code, details = code_of(call)
        assert code == grpc.StatusCode.PERMISSION_DENIED and "reader" in details
    assert c.get_orchestration_state(iid) is not None  # nothing was harmed


def test_durable_task_scheduler_sdk_selects_the_hub(sidecar: SidecarEnv) -> None:
    """``durabletask.azuremanaged`` (the Durable Task Scheduler's SDK) at
    ``http://127.0.0.1:PORT`` with a task hub name: the ``taskhub`` metadata picks the
    hub, here not the one the server defaults to."""
    from durabletask import task
    from durabletask.azuremanaged.client import DurableTaskSchedulerClient
    from durabletask.azuremanaged.worker import DurableTaskSchedulerWorker
    from durabletask.internal.grpc_interceptor import DefaultClientInterceptorImpl

    other = sidecar.hub + "dts"
    store = open_store(sidecar.store_url, hub=other)
    now = datetime.now(UTC)
    sidecar.call(store.open())
    try:
        work = sidecar.call(manage.create_key(store, "worker", None, now)).key
        write = sidecar.call(manage.create_key(store, "contributor", None, now)).key

        def bearer(key: str) -> Any:
            return [DefaultClientInterceptorImpl([("authorization", f"Bearer {key}")])]

        def double(ctx: task.ActivityContext, x: int) -> int:
            return 2 * x

        def doubler(ctx: task.OrchestrationContext, x: int) -> Any:
            return (yield ctx.call_activity(double, input=x))

        common: dict[str, Any] = {
            "host_address": f"http://{sidecar.address}",
            "taskhub": other,
            "token_credential": None,
            "secure_channel": False,
        }
        w = DurableTaskSchedulerWorker(**common, interceptors=bearer(work))
        w.add_orchestrator(doubler)
        w.add_activity(double)
        w.start()
        try:
            c = DurableTaskSchedulerClient(**common, interceptors=bearer(write))
            iid = c.schedule_new_orchestration(doubler, input=21)
            done = c.wait_for_orchestration_completion(iid, timeout=20)
            assert done is not None and done.serialized_output == "42"
            c.close()
        finally:
            w.stop()
        assert sidecar.call(store.get_instance(iid)) is not None
        assert sidecar.call(sidecar.store.get_instance(iid)) is None  # not the default hub
    finally:
        sidecar.call(store.close())
