"""SDK workers (``durabletask.worker.TaskHubGrpcWorker``) on a real ``taskloom serve
--grpc`` subprocess, on SQLite and PostgreSQL: the orchestration features end to end, a
hub shared by a native and an SDK worker, and an SDK worker killed mid-activity."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sdk_orchestrations as o
from durabletask import client as dt
from durabletask import entities as dte
from grpc_worker_env import HERE, sdk_worker, serving, wait_until

import taskloom as tl
from taskloom.models import Status
from taskloom.storage import open_store
from taskloom.storage.host_base import HostStore, WorkerRecord

pytestmark = pytest.mark.timeout(120)

ALL_ORCHESTRATIONS = [o.everything, o.child, o.counter, o.fails]
ALL_ACTIVITIES = [o.greet, o.flaky]


@pytest.fixture(autouse=True)
def _state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("G1_STATE", str(tmp_path))


def _workers(store_url: str, hub: str) -> list[WorkerRecord]:
    async def read() -> list[WorkerRecord]:
        store = open_store(store_url, hub=hub)
        await store.open()
        try:
            assert isinstance(store, HostStore)
            return await store.list_workers(datetime.now(UTC))
        finally:
            await store.close()

    return asyncio.run(read())


def _status(client: tl.Client, iid: str) -> tl.OrchestrationState | None:
    return client.get_status(iid)


def test_sdk_worker_runs_activities_timers_events_children_retries(
    tmp_path: Path, store_url: str, hub: str
) -> None:
    with (
        serving(tmp_path, store_url, hub) as sidecar,
        sdk_worker(sidecar, ALL_ORCHESTRATIONS, ALL_ACTIVITIES),
        tl.Client(store_url, hub=hub) as client,
    ):
        iid = client.start_new("everything", "ada")
        wait_until(
            lambda: (s := _status(client, iid)) and s.custom_status == {"step": "event"},
            30,
            "the orchestration to wait for its event",
        )
        client.raise_event(iid, "approve", {"by": "bob"})
        state = client.wait_for_completion(iid, timeout=60)
        assert state.runtime_status is Status.COMPLETED, state
        assert state.output == {
            "greeting": "Hello ada!",
            "approval": {"by": "bob"},
            "sub": {"n": 7, "greeting": "Hello child 7!"},
            "retried": "ok after 3",
        }
        assert state.custom_status == {"step": "done"}
        child = client.get_status(f"{iid}-child")
        assert child is not None and child.runtime_status is Status.COMPLETED
        assert child.parent_instance_id == iid
        kinds = [type(e).__name__ for e in client.get_history(iid)]
        assert kinds.count("TaskFailed") == 2  # the two failed tries, retried by the SDK
        assert {"TimerCreated", "TimerFired", "EventRaised"} <= set(kinds)
        assert "SubOrchestrationInstanceCompleted" in kinds

        counted = client.start_new("counter", 0)
        state = client.wait_for_completion(counted, timeout=60)
        assert (state.runtime_status, state.output) == (Status.COMPLETED, 3)

        failed = client.start_new("fails", None)
        state = client.wait_for_completion(failed, timeout=60)
        assert state.runtime_status is Status.FAILED
        assert state.failure_details is not None
        assert "orchestration failed on purpose" in state.failure_details.message


def test_native_and_sdk_workers_share_a_hub(tmp_path: Path, store_url: str, hub: str) -> None:
    app = f"{HERE / 'grpc_native_app.py'}:app"
    with (
        serving(tmp_path, store_url, hub, app=app) as sidecar,
        sdk_worker(sidecar, [o.sdk_side], [o.sdk_activity], filters=True),
        tl.Client(store_url, hub=hub) as client,
    ):
        # The SDK worker's stream is in the hub's worker registry beside the native one.
        workers = wait_until(
            lambda: [w for w in _workers(store_url, hub) if w.kind == "grpc-sdk"],
            30,
            "the SDK worker in the registry",
        )
        assert workers[0].orchestrations == ("sdk_side",)
        assert workers[0].activities == ("sdk_activity",)
        native = client.start_new("native_side", "n1")
        ours = client.start_new("sdk_side", "s1")
        me, server = os.getpid(), sidecar.process.pid
        for iid, key in ((native, "n1"), (ours, "s1")):
            state = client.wait_for_completion(iid, timeout=60)
            assert state.runtime_status is Status.COMPLETED, state
            # Each activity ran where it is registered, whoever called it.
            assert sorted(state.output) == sorted(
                [f"native ran {key} in {server}", f"sdk ran {key} in {me}"]
            )


def _lease_expiry(store_url: str, hub: str, iid: str) -> datetime | None:
    async def read() -> datetime | None:
        store = open_store(store_url, hub=hub)
        await store.open()
        try:
            leases = await store.inspect_instance(iid)
            return None if leases is None else leases.lease_expires
        finally:
            await store.close()

    return asyncio.run(read())


def test_long_activities_and_entity_batches_keep_their_leases(
    tmp_path: Path, store_url: str, hub: str
) -> None:
    """An activity and an entity batch that run for several lease periods (``--lease-for
    1``) stay leased to the worker's open stream: neither is sent again meanwhile."""
    with (
        serving(tmp_path, store_url, hub, args=("--lease-for", "1")) as sidecar,
        sdk_worker(sidecar, [o.waits_slowly], [o.slow], entities=[o.slow_entity]),
        tl.Client(store_url, hub=hub) as client,
    ):
        iid = client.start_new("waits_slowly", "act")
        c = dt.TaskHubGrpcClient(host_address=sidecar.address, metadata=sidecar.metadata("admin"))
        try:
            c.signal_entity(dte.EntityInstanceId("slow_entity", "e"), "work", input="ent")
            wait_until(lambda: o.runs("act") and o.runs("ent"), 30, "both to start")
            first = wait_until(
                lambda: _lease_expiry(store_url, hub, "@slow_entity@e"), 30, "the batch lease"
            )
            # Renewed past its first term, and held for over three lease periods (the
            # in-flight table forgets items after two unless they are renewed).
            wait_until(
                lambda: (
                    (now := _lease_expiry(store_url, hub, "@slow_entity@e"))
                    and now > first + timedelta(seconds=3.5)
                ),
                30,
                "the batch lease to be renewed for over 3 s",
            )
            assert (o.runs("act"), o.runs("ent")) == (1, 1)  # neither was sent again
            (tmp_path / "release-act").write_text("")
            (tmp_path / "release-ent").write_text("")
            state = client.wait_for_completion(iid, timeout=60)
            assert state.runtime_status is Status.COMPLETED, state
            entity = wait_until(
                lambda: (
                    (e := c.get_entity(dte.EntityInstanceId("slow_entity", "e")))
                    and e.get_state(int) == 1
                    and e
                ),
                30,
                "the entity's batch to commit",
            )
            assert entity.get_state(int) == 1
            assert (o.runs("act"), o.runs("ent")) == (1, 1)
        finally:
            c.close()


