"""CompleteOrchestratorTask, CompleteActivityTask and the Abandon RPCs.

A completion names its work item by the completion token GetWorkItems sent
(:mod:`taskloom.grpc.tokens`). An orchestration's completion is translated
(:mod:`taskloom.grpc.orchestrator_actions`) into the same :class:`EpisodeCommit` a
native episode makes (:func:`taskloom.runtime.episodes.commit_result`) and applied only
while the store still holds its lease; an activity's result goes to its instance's inbox
with :meth:`Store.complete_activities`, fenced the same way. A completion whose lease is
gone (it lapsed and another worker took the item, or it was completed already) is
ignored and answered OK, as the protocol expects: it can never change what is stored.
An abandon puts the item back at once.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from durabletask.internal import orchestrator_service_pb2 as pb

from taskloom import history as h
from taskloom.grpc import tokens
from taskloom.grpc.base import SidecarBase, rpc
from taskloom.grpc.batching import activity_results, episode_commits
from taskloom.grpc.client_convert import optional_text
from taskloom.grpc.convert import failure_from_pb, with_span
from taskloom.grpc.hubs import Hub, invalid
from taskloom.grpc.orchestrator_actions import execution_result, traced
from taskloom.grpc.rewind import rewind_action, rewind_commit
from taskloom.grpc.work_items import OrchestrationWork
from taskloom.models import Status
from taskloom.runtime.episodes import commit_result
from taskloom.storage.base import AT_ONCE, ActivityResult, EpisodeCommit, Message

log = logging.getLogger("taskloom.grpc")


class CompletionRpcs(SidecarBase):
    """Completions and abandons of orchestration and activity work items."""

    async def _token(self, context: Any, token_text: str, kind: str) -> tuple[Hub, tokens.Token]:
        caller = await self.caller(context, "work")
        if not token_text:
            raise invalid("completionToken is empty: send the token GetWorkItems gave the item")
        token = tokens.decode(token_text, kind)
        if token.hub != caller.hub.name:
            raise invalid(
                f"the completionToken belongs to hub {token.hub!r}, but the call is for hub "
                f"{caller.hub.name!r}: send the same 'taskhub' metadata as GetWorkItems"
            )
        return caller.hub, token

    @rpc
    async def CompleteOrchestratorTask(
        self, request: pb.OrchestratorResponse, context: Any
    ) -> pb.CompleteTaskResponse:
        hub, token = await self._token(context, request.completionToken, tokens.ORCHESTRATION)
        if request.instanceId and request.instanceId != token.item:
            raise invalid(
                f"instanceId {request.instanceId!r} does not match the completionToken's "
                f"instance {token.item!r}"
            )
        if request.isPartial:
            raise invalid(
                "partial (chunked) orchestrator responses are not supported: send all "
                "actions in one response"
            )
        dispatched = self.inflight.pop(request.completionToken)
        if dispatched is None:
            log.info("ignored a stale or repeated completion of %r", token.item)
            return pb.CompleteTaskResponse()
        work: OrchestrationWork = dispatched.payload
        now = self.clock.now()
        rewind = rewind_action(request)
        if work.rewinding or rewind is not None:
            if rewind is None:
                raise invalid(
                    f"instance {token.item!r} is being rewound: answer with a "
                    "rewindOrchestration action"
                )
            reason = next((e.reason for e in work.new if isinstance(e, h.ExecutionRewound)), None)
            commit = await rewind_commit(hub.store, work.episode, rewind, reason, now)
            return await self._commit(hub, token, commit, request)
        rec = work.episode.instance
        new = list(work.new)
        if request.HasField("orchestrationTraceContext"):
            # Kept in history, so any sidecar process sends it with the next episode.
            new = with_span(work.past, new, request.orchestrationTraceContext)
        translated = execution_result(
            request, _status_after(work), new, work.past, now, rec.execution_id
        )
        commit = commit_result(work.episode, work.past, translated.result, now)
        commit = traced(commit, translated)
        if translated.extra_messages:
            commit = dataclasses.replace(
                commit, messages=[*commit.messages, *translated.extra_messages]
            )
        return await self._commit(hub, token, commit, request)

    async def _commit(
        self,
        hub: Hub,
        token: tokens.Token,
        commit: EpisodeCommit,
        request: pb.OrchestratorResponse,
    ) -> pb.CompleteTaskResponse:
        applied = await episode_commits(hub, self.clock).submit(commit)
        if not applied:
            log.info("ignored the completion of %r: its lease was lost", token.item)
        return pb.CompleteTaskResponse()

    @rpc
    async def CompleteActivityTask(
        self, request: pb.ActivityResponse, context: Any
    ) -> pb.CompleteTaskResponse:
        hub, token = await self._token(context, request.completionToken, tokens.ACTIVITY)
        self.inflight.pop(request.completionToken)
        instance_id, execution_id, task_id = _activity_detail(token)
        now = self.clock.now()
        event: h.HistoryEvent
        if request.HasField("failureDetails"):
            failure = failure_from_pb(request.failureDetails)
            event = h.TaskFailed(now, task_scheduled_id=task_id, failure=failure)
        else:
            event = h.TaskCompleted(
                now, task_scheduled_id=task_id, result=optional_text(request, "result")
            )
        message = Message(instance_id, event, AT_ONCE, execution_id)
        result = ActivityResult(int(token.item), token.lease_token, message)
        applied = await activity_results(hub, self.clock).submit(result)
        if not applied:
            log.info("ignored a stale or repeated result of activity %s", token.item)
        return pb.CompleteTaskResponse()

    @rpc
    async def AbandonTaskOrchestratorWorkItem(
        self, request: pb.AbandonOrchestrationTaskRequest, context: Any
    ) -> pb.AbandonOrchestrationTaskResponse:
        hub, token = await self._token(context, request.completionToken, tokens.ORCHESTRATION)
        self.inflight.pop(request.completionToken)
        await hub.store.abandon_episode(token.item, token.lease_token)
        return pb.AbandonOrchestrationTaskResponse()

    @rpc
    async def AbandonTaskActivityWorkItem(
        self, request: pb.AbandonActivityTaskRequest, context: Any
    ) -> pb.AbandonActivityTaskResponse:
        hub, token = await self._token(context, request.completionToken, tokens.ACTIVITY)
        self.inflight.pop(request.completionToken)
        # A lease renewed for no time at all ends now: the item is visible again at once.
        await hub.store.renew_activities(
            [(int(token.item), token.lease_token)], self.clock.now(), 0
        )
        return pb.AbandonActivityTaskResponse()


def _status_after(work: OrchestrationWork) -> Status:
    """The instance's status after the new events, unless the worker completes it."""
    prior = work.episode.instance.status
    # Started now, continued as new, rewound, or running; a suspension lasts until resumed.
    status = Status.SUSPENDED if prior is Status.SUSPENDED else Status.RUNNING
    for event in work.new:
        if isinstance(event, h.ExecutionSuspended):
            status = Status.SUSPENDED
        elif isinstance(event, h.ExecutionResumed):
            status = Status.RUNNING
    return status


def _activity_detail(token: tokens.Token) -> tuple[str, str, int]:
    try:
        instance_id, execution_id, task_id = token.detail
        if not token.item.isdigit():
            raise ValueError(token.item)
    except ValueError:
        raise invalid(
            "malformed activity completionToken: send back the token of the activity "
            "work item exactly as GetWorkItems sent it"
        ) from None
    if not isinstance(instance_id, str) or not isinstance(execution_id, str):
        raise invalid("malformed activity completionToken: it names no instance")
    if not isinstance(task_id, int):
        raise invalid("malformed activity completionToken: it names no task id")
    return instance_id, execution_id, task_id
