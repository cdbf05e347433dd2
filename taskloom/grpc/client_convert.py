"""Protobuf forms of what the client RPCs return: instance states, statuses, failures,
timestamps, and the request fields they read (optional strings, times, statuses).

Payloads stay the JSON text taskloom stores (the SDKs' ``StringValue`` payloads are the
same JSON), so nothing is decoded or re-encoded on the way through.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from durabletask.internal import orchestrator_service_pb2 as pb
from google.protobuf import timestamp_pb2, wrappers_pb2

from taskloom.grpc.hubs import invalid
from taskloom.models import FailureDetails, Status
from taskloom.storage.base import InstanceRecord

STATUS_TO_PB: dict[Status, int] = {
    Status.PENDING: pb.ORCHESTRATION_STATUS_PENDING,
    Status.RUNNING: pb.ORCHESTRATION_STATUS_RUNNING,
    Status.COMPLETED: pb.ORCHESTRATION_STATUS_COMPLETED,
    Status.FAILED: pb.ORCHESTRATION_STATUS_FAILED,
    Status.TERMINATED: pb.ORCHESTRATION_STATUS_TERMINATED,
    Status.SUSPENDED: pb.ORCHESTRATION_STATUS_SUSPENDED,
    Status.CONTINUED_AS_NEW: pb.ORCHESTRATION_STATUS_CONTINUED_AS_NEW,
}
STATUS_FROM_PB: dict[int, Status] = {v: k for k, v in STATUS_TO_PB.items()}
#: ``ORCHESTRATION_STATUS_CANCELED`` exists in the protocol but no instance ever has it.
_CANCELED = 4


def timestamp(moment: datetime) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(moment.astimezone(UTC))
    return ts


def moment(ts: timestamp_pb2.Timestamp) -> datetime:
    """An aware UTC datetime from a protobuf timestamp."""
    found: datetime = ts.ToDatetime(tzinfo=UTC)
    return found


def optional_time(message: object, field: str) -> datetime | None:
    """The datetime in timestamp ``field`` of ``message``, or None when it is unset."""
    if not message.HasField(field):  # type: ignore[attr-defined]
        return None
    return moment(getattr(message, field))


def text(value: str | None) -> wrappers_pb2.StringValue | None:
    return None if value is None else wrappers_pb2.StringValue(value=value)


def optional_text(message: object, field: str) -> str | None:
    """The string in wrapper ``field`` of ``message``, or None when it is unset."""
    if not message.HasField(field):  # type: ignore[attr-defined]
        return None
    value: str = getattr(message, field).value
    return value


def statuses(values: Iterable[int]) -> frozenset[Status] | None:
    """Taskloom statuses of a request's ``runtimeStatus`` list (None when empty)."""
    wanted = list(values)
    if not wanted:
        return None
    found: set[Status] = set()
    for value in wanted:
        if value == _CANCELED:
            continue  # no instance is ever Canceled: filtering on it matches nothing
        status = STATUS_FROM_PB.get(value)
        if status is None:
            names = ", ".join(pb.OrchestrationStatus.Name(v) for v in STATUS_TO_PB.values())
            raise invalid(f"unknown runtime status {value} in runtimeStatus; use one of {names}")
        found.add(status)
    return frozenset(found)


def failure(details: FailureDetails) -> pb.TaskFailureDetails:
    out = pb.TaskFailureDetails(
        errorType=details.error_type,
        errorMessage=details.message,
        stackTrace=text(details.stack_trace),
        isNonRetriable=details.non_retriable,
    )
    if details.inner is not None:
        out.innerFailure.CopyFrom(failure(details.inner))
    return out


def instance_state(
    rec: InstanceRecord, with_payloads: bool, tags: dict[str, str] | None = None
) -> pb.OrchestrationState:
    """``rec`` as the protocol's ``OrchestrationState``; inputs and outputs only with
    ``with_payloads`` (custom status, failure details and ``tags``, the start's, always,
    as the SDK expects)."""
    state = pb.OrchestrationState(
        instanceId=rec.instance_id,
        name=rec.name,
        version=text(rec.version),
        orchestrationStatus=STATUS_TO_PB[rec.status],  # type: ignore[arg-type]
        createdTimestamp=timestamp(rec.created_at),
        lastUpdatedTimestamp=timestamp(rec.updated_at),
        customStatus=text(rec.custom_status),
        executionId=text(rec.execution_id),
        parentInstanceId=text(rec.parent_instance_id),
    )
    if rec.scheduled_start_at is not None:
        state.scheduledStartTimestamp.CopyFrom(timestamp(rec.scheduled_start_at))
    if rec.completed_at is not None:
        state.completedTimestamp.CopyFrom(timestamp(rec.completed_at))
    if rec.failure is not None:
        state.failureDetails.CopyFrom(failure(rec.failure))
    if tags:
        state.tags.update(tags)
    if with_payloads:
        if rec.input is not None:
            state.input.value = rec.input
        if rec.output is not None:
            state.output.value = rec.output
    return state
