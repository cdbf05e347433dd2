"""Entities over gRPC on SQLite and PostgreSQL: SDK entities run by an SDK worker,
driven by the SDK client (signals, reads, queries, cleaning) and by native taskloom
orchestrations (calls with results and failures, critical sections over SDK entities);
entity signals and orchestration starts from an SDK entity; a duplicate completion."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import grpc
import pytest
from durabletask import entities as dte
from durabletask import task
from durabletask.client import EntityQuery, OrchestrationStatus, TaskHubGrpcClient
from durabletask.internal import orchestrator_service_pb2 as pb
from grpc_client_env import SidecarEnv

import taskloom as tl

T = TypeVar("T")

native = tl.App("grpc-entity-tests")


@native.orchestrator
def calls_counter(ctx: tl.OrchestrationContext, key: str) -> Any:
    target = f"@counter@{key}"
    yield ctx.call_entity(target, "add", 5)
    return (yield ctx.call_entity(target, "get"))


@native.orchestrator
def calls_failing(ctx: tl.OrchestrationContext) -> Any:
    try:
        yield ctx.call_entity("@counter@bad", "explode")
    except tl.TaskFailedError as exc:
        return {"caught": exc.details.message}
    return "unreachable"


@native.orchestrator
def transfer(ctx: tl.OrchestrationContext, spec: dict[str, Any]) -> Any:
    a, b = f"@counter@{spec['from']}", f"@counter@{spec['to']}"
    with (yield ctx.lock_entities([a, b])):
        have = yield ctx.call_entity(a, "get")
        yield ctx.call_entity(a, "add", -spec["amount"])
        yield ctx.call_entity(b, "add", spec["amount"])
    return have


@native.orchestrator
def greet(ctx: tl.OrchestrationContext, name: str) -> Any:
    return f"hi {name}"
    yield  # a generator


@native.entity
def tally(ctx: tl.EntityContext) -> Any:
    """A native entity the SDK orchestration calls."""
    if ctx.operation_name == "add":
        ctx.set_state(ctx.get_state(0) + ctx.get_input())
    return ctx.get_state(0)


def sdk_transfer(ctx: task.OrchestrationContext, spec: dict[str, Any]) -> Any:
    """An SDK orchestration: a critical section over two SDK entities, a signal, and a
    call to a native entity."""
    a = dte.EntityInstanceId("counter", spec["from"])
    b = dte.EntityInstanceId("counter", spec["to"])
    with (yield ctx.lock_entities([a, b])):
        have = yield ctx.call_entity(a, "get")
        yield ctx.call_entity(a, "add", -spec["amount"])
        yield ctx.call_entity(b, "add", spec["amount"])
    ctx.signal_entity(dte.EntityInstanceId("tally", "t"), "add", 1)
    with contextlib.suppress(task.TaskFailedError):
        yield ctx.call_entity(a, "explode")
    counted = yield ctx.call_entity(dte.EntityInstanceId("tally", "t"), "get")
    return {"had": have, "counted": counted}


def counter(ctx: dte.EntityContext, value: Any) -> Any:
    """An SDK entity: add, get, explode, forward (signal another, start an orchestration),
    reset (delete its state)."""
    state = ctx.get_state(int, 0)
    op = ctx.operation
    if op == "add":
        ctx.set_state(state + value)
    elif op == "get":
        return state
    elif op == "explode":
        raise ValueError("counter exploded")
    elif op == "forward":
        ctx.signal_entity(dte.EntityInstanceId("counter", value["to"]), "add", value["n"])
        ctx.schedule_new_orchestration("greet", input="entity", instance_id=value["start"])
        ctx.set_state(state)
    elif op == "reset":
        ctx.set_state(None)
    return None


@pytest.fixture
def sidecar(store_url: str, hub: str) -> Iterator[SidecarEnv]:
    env = SidecarEnv(store_url, hub, native_app=native, registered_only=True).start()
    try:
        w = env.sdk_worker()
        w.add_entity(counter)
        w.add_orchestrator(sdk_transfer)
        w.use_work_item_filters()  # take only the entity; the native worker runs the rest
        w.start()
        yield env
    finally:
        env.stop()


@pytest.fixture
def c(sidecar: SidecarEnv) -> TaskHubGrpcClient:
    return sidecar.client()


def wait_until(probe: Callable[[], T | None], what: str, timeout: float = 15.0) -> T:
    deadline = time.monotonic() + timeout
    while True:
        found = probe()
        if found:
            return found
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)


def state_is(c: TaskHubGrpcClient, key: str, value: int) -> Callable[[], bool]:
    def probe() -> bool:
        found = c.get_entity(dte.EntityInstanceId("counter", key))
        return found is not None and found.get_state(int) == value

    return probe


def test_signals_get_query_and_clean(c: TaskHubGrpcClient) -> None:
    e = dte.EntityInstanceId("counter", "c1")
    c.signal_entity(e, "add", 3)
    c.signal_entity(e, "add", 4, signal_time=datetime.now(UTC) + timedelta(milliseconds=200))
    c.signal_entity(dte.EntityInstanceId("counter", "c2"), "add", 1)
    wait_until(state_is(c, "c1", 7), "c1 == 7")
    wait_until(state_is(c, "c2", 1), "c2 == 1")
    found = c.get_entity(e)
    assert found is not None and found.get_locked_by() is None
    bare = c.get_entity(e, include_state=False)
    assert bare is not None
    listed = c.get_all_entities(EntityQuery(instance_id_starts_with="@counter@", page_size=1))
    assert sorted(str(m.id) for m in listed) == ["@counter@c1", "@counter@c2"]
    assert sorted(m.get_state(int) for m in listed) == [1, 7]
    assert c.get_entity(dte.EntityInstanceId("counter", "never")) is None
    c.signal_entity(dte.EntityInstanceId("counter", "c2"), "reset")
    wait_until(lambda: c.get_entity(dte.EntityInstanceId("counter", "c2")) is None, "reset")
    cleaned = c.clean_entity_storage()
    assert cleaned.empty_entities_removed == 1
    assert [str(m.id) for m in c.get_all_entities()] == ["@counter@c1"]


def test_native_orchestration_calls_sdk_entity(c: TaskHubGrpcClient) -> None:
    iid = c.schedule_new_orchestration("calls_counter", input="k1")
    done = c.wait_for_orchestration_completion(iid, timeout=20)
    assert done is not None and done.runtime_status == OrchestrationStatus.COMPLETED
    assert done.serialized_output == "5"
    failing = c.schedule_new_orchestration("calls_failing")
    done = c.wait_for_orchestration_completion(failing, timeout=20)
    assert done is not None and done.runtime_status == OrchestrationStatus.COMPLETED
    assert json.loads(done.serialized_output or "") == {"caught": "counter exploded"}


def test_critical_sections_over_sdk_entities(c: TaskHubGrpcClient, sidecar: SidecarEnv) -> None:
    c.signal_entity(dte.EntityInstanceId("counter", "a"), "add", 100)
    c.signal_entity(dte.EntityInstanceId("counter", "b"), "add", 100)
    wait_until(state_is(c, "b", 100), "b funded")
    specs = [{"from": "a", "to": "b", "amount": 10}, {"from": "b", "to": "a", "amount": 30}] * 3
    ids = [c.schedule_new_orchestration("transfer", input=s) for s in specs]
    for iid in ids:
        done = c.wait_for_orchestration_completion(iid, timeout=30)
        assert done is not None and done.runtime_status == OrchestrationStatus.COMPLETED
    wait_until(state_is(c, "a", 160), "a == 160")
    wait_until(state_is(c, "b", 40), "b == 40")
    # The last release reaches the entities after the orchestration finished. (The SDK's
    # get_locked_by() parses the holder as an entity id, so read the raw field.)
    with grpc.insecure_channel(sidecar.address) as channel:
        stub = sidecar.stub(channel)

        def unlocked() -> bool:
            got = stub.GetEntity(pb.GetEntityRequest(instanceId="@counter@a"))
            return got.exists and not got.entity.HasField("lockedBy")

        wait_until(unlocked, "the locks released")


def test_sdk_orchestration_with_sdk_and_native_entities(c: TaskHubGrpcClient) -> None:
    c.signal_entity(dte.EntityInstanceId("counter", "x"), "add", 50)
    c.signal_entity(dte.EntityInstanceId("counter", "y"), "add", 50)
    wait_until(state_is(c, "y", 50), "y funded")
    specs = [{"from": "x", "to": "y", "amount": 5}, {"from": "y", "to": "x", "amount": 20}] * 2
    ids = [c.schedule_new_orchestration(sdk_transfer, input=s) for s in specs]
    counts = []
    for iid in ids:
        done = c.wait_for_orchestration_completion(iid, timeout=30)
        assert done is not None and done.runtime_status == OrchestrationStatus.COMPLETED, done
        counts.append(json.loads(done.serialized_output or "")["counted"])
    assert max(counts) <= 4
    wait_until(state_is(c, "x", 80), "x == 80")
    wait_until(state_is(c, "y", 20), "y == 20")
    kinds = [type(e).__name__ for e in c.get_orchestration_history(ids[0])]
    assert "EntityLockRequestedEvent" in kinds and "EntityLockGrantedEvent" in kinds
    assert "EntityOperationCalledEvent" in kinds and "EntityOperationCompletedEvent" in kinds
    assert "EntityOperationFailedEvent" in kinds and "EntityUnlockSentEvent" in kinds


def test_entity_signals_and_starts(c: TaskHubGrpcClient) -> None:
    spec = {"to": "target", "n": 9, "start": "from-entity"}
    c.signal_entity(dte.EntityInstanceId("counter", "src"), "forward", spec)
    wait_until(state_is(c, "target", 9), "the forwarded signal")
    done = c.wait_for_orchestration_completion("from-entity", timeout=20)
    assert done is not None and done.serialized_output == json.dumps("hi entity")


def test_bad_entity_requests(sidecar: SidecarEnv) -> None:
    with grpc.insecure_channel(sidecar.address) as channel:
        stub = sidecar.stub(channel)
        for call in (
            lambda: stub.SignalEntity(pb.SignalEntityRequest(instanceId="counter", name="add")),
            lambda: stub.SignalEntity(pb.SignalEntityRequest(instanceId="@counter@x")),
            lambda: stub.GetEntity(pb.GetEntityRequest(instanceId="nope")),
        ):
            with pytest.raises(grpc.RpcError) as caught:
                call()
            err: Any = caught.value
            assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, err.details()


def test_duplicate_and_stale_completions_are_ignored(store_url: str, hub: str) -> None:
    env = SidecarEnv(store_url, hub, native_worker=False).start()
    try:
        with grpc.insecure_channel(env.address) as channel:
            stub = env.stub(channel)
            worker = _WorkerStub(channel, env.worker_metadata)
            stub.SignalEntity(
                pb.SignalEntityRequest(
                    instanceId="@raw@k", name="set", input=_sv("1"), requestId="r1"
                )
            )
            item = worker.next_entity_item()
            assert [
                e.entityOperationSignaled.operation for e in item.entityRequestV2.operationRequests
            ] == ["set"]
            done = pb.EntityBatchResult(
                completionToken=item.completionToken,
                entityState=_sv("41"),
                results=[pb.OperationResult(success=pb.OperationResultSuccess())],
            )
            worker.complete(done)
            again = pb.EntityBatchResult()
            again.CopyFrom(done)
            again.entityState.value = "999"
            worker.complete(again)  # a duplicate: ignored
            got = stub.GetEntity(pb.GetEntityRequest(instanceId="@raw@k", includeState=True))
            assert got.exists and got.entity.serializedState.value == "41"
            with pytest.raises(grpc.RpcError) as caught:
                worker.complete(pb.EntityBatchResult(completionToken="not a token"))
            err: Any = caught.value
            assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
            worker.close()
    finally:
        env.stop()


def test_abandoned_and_lapsed_entity_batches_come_back(store_url: str, hub: str) -> None:
    """An abandoned batch is sent again at once; a batch whose stream ended is sent
    again once its lease lapses (an open stream renews it), and the completion of the
    lapsed one is then ignored."""
    env = SidecarEnv(store_url, hub, native_worker=False, lease_for=1.0).start()
    try:
        with grpc.insecure_channel(env.address) as channel:
            stub = env.stub(channel)
            worker = _WorkerStub(channel, env.worker_metadata)
            signal = pb.SignalEntityRequest(instanceId="@raw@k", name="set", requestId="r2")
            stub.SignalEntity(signal)
            first = worker.next_entity_item()
            worker.stub.AbandonTaskEntityWorkItem(
                pb.AbandonEntityTaskRequest(completionToken=first.completionToken),
                metadata=worker.metadata,
            )
            second = worker.next_entity_item()  # at once: no lease to wait out
            assert second.completionToken != first.completionToken
            worker.close()  # gone with the batch: its lease is no longer renewed
            worker = _WorkerStub(channel, env.worker_metadata)
            third = worker.next_entity_item()  # once the lease lapsed
            assert third.completionToken != second.completionToken

            def result(item: Any, state: str) -> Any:
                return pb.EntityBatchResult(
                    completionToken=item.completionToken,
                    entityState=_sv(state),
                    results=[pb.OperationResult(success=pb.OperationResultSuccess())],
                )

            worker.complete(result(second, "1"))  # lapsed: refused by the lease's fence
            worker.complete(result(third, "3"))
            got = stub.GetEntity(pb.GetEntityRequest(instanceId="@raw@k", includeState=True))
            assert got.entity.serializedState.value == "3"
            worker.close()
    finally:
        env.stop()


def _sv(value: str) -> Any:
    from google.protobuf import wrappers_pb2

    return wrappers_pb2.StringValue(value=value)


class _WorkerStub:
    """A hand-driven worker: one GetWorkItems stream taking entity ``raw`` only."""

    def __init__(self, channel: grpc.Channel, metadata: list[tuple[str, str]]) -> None:
        from durabletask.internal import orchestrator_service_pb2_grpc as pb_grpc

        self.stub = pb_grpc.TaskHubSidecarServiceStub(channel)
        self.metadata = metadata
        request = pb.GetWorkItemsRequest(
            maxConcurrentEntityWorkItems=1,
            workItemFilters=pb.WorkItemFilters(entities=[pb.EntityFilter(name="raw")]),
        )
        self.stream = self.stub.GetWorkItems(request, metadata=metadata)

    def next_entity_item(self) -> Any:
        for item in self.stream:
            if item.HasField("entityRequestV2"):
                return item
        raise AssertionError("the work item stream ended")

    def complete(self, result: Any) -> None:
        self.stub.CompleteEntityTask(result, metadata=self.metadata)

    def close(self) -> None:
        self.stream.cancel()
