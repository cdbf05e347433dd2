"""Sub-orchestrations: default and explicit ids, results, failure propagation."""

from __future__ import annotations

from envs import Env

import taskloom as tl

DONE = 20.0


async def test_sub_orchestration_default_id(env: Env) -> None:
    iid = await env.client.start_new("parent_default_id", instance_id="parent-1")
    state = await env.client.wait_for_completion(iid, timeout=DONE)
    assert state.runtime_status is tl.Status.COMPLETED, state.failure_details
    out = state.output
    assert out["result"] == 9
    assert out["parent"] == "parent-1"
    child_id = out["id"]
    assert child_id != "parent-1" and child_id.startswith("parent-1")
    child = await env.client.get_status(child_id)
    assert child is not None
    assert child.runtime_status is tl.Status.COMPLETED
    assert child.name == "child"
    assert child.parent_instance_id == "parent-1"
    assert child.output == out
    kinds = [e.kind for e in await env.client.get_history(iid)]
    assert "SubOrchestrationInstanceCreated" in kinds
    assert "SubOrchestrationInstanceCompleted" in kinds


async def test_sub_orchestration_explicit_id(env: Env) -> None:
    iid = await env.client.start_new("parent_explicit_id", "my-child")
    state = await env.client.wait_for_completion(iid, timeout=DONE)
    assert state.runtime_status is tl.Status.COMPLETED, state.failure_details
    assert state.output == {"id": "my-child", "parent": iid, "result": 16}
    child = await env.client.wait_for_completion("my-child", timeout=DONE)
    assert child.runtime_status is tl.Status.COMPLETED
    assert child.input == 4


async def test_sub_orchestration_failure_caught_by_parent(env: Env) -> None:
    iid = await env.client.start_new("parent_catches_child")
    state = await env.client.wait_for_completion(iid, timeout=DONE)
    assert state.runtime_status is tl.Status.COMPLETED, state.failure_details
    assert "child exploded" in state.output["details"]
    assert "failing_child" in state.output["caught"]


async def test_sub_orchestration_failure_fails_parent(env: Env) -> None:
    iid = await env.client.start_new("parent_fails_with_child")
    state = await env.client.wait_for_completion(iid, timeout=DONE)
    assert state.runtime_status is tl.Status.FAILED
    details = state.failure_details
    assert details is not None
    assert details.is_caused_by(ValueError)
    assert details.is_caused_by(tl.TaskFailedError)
    messages = []
    node: tl.FailureDetails | None = details
    while node is not None:
        messages.append(node.message)
        node = node.inner
    assert any("child exploded" in m for m in messages)
    children = await env.client.query(instance_id_prefix=f"{iid}:")
    assert [c.runtime_status for c in children.items] == [tl.Status.FAILED]