def test_killed_sdk_worker_work_is_finished_by_another(
    tmp_path: Path, store_url: str, hub: str
) -> None:
    with (
        serving(tmp_path, store_url, hub, args=("--lease-for", "2")) as sidecar,
        tl.Client(store_url, hub=hub) as client,
    ):
        env = {**os.environ, "PYTHONPATH": str(HERE), "G1_STATE": str(tmp_path)}
        script = [sys.executable, str(HERE / "sdk_worker_script.py")]
        victim = subprocess.Popen([*script, sidecar.address, sidecar.keys["worker"]], env=env)
        try:
            iid = client.start_new("waits_slowly", "k")
            wait_until(
                lambda: (tmp_path / f"started-k-{victim.pid}").exists(),
                30,
                "the first worker to start the activity",
            )
            victim.send_signal(signal.SIGKILL)
            victim.wait(10)
        finally:
            if victim.poll() is None:
                victim.kill()
                victim.wait()
        (tmp_path / "release-k").write_text("")
        with sdk_worker(sidecar, [o.waits_slowly], [o.slow]):
            state = client.wait_for_completion(iid, timeout=60)
        assert state.runtime_status is Status.COMPLETED, state
        assert state.output == f"slow done by {os.getpid()}"


def test_suspend_resume_and_recursive_terminate(tmp_path: Path, store_url: str, hub: str) -> None:
    with (
        serving(tmp_path, store_url, hub) as sidecar,
        sdk_worker(sidecar, ALL_ORCHESTRATIONS, ALL_ACTIVITIES),
        tl.Client(store_url, hub=hub) as client,
    ):
        iid = client.start_new("everything", "sue")
        event_step = {"step": "event"}
        wait_until(
            lambda: (s := _status(client, iid)) and s.custom_status == event_step,
            30,
            "the orchestration to wait for its event",
        )
        client.suspend(iid, "hold on")
        wait_until(
            lambda: _status(client, iid).runtime_status is Status.SUSPENDED,  # type: ignore[union-attr]
            30,
            "Suspended",
        )
        client.raise_event(iid, "approve", "late")
        wait_until(
            lambda: any(type(e).__name__ == "EventRaised" for e in client.get_history(iid)),
            30,
            "the event to be recorded",
        )
        # Recorded, but a suspended orchestration does not act on it.
        assert _status(client, iid).runtime_status is Status.SUSPENDED  # type: ignore[union-attr]
        client.resume(iid, "go")
        state = client.wait_for_completion(iid, timeout=60)
        assert state.runtime_status is Status.COMPLETED, state
        assert state.output["approval"] == "late"

        parent = client.start_new("everything", "ter")
        wait_until(
            lambda: (s := _status(client, parent)) and s.custom_status == event_step,
            30,
            "the second orchestration to wait",
        )
        client.terminate(parent, "stop it")
        state = client.wait_for_completion(parent, timeout=30)
        assert (state.runtime_status, state.output) == (Status.TERMINATED, "stop it")


