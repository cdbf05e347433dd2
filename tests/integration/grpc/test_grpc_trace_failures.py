"""What the sidecar keeps of a worker's trace context and failure details, against real
``taskloom serve --grpc`` processes on SQLite and PostgreSQL: ``isNonRetriable`` kept
in history and instance rows and returned wherever failures are; the scheduling
action's ``parentTraceContext`` on the activity's work item; the orchestration's
``orchestrationTraceContext`` persisted, so another sidecar process echoes it back."""

from __future__ import annotations

from pathlib import Path

import pytest
import sdk_orchestrations as o
from durabletask import client as sdk_client
from durabletask import worker as sdk
from durabletask.internal import orchestrator_service_pb2 as pb
from google.protobuf import timestamp_pb2, wrappers_pb2
from grpc_worker_env import Sidecar, Stream, sdk_worker, serving

import taskloom as tl
from taskloom import history as h
from taskloom.models import Status

pytestmark = pytest.mark.timeout(120)

PARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
SPAN = "b7ad6b7169203331"
#: A span start with microseconds (what a datetime keeps of the SDK's nanoseconds).
SPAN_START = timestamp_pb2.Timestamp(seconds=1_780_000_000, nanos=123_456_000)


def _span() -> pb.OrchestrationTraceContext:
    return pb.OrchestrationTraceContext(
        spanID=wrappers_pb2.StringValue(value=SPAN), spanStartTime=SPAN_START
    )


def _fail(non_retriable: bool) -> pb.TaskFailureDetails:
    return pb.TaskFailureDetails(
        errorType="VersionMismatch", errorMessage="no", isNonRetriable=non_retriable
    )


def _history(sidecar: Sidecar, iid: str) -> list[pb.HistoryEvent]:
    channel, stub = sidecar.stub()
    try:
        chunks = stub.StreamInstanceHistory(
            pb.StreamInstanceHistoryRequest(instanceId=iid), metadata=sidecar.metadata("reader")
        )
        return [e for chunk in chunks for e in chunk.events]
    finally:
        channel.close()


def _state(sidecar: Sidecar, iid: str) -> pb.OrchestrationState:
    channel, stub = sidecar.stub()
    try:
        reply = stub.GetInstance(
            pb.GetInstanceRequest(instanceId=iid), metadata=sidecar.metadata("reader")
        )
        return reply.orchestrationState
    finally:
        channel.close()


def test_trace_context_and_non_retriable_failures_across_sidecar_processes(
    tmp_path: Path, store_url: str, hub: str
) -> None:
    args = ("--lease-for", "1.5")
    with tl.Client(store_url, hub=hub) as client:
        iid = client.start_new("raw", 1)
        with serving(tmp_path, store_url, hub, args=args) as first:
            stream = Stream(first)
            channel, stub = first.stub()
            try:
                item = stream.take("orchestratorRequest")
                assert not item.orchestratorRequest.HasField("orchestrationTraceContext")
                schedule = pb.OrchestratorAction(
                    id=1,
                    scheduleTask=pb.ScheduleTaskAction(
                        name="work", parentTraceContext=pb.TraceContext(traceParent=PARENT)
                    ),
                )
                stub.CompleteOrchestratorTask(
                    pb.OrchestratorResponse(
                        instanceId=iid,
                        completionToken=item.completionToken,
                        actions=[schedule],
                        orchestrationTraceContext=_span(),
                    ),
                    metadata=first.metadata(),
                )
                activity = stream.take("activityRequest")
                sent = activity.activityRequest.parentTraceContext
                assert (sent.traceParent, sent.spanID) == (PARENT, "00f067aa0ba902b7")
                stream.close()  # the next episode goes to the second sidecar
                stub.CompleteActivityTask(
                    pb.ActivityResponse(
                        instanceId=iid,
                        taskId=1,
                        failureDetails=_fail(True),
                        completionToken=activity.completionToken,
                    ),
                    metadata=first.metadata(),
                )
            finally:
                channel.close()
        # A new process on the same store: nothing of the first one's memory.
        with serving(tmp_path, store_url, hub, args=args) as second:
            stream = Stream(second)
            channel, stub = second.stub()
            try:
                item = stream.take("orchestratorRequest")
                request = item.orchestratorRequest
                assert request.orchestrationTraceContext == _span()
                [failed] = [e.taskFailed for e in request.newEvents if e.HasField("taskFailed")]
                assert failed.failureDetails.isNonRetriable
                done = pb.CompleteOrchestrationAction(
                    orchestrationStatus=pb.ORCHESTRATION_STATUS_FAILED,
                    failureDetails=_fail(True),
                )
                stub.CompleteOrchestratorTask(
                    pb.OrchestratorResponse(
                        instanceId=iid,
                        completionToken=item.completionToken,
                        actions=[pb.OrchestratorAction(id=2, completeOrchestration=done)],
                        orchestrationTraceContext=_span(),  # the same span: not recorded again
                    ),
                    metadata=second.metadata(),
                )
                state = client.wait_for_completion(iid, timeout=30)
                assert state.runtime_status is Status.FAILED
                assert state.failure_details is not None and state.failure_details.non_retriable
                assert _state(second, iid).failureDetails.isNonRetriable
                events = _history(second, iid)
                assert [e.taskFailed.failureDetails.isNonRetriable for e in events if
                        e.HasField("taskFailed")] == [True]  # fmt: skip
                [end] = [e.executionCompleted for e in events if e.HasField("executionCompleted")]
                assert end.failureDetails.isNonRetriable
            finally:
                stream.close()
                channel.close()
        spans = [
            e
            for e in client.get_history(iid)
            if isinstance(e, h.OrchestratorStarted) and e.span_id is not None
        ]
        assert [(e.span_id, e.span_started_at) for e in spans] == [
            (SPAN, SPAN_START.ToDatetime(tzinfo=spans[0].timestamp.tzinfo))
        ]


def test_an_sdk_workers_non_retriable_failure_is_kept(
    tmp_path: Path, store_url: str, hub: str
) -> None:
    # The SDK marks a version mismatch non-retriable when it fails the orchestration.
    strict = sdk.VersioningOptions(
        version="2.0",
        match_strategy=sdk.VersionMatchStrategy.STRICT,
        failure_strategy=sdk.VersionFailureStrategy.FAIL,
    )
    with (
        serving(tmp_path, store_url, hub) as sidecar,
        sdk_worker(sidecar, [o.child], versioning=strict),
    ):
        c = sdk_client.TaskHubGrpcClient(
            host_address=sidecar.address, metadata=sidecar.metadata("admin")
        )
        try:
            iid = c.schedule_new_orchestration(o.child, input=1, version="1.0")
            state = c.wait_for_orchestration_completion(iid, timeout=60)
            assert state is not None
            assert state.runtime_status == sdk_client.OrchestrationStatus.FAILED
            assert state.failure_details is not None
            assert state.failure_details.error_type == "VersionMismatch"
        finally:
            c.close()
        assert _state(sidecar, iid).failureDetails.isNonRetriable
        with tl.Client(store_url, hub=hub) as client:
            status = client.get_status(iid)
            assert status is not None and status.failure_details is not None
            assert status.failure_details.non_retriable
