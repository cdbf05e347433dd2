"""Bulk actions on a filter (taskloom/dashboard/bulk_job.py): the dry run's count and
sample, and the durable job acting on every selected instance exactly once, on a real
worker and a real store (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from envs import Env

import taskloom as tl
from taskloom import history as h
from taskloom.dashboard import bulk_job as bulk


def _request(action: str, prefix: str, **kw: object) -> bulk.BulkRequest:
    return bulk.BulkRequest(
        action=action,
        filter=bulk.BulkFilter(instance_id_prefix=prefix),
        requested_at=datetime.now(UTC),
        by_key_id="k1",
        by_name="ops-alice",
        by_role="operator",
        **kw,  # type: ignore[arg-type]
    )


async def _start_waiters(env: Env, prefix: str, n: int) -> list[str]:
    ids = [
        await env.client.start_new("wait_event", instance_id=f"{prefix}{i:03d}") for i in range(n)
    ]
    for iid in ids:
        await env.wait_for_status(iid, tl.Status.RUNNING)
    return ids


async def test_dry_run_counts_and_samples_what_the_job_would_touch(env: Env) -> None:
    targets = await _start_waiters(env, "bulkA-", 12)
    others = await _start_waiters(env, "other-", 2)
    dry = await bulk.dry_run(env.store, _request("terminate", "bulkA-"), sample=5)
    assert (dry.count, dry.capped) == (12, False)
    assert [r.instance_id for r in dry.sample] == targets[:5]
    # Resume applies to Suspended instances only: none match.
    assert (await bulk.dry_run(env.store, _request("resume", "bulkA-"))).count == 0
    # A cap stops the count early and says so.
    capped = await bulk.dry_run(env.store, _request("terminate", "bulkA-"), cap=3)
    assert capped.capped and capped.count >= 3
    for iid in others:
        assert (await env.client.get_status(iid)).runtime_status is tl.Status.RUNNING  # type: ignore[union-attr]


async def test_bulk_terminate_acts_on_each_selected_instance_once(env: Env) -> None:
    targets = await _start_waiters(env, "bulkT-", 13)
    bystander = (await _start_waiters(env, "keep-", 1))[0]
    request = _request("terminate", "bulkT-", page_size=5, rate=1000.0, reason="cleanup")
    job = await bulk.start_job(env.client, request)
    state = await env.client.wait_for_completion(job, timeout=30)
    assert state.runtime_status is tl.Status.COMPLETED, state.failure
    out = state.output
    assert (out["selected"], out["applied"], out["already"], out["skipped"]) == (13, 13, 0, 0)
    assert out["pages"] == 3
    for iid in targets:
        done = await env.wait_for_status(iid, tl.Status.TERMINATED)
        assert done.runtime_status is tl.Status.TERMINATED
        events = await env.client.get_history(iid)
        terminations = [e for e in events if isinstance(e, h.ExecutionTerminated)]
        assert len(terminations) == 1
        assert f"bulk terminate {job} by ops-alice: cleanup" == terminations[0].reason
    assert (await env.client.get_status(bystander)).runtime_status is tl.Status.RUNNING  # type: ignore[union-attr]
    # The audit: who, what, on which filter (the input), and each id once (the history).
    job_state = await env.client.get_status(job)
    assert job_state is not None
    assert job_state.input["by"] == {"key_id": "k1", "name": "ops-alice", "role": "operator"}
    assert job_state.input["filter"]["instance_id_prefix"] == "bulkT-"
    pages = bulk.pages_of(await env.client.get_history(job), env.client.converter.loads)
    applied = [i for p in pages for i in p.applied]
    assert sorted(applied) == targets and len(set(applied)) == len(applied)


async def test_bulk_suspend_resume_purge_and_restart(env: Env) -> None:
    targets = await _start_waiters(env, "bulkS-", 4)
    for action, status in (("suspend", tl.Status.SUSPENDED), ("resume", tl.Status.RUNNING)):
        job = await bulk.start_job(env.client, _request(action, "bulkS-", rate=1000.0))
        state = await env.client.wait_for_completion(job, timeout=30)
        assert state.output["applied"] == 4, state.output
        for iid in targets:
            await env.wait_for_status(iid, status)
    job = await bulk.start_job(env.client, _request("terminate", "bulkS-", rate=1000.0))
    await env.client.wait_for_completion(job, timeout=30)
    for iid in targets:
        await env.wait_for_status(iid, tl.Status.TERMINATED)
    job = await bulk.start_job(env.client, _request("restart", "bulkS-", rate=1000.0))
    state = await env.client.wait_for_completion(job, timeout=30)
    assert state.output["applied"] == 4
    for iid in targets:
        await env.wait_for_status(bulk.restart_id(job, iid), tl.Status.RUNNING)
    job = await bulk.start_job(env.client, _request("purge", "bulkS-", rate=1000.0))
    state = await env.client.wait_for_completion(job, timeout=30)
    # The restarted instances (new ids, created after the request) are Running: left alone.
    assert state.output["applied"] == 4
    for iid in targets:
        assert await env.client.get_status(iid) is None


async def test_a_job_not_started_by_the_dashboard_acts_on_nothing(env: Env) -> None:
    targets = await _start_waiters(env, "forged-", 2)
    forged = _request("terminate", "forged-").to_json()
    forged["by"] = {"key_id": None, "name": "someone else", "role": "admin"}
    job = await env.client.start_new(bulk.BULK, forged, instance_id="forged-job")
    state = await env.client.wait_for_completion(job, timeout=30)
    assert state.runtime_status is tl.Status.FAILED
    assert "not signed by the dashboard" in str(state.failure_details)
    for iid in targets:
        assert (await env.client.get_status(iid)).runtime_status is tl.Status.RUNNING  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"action": "explode"}, "unknown bulk action 'explode'"),
        ({"rate": 0.0}, "rate 0.0 must be more than 0"),
        ({"page_size": 0}, "page size 0 must be 1 to 500"),
    ],
)
def test_bad_requests_say_what_is_wrong(change: dict[str, object], message: str) -> None:
    fields: dict[str, object] = {
        "action": "terminate",
        "filter": bulk.BulkFilter(),
        "requested_at": datetime.now(UTC),
    }
    fields.update(change)
    with pytest.raises(bulk.BulkRequestError, match=message):
        bulk.BulkRequest(**fields)  # type: ignore[arg-type]


def test_bad_filters_say_what_is_wrong() -> None:
    with pytest.raises(bulk.BulkRequestError, match="unknown runtime status 'Sleeping'"):
        bulk.BulkFilter.parse({"statuses": ["Sleeping"]})
    with pytest.raises(bulk.BulkRequestError, match="selects entities"):
        bulk.BulkFilter.parse({"instance_id_prefix": "@counter@"})
    with pytest.raises(bulk.BulkRequestError, match="is not a time"):
        bulk.BulkFilter.parse({"created_from": "yesterday"})
    with pytest.raises(bulk.BulkRequestError, match="unknown filter field"):
        bulk.BulkFilter.parse({"colour": "red"})


async def test_a_signed_input_verifies_and_a_tampered_one_does_not(env: Env) -> None:
    request = _request("purge", "x-")
    data = await bulk.signed_input(env.store, request)
    assert await bulk.verified(env.store, data) == request
    for field, value in (
        ("by", {"key_id": "k9", "name": "mallory", "role": "admin"}),
        ("action", "terminate"),
        ("signature", "0" * 64),
    ):
        tampered = {**data, field: value}
        with pytest.raises(bulk.BulkRequestError, match="not signed by the dashboard"):
            await bulk.verified(env.store, tampered)


async def test_a_page_applied_twice_acts_once(env: Env) -> None:
    """What a rerun of the apply activity (after a crash) does: nothing new."""
    ids = await _start_waiters(env, "twice-", 3)
    data = await bulk.signed_input(env.store, _request("terminate", "twice-"))
    page = {"request": data, "job": "bulk-twice", "ids": ids}
    first = await bulk.apply_page(page, client=env.client)
    again = await bulk.apply_page(page, client=env.client)  # the first may not have landed
    assert first["applied"] == ids
    assert sorted(again["applied"] + again["already"]) == ids
    for iid in ids:
        await env.wait_for_status(iid, tl.Status.TERMINATED)
    late = await bulk.apply_page(page, client=env.client)  # after it took effect
    assert late == {"applied": [], "already": ids, "skipped": []}
    for iid in ids:
        events = await env.client.get_history(iid)
        assert sum(isinstance(e, h.ExecutionTerminated) for e in events) == 1

    data = await bulk.signed_input(env.store, _request("restart", "twice-"))
    page = {"request": data, "job": "bulk-twice-r", "ids": ids}
    first = await bulk.apply_page(page, client=env.client)
    again = await bulk.apply_page(page, client=env.client)
    assert first["applied"] == ids and again["already"] == ids
    for iid in ids:
        await env.wait_for_status(bulk.restart_id("bulk-twice-r", iid), tl.Status.RUNNING)


async def test_a_status_only_dry_run_counts_with_the_grouped_count(env: Env) -> None:
    ids = await _start_waiters(env, "count-", 5)
    slow = _request("suspend", "count-00", rate=0.01, page_size=1)
    job = await bulk.start_job(env.client, slow)  # a Running bulk job: not counted
    await env.wait_for_status(job, tl.Status.RUNNING)
    request = bulk.BulkRequest(
        action="terminate",
        filter=bulk.BulkFilter(statuses=frozenset({tl.Status.RUNNING, tl.Status.SUSPENDED})),
        requested_at=datetime.now(UTC),
    )
    dry = await bulk.dry_run(env.store, request, sample=3)
    assert dry.count == 5 and not dry.capped
    assert [r.instance_id for r in dry.sample] == ids[:3]
    await env.client.terminate(job)