def test_rewind_by_the_sdk_worker_reruns_only_what_failed(
    tmp_path: Path, store_url: str, hub: str
) -> None:
    with (
        serving(tmp_path, store_url, hub) as sidecar,
        sdk_worker(sidecar, [o.fragile_parent, o.fragile_child], [o.greet, o.fails_once]),
        tl.Client(store_url, hub=hub) as client,
    ):
        iid = client.start_new("fragile_parent", "rw")
        assert client.wait_for_completion(iid, timeout=60).runtime_status is Status.FAILED
        client.rewind(iid, "try again")
        _wait_rewound(client, iid, 1)
        # Rewound once more: its own activity now works, the child fails the first time.
        state = client.wait_for_completion(iid, timeout=60)
        assert state.runtime_status is Status.FAILED, state
        child = f"{iid}-child"
        assert client.get_status(child).runtime_status is Status.FAILED  # type: ignore[union-attr]
        client.purge(child)  # a purged child is started again by the rewind
        client.rewind(iid, "and again")
        _wait_rewound(client, iid, 2)
        state = client.wait_for_completion(iid, timeout=60)
        # The first activity ran once; the rewound ones ran again and worked.
        assert state.runtime_status is Status.COMPLETED, state
        assert state.output == ["Hello rw!", "rw-own worked", "rw-child worked"]
        kinds = [type(e).__name__ for e in client.get_history(iid)]
        # greet once; fails_once twice (the failed scheduling was dropped by the rewind).
        assert kinds.count("TaskScheduled") == 2


def _wait_rewound(client: tl.Client, iid: str, times: int) -> None:
    """Until the ``times``-th rewind is in the history (the rerun may be over already)."""
    wait_until(
        lambda: (
            [type(e).__name__ for e in client.get_history(iid)].count("ExecutionRewound") >= times
        ),
        30,
        f"rewind {times} to apply",
    )
