"""The work-item protocol spoken directly (no SDK worker), against a real ``taskloom
serve --grpc``: stale and repeated completions, tokens across reconnects, items of a dead
stream re-dispatched after the lease, abandons, malformed requests and keys."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from durabletask.internal import orchestrator_service_pb2 as pb
from google.protobuf import empty_pb2, wrappers_pb2
from grpc_worker_env import Sidecar, Stream, serving

import taskloom as tl
from taskloom.models import Status

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def sidecar(tmp_path: Path, store_url: str, hub: str) -> Iterator[Sidecar]:
    with serving(tmp_path, store_url, hub, args=("--lease-for", "1.5")) as running:
        yield running


@pytest.fixture
def client(store_url: str, hub: str) -> Iterator[tl.Client]:
    with tl.Client(store_url, hub=hub) as c:
        yield c


def _complete(token: str, iid: str, result: str = '"done"') -> pb.OrchestratorResponse:
    done = pb.CompleteOrchestrationAction(
        orchestrationStatus=pb.ORCHESTRATION_STATUS_COMPLETED,
        result=wrappers_pb2.StringValue(value=result),
    )
    return pb.OrchestratorResponse(
        instanceId=iid,
        completionToken=token,
        actions=[pb.OrchestratorAction(id=1, completeOrchestration=done)],
    )


def test_stale_repeated_and_reconnected_completions(sidecar: Sidecar, client: tl.Client) -> None:
    iid = client.start_new("raw", 1)
    first = Stream(sidecar)
    item1 = first.take("orchestratorRequest")
    assert item1.orchestratorRequest.instanceId == iid
    first.close()  # the worker dies holding the item
    second = Stream(sidecar)
    channel, stub = sidecar.stub()
    try:
        # After the lease lapses the item goes to the live stream, under a new token.
        item2 = second.take("orchestratorRequest")
        assert item2.orchestratorRequest.instanceId == iid
        assert item2.completionToken != item1.completionToken
        meta = sidecar.metadata()
        # The dead stream's completion comes too late: ignored, nothing stored.
        stub.CompleteOrchestratorTask(
            _complete(item1.completionToken, iid, '"stale"'), metadata=meta
        )
        assert client.get_history(iid) == []
        stub.CompleteOrchestratorTask(_complete(item2.completionToken, iid), metadata=meta)
        state = client.wait_for_completion(iid, timeout=30)
        assert (state.runtime_status, state.output) == (Status.COMPLETED, "done")
        history = client.get_history(iid)
        # A repeat of an applied completion is ignored too.
        stub.CompleteOrchestratorTask(
            _complete(item2.completionToken, iid, '"again"'), metadata=meta
        )
        assert client.get_history(iid) == history
        assert client.get_status(iid).output == "done"  # type: ignore[union-attr]
    finally:
        second.close()
        channel.close()


def test_a_token_stays_valid_on_a_new_connection(tmp_path: Path, store_url: str, hub: str) -> None:
    with serving(tmp_path, store_url, hub) as sidecar, tl.Client(store_url, hub=hub) as client:
        iid = client.start_new("raw", 2)
        stream = Stream(sidecar)
        item = stream.take("orchestratorRequest")
        stream.close()
        channel, stub = sidecar.stub()  # the worker reconnected
        try:
            stub.CompleteOrchestratorTask(
                _complete(item.completionToken, iid), metadata=sidecar.metadata()
            )
        finally:
            channel.close()
        state = client.wait_for_completion(iid, timeout=30)
        assert state.runtime_status is Status.COMPLETED


def test_abandoned_items_come_back_at_once(tmp_path: Path, store_url: str, hub: str) -> None:
    with serving(tmp_path, store_url, hub) as sidecar, tl.Client(store_url, hub=hub) as client:
        iid = client.start_new("raw", 3)
        stream = Stream(sidecar)
        channel, stub = sidecar.stub()
        meta = sidecar.metadata()
        try:
            item = stream.take("orchestratorRequest")
            stub.AbandonTaskOrchestratorWorkItem(
                pb.AbandonOrchestrationTaskRequest(completionToken=item.completionToken),
                metadata=meta,
            )
            # Back well before the 30 s lease could lapse.
            again = stream.take("orchestratorRequest", timeout=10)
            schedule = pb.OrchestratorAction(
                id=1,
                scheduleTask=pb.ScheduleTaskAction(
                    name="work", input=wrappers_pb2.StringValue(value='"x"')
                ),
            )
            stub.CompleteOrchestratorTask(
                pb.OrchestratorResponse(
                    instanceId=iid, completionToken=again.completionToken, actions=[schedule]
                ),
                metadata=meta,
            )
            activity = stream.take("activityRequest")
            assert (activity.activityRequest.name, activity.activityRequest.taskId) == ("work", 1)
            assert activity.activityRequest.input.value == '"x"'
            stub.AbandonTaskActivityWorkItem(
                pb.AbandonActivityTaskRequest(completionToken=activity.completionToken),
                metadata=meta,
            )
            retry = stream.take("activityRequest", timeout=10)
            stub.CompleteActivityTask(
                pb.ActivityResponse(
                    instanceId=iid,
                    taskId=1,
                    result=wrappers_pb2.StringValue(value='"worked"'),
                    completionToken=retry.completionToken,
                ),
                metadata=meta,
            )
            # The abandoned attempt's late result is refused by the store's fence.
            stub.CompleteActivityTask(
                pb.ActivityResponse(
                    instanceId=iid,
                    taskId=1,
                    result=wrappers_pb2.StringValue(value='"late"'),
                    completionToken=activity.completionToken,
                ),
                metadata=meta,
            )
            resumed = stream.take("orchestratorRequest")
            new = resumed.orchestratorRequest.newEvents
            results = [e.taskCompleted.result.value for e in new if e.HasField("taskCompleted")]
            assert results == ['"worked"']
            assert new[0].HasField("orchestratorStarted")
            past = resumed.orchestratorRequest.pastEvents
            assert [e.WhichOneof("eventType") for e in past] == [
                "orchestratorStarted",
                "executionStarted",
                "taskScheduled",
            ]
        finally:
            stream.close()
            channel.close()


def _code(call: Any) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    code: grpc.StatusCode = caught.value.code()
    return code


def test_malformed_completions_are_refused_and_harm_nothing(
    sidecar: Sidecar, client: tl.Client
) -> None:
    iid = client.start_new("raw", 4)
    stream = Stream(sidecar)
    channel, stub = sidecar.stub()
    meta = sidecar.metadata()
    try:
        item = stream.take("orchestratorRequest")
        token = item.completionToken
        complete = stub.CompleteOrchestratorTask
        assert _code(lambda: complete(_complete("garbage", iid), metadata=meta)) is (
            grpc.StatusCode.INVALID_ARGUMENT
        )
        other_hub = json.dumps([1, "elsewhere", *json.loads(token)[2:]])
        assert _code(lambda: complete(_complete(other_hub, iid), metadata=meta)) is (
            grpc.StatusCode.INVALID_ARGUMENT
        )
        assert _code(lambda: complete(_complete(token, "someone-else"), metadata=meta)) is (
            grpc.StatusCode.INVALID_ARGUMENT
        )
        no_time = pb.OrchestratorAction(id=1, createTimer=pb.CreateTimerAction())
        bad = pb.OrchestratorResponse(instanceId=iid, completionToken=token, actions=[no_time])
        assert _code(lambda: complete(bad, metadata=meta)) is grpc.StatusCode.INVALID_ARGUMENT
        activity_token = stub.CompleteActivityTask
        assert _code(
            lambda: activity_token(pb.ActivityResponse(completionToken=token), metadata=meta)
        ) is (grpc.StatusCode.INVALID_ARGUMENT)
        # Nothing was stored; the item comes back once its lease lapses and completes.
        assert client.get_history(iid) == []
        assert client.get_status(iid).runtime_status is Status.PENDING  # type: ignore[union-attr]
        again = stream.take("orchestratorRequest")
        complete(_complete(again.completionToken, iid), metadata=meta)
        assert client.wait_for_completion(iid, timeout=30).runtime_status is Status.COMPLETED
    finally:
        stream.close()
        channel.close()


def test_keys_and_roles(sidecar: Sidecar) -> None:
    channel, stub = sidecar.stub()
    try:
        stub.Hello(empty_pb2.Empty(), metadata=sidecar.metadata("reader"))
        for metadata, code in (
            (sidecar.metadata("reader"), grpc.StatusCode.PERMISSION_DENIED),
            (sidecar.metadata("admin"), grpc.StatusCode.PERMISSION_DENIED),
            ([("authorization", "Bearer tlk_not_a_key")], grpc.StatusCode.UNAUTHENTICATED),
            ([], grpc.StatusCode.UNAUTHENTICATED),
        ):
            call = stub.GetWorkItems(pb.GetWorkItemsRequest(), metadata=metadata)
            with pytest.raises(grpc.RpcError) as caught:
                next(iter(call))
            assert caught.value.code() is code, caught.value.details()
            assert caught.value.details()
        assert _code(lambda: stub.Hello(empty_pb2.Empty())) is grpc.StatusCode.UNAUTHENTICATED
    finally:
        channel.close()


def test_a_cancelled_stream_takes_no_more_work(tmp_path: Path, store_url: str, hub: str) -> None:
    """Work that arrives after a worker cancelled its stream goes to a live stream at
    once, never to the dead one (whose lease would hold it for ``--lease-for``)."""
    with serving(tmp_path, store_url, hub) as sidecar, tl.Client(store_url, hub=hub) as client:
        dead = [Stream(sidecar) for _ in range(3)]
        for stream in dead:
            stream.close()
        live = Stream(sidecar)
        try:
            ids = {client.start_new("raw", n) for n in range(5)}
            # Well within the 30 s lease a dead stream would have held them for.
            got = {live.take("orchestratorRequest", 20).orchestratorRequest.instanceId for _ in ids}
            assert got == ids
        finally:
            live.close()
