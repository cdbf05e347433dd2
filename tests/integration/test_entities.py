"""Durable entities end to end on both backends, with TestEnv's worker: signals applied
exactly once, critical sections without deadlocks or lost updates, calls with results
and failures, the class style, scheduled signals on virtual time, queries and cleaning,
locks released by termination, entities starting orchestrations."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest

import taskloom as tl
from taskloom import history as h
from taskloom.entities import protocol as p
from taskloom.storage.base import AT_ONCE, Message
from taskloom.testing import TestEnv

COUNTER = tl.EntityId("Counter", "hot")


def wait_for(check: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


def make_app(hub: str) -> tl.App:
    app = tl.App(hub)

    @app.entity
    def Counter(ctx: tl.EntityContext) -> Any:
        value = ctx.get_state(lambda: 0)
        if ctx.operation_name == "add":
            ctx.set_state(value + ctx.get_input())
        elif ctx.operation_name == "get":
            return value
        elif ctx.operation_name == "fail":
            ctx.set_state(-1)
            raise ValueError(f"refused {ctx.get_input()}")
        elif ctx.operation_name == "delete":
            ctx.delete_state()
        elif ctx.operation_name == "spawn":
            return ctx.start_new_orchestration("child", {"from": ctx.entity_key})
        elif ctx.operation_name == "relay":
            ctx.signal_entity(tl.EntityId("Counter", "relayed"), "add", ctx.get_input())
        return None

    @app.entity(name="Account")
    class Account(tl.Entity):
        def initial_state(self) -> Any:
            return 0

        def get(self) -> int:
            return int(self.state)

        def set(self, value: int) -> None:
            self.state = value

    @app.orchestrator
    def signaller(ctx: tl.OrchestrationContext, count: int) -> Any:
        for _ in range(count):
            ctx.signal_entity(COUNTER, "add", 1)
        seen = yield ctx.call_entity(COUNTER, "get")
        return seen

    @app.orchestrator
    def transfer(ctx: tl.OrchestrationContext, job: dict[str, Any]) -> Any:
        # Read, then write, with a timer between: without the lock, others interleave
        # and updates get lost; with it, the sum of both accounts stays the same.
        src, dst = tl.EntityId("Account", job["src"]), tl.EntityId("Account", job["dst"])
        order = [src, dst] if job["flip"] else [dst, src]
        with (yield ctx.lock_entities(order)):
            a = yield ctx.call_entity(src, "get")
            b = yield ctx.call_entity(dst, "get")
            yield ctx.create_timer(timedelta(seconds=1))
            yield ctx.call_entity(src, "set", a - job["amount"])
            yield ctx.call_entity(dst, "set", b + job["amount"])
        return job["amount"]

    @app.orchestrator
    def caller(ctx: tl.OrchestrationContext) -> Any:
        yield ctx.call_entity("@counter@c", "add", 5)
        value = yield ctx.call_entity(tl.EntityId("counter", "c"), "get")
        try:
            yield ctx.call_entity(tl.EntityId("counter", "c"), "fail", "please")
        except tl.TaskFailedError as exc:
            error = str(exc)
        after = yield ctx.call_entity(tl.EntityId("counter", "c"), "get")
        balance = yield ctx.call_entity(tl.EntityId("account", "x"), "get")
        return {"value": value, "error": error, "after": after, "balance": balance}

    @app.orchestrator
    def holder(ctx: tl.OrchestrationContext) -> Any:
        with (yield ctx.lock_entities([tl.EntityId("counter", "locked")])):
            yield ctx.call_entity(tl.EntityId("counter", "locked"), "add", 1)
            yield ctx.wait_for_external_event("never")
        return None

    @app.orchestrator
    def child(ctx: tl.OrchestrationContext, data: Any) -> Any:
        return {"child of": data["from"]}

    return app


@pytest.fixture
def env(store_url: str, hub: str) -> Iterator[TestEnv]:
    with TestEnv(make_app(hub), store=store_url) as e:
        yield e


def idle(env: TestEnv) -> bool:
    """No message is visible now and the worker holds nothing."""
    runnable = env.run(env.store.has_runnable(env.now()))
    return not runnable and env.worker.is_idle


def queued(env: TestEnv, entity: tl.EntityId) -> list[Any]:
    """The operations waiting in the entity's queue, as its row stores them."""
    record = env.run(env.store.get_instance(entity.instance_id))
    if record is None or record.input is None:
        return []
    return list(p.SchedulerState.loads(record.input).queue)


def state(env: TestEnv, entity: tl.EntityId | str) -> Any:
    return env.client.read_entity_state(entity).entity_state


def test_a_thousand_signals_from_ten_orchestrations_apply_exactly_once(env: TestEnv) -> None:
    ids = [env.client.start_new("signaller", 100) for _ in range(10)]
    seen = [env.client.wait_for_completion(i, timeout=60).output for i in ids]
    # Each call comes after the 100 signals its orchestration sent before it.
    assert all(100 <= s <= 1000 for s in seen)
    wait_for(lambda: state(env, COUNTER) == 1000, 60, "1,000 additions")
    wait_for(lambda: idle(env), what="every message consumed")
    assert state(env, COUNTER) == 1000


def test_transfers_under_locks_never_deadlock_nor_lose_updates(env: TestEnv) -> None:
    env.client.signal_entity(tl.EntityId("Account", "a"), "set", 1000)
    env.client.signal_entity(tl.EntityId("Account", "b"), "set", 1000)
    rng = random.Random(11)
    jobs = []
    for _ in range(20):
        src, dst = rng.sample(["a", "b"], 2)
        jobs.append(
            {"src": src, "dst": dst, "amount": rng.randint(1, 50), "flip": rng.random() < 0.5}
        )
    ids = [env.client.start_new("transfer", job) for job in jobs]
    for iid in ids:
        st = env.client.wait_for_completion(iid, timeout=60)
        assert st.runtime_status is tl.Status.COMPLETED, st.failure_details
    expected_a = 1000 + sum(j["amount"] * (1 if j["dst"] == "a" else -1) for j in jobs)
    a, b = state(env, "@account@a"), state(env, "@account@b")
    assert (a, b) == (expected_a, 2000 - expected_a)

    # Every lock is released (the last release is on its way when the last ends).
    def released() -> bool:
        records = [env.run(env.store.get_instance(f"@account@{k}")) for k in "ab"]
        return all(r is not None and r.input is None for r in records)

    wait_for(released, what="the last release")


def test_call_entity_returns_results_and_failures(env: TestEnv) -> None:
    st = env.client.wait_for_completion(env.client.start_new("caller"), timeout=30)
    assert st.runtime_status is tl.Status.COMPLETED, st.failure_details
    assert st.output == {
        "value": 5,
        "error": "operation 'fail' on entity @counter@c failed: refused please",
        "after": 5,  # the failed operation's change was rolled back
        "balance": 0,  # class style: initial_state()
    }


def test_class_style_entity_from_the_client(env: TestEnv) -> None:
    acct = tl.EntityId("ACCOUNT", "k")
    assert env.client.read_entity_state(acct) == tl.EntityStateResponse(False, None)
    env.client.signal_entity(acct, "set", 42)
    wait_for(lambda: env.client.read_entity_state(acct).entity_exists, what="the state")
    assert env.client.read_entity_state(acct) == tl.EntityStateResponse(True, 42)


def test_signal_at_waits_for_virtual_time(env: TestEnv) -> None:
    target = tl.EntityId("counter", "later")
    env.client.signal_entity(target, "add", 1)
    env.client.signal_entity(target, "add", 10, signal_at=env.now() + timedelta(hours=1))
    wait_for(lambda: state(env, target) == 1, what="the first signal")
    wait_for(lambda: idle(env), what="nothing runnable before the hour")
    assert state(env, target) == 1
    env.advance(timedelta(hours=1))
    wait_for(lambda: state(env, target) == 11, what="the scheduled signal")


def test_query_and_clean_entity_storage(env: TestEnv) -> None:
    for i in range(5):
        env.client.signal_entity(tl.EntityId("counter", f"q{i}"), "add", i + 1)
    env.client.signal_entity(tl.EntityId("account", "q"), "set", 7)
    env.client.signal_entity(tl.EntityId("counter", "gone"), "add", 1)
    env.client.signal_entity(tl.EntityId("counter", "gone"), "delete")
    wait_for(lambda: len(env.client.query_entities().items) == 6, what="six entities")
    gone = tl.EntityId("counter", "gone")
    wait_for(lambda: not env.client.read_entity_state(gone).entity_exists, what="'gone' emptied")

    seen: list[Any] = []
    token = None
    while True:
        page = env.client.query_entities(name_prefix="Coun", page_size=2, continuation_token=token)
        assert len(page.items) <= 2
        seen += page.items
        token = page.continuation_token
        if token is None:
            break
    assert sorted((m.entity_id.key, m.state) for m in seen) == [(f"q{i}", i + 1) for i in range(5)]
    bare = env.client.query_entities(name_prefix="account", include_state=False).items
    assert [(m.entity_id, m.state) for m in bare] == [(tl.EntityId("account", "q"), None)]
    assert bare[0].last_modified is not None
    # Entities are not orchestrations: instance queries leave them out.
    assert env.client.query().items == []

    # An orphaned lock: held for an orchestration that does not exist.
    orphan = tl.EntityId("counter", "orphan")
    body = p.lock_request("lost", [orphan.instance_id], 0, "ghost", None)
    event = h.EventRaised(env.now(), name=p.OPERATION, input=body)
    env.run(env.store.enqueue_messages([Message(orphan.instance_id, event, AT_ONCE)]))
    env.client.signal_entity(orphan, "add", 3)
    wait_for(lambda: len(queued(env, orphan)) == 1, what="the signal queued behind the lock")
    assert not env.client.read_entity_state(orphan).entity_exists  # it waits behind the lock

    result = env.client.clean_entity_storage()
    assert result.locks_released == 1 and result.removed == 1  # "gone"
    wait_for(lambda: state(env, orphan) == 3, what="the queued signal")
    assert env.run(env.store.get_instance("@counter@gone")) is None
    assert env.client.clean_entity_storage() == tl.CleanEntityStorageResult(0, 0)


def test_termination_releases_the_locks(env: TestEnv) -> None:
    target = tl.EntityId("counter", "locked")
    iid = env.client.start_new("holder")
    wait_for(lambda: state(env, target) == 1, what="the call inside the critical section")
    env.client.signal_entity(target, "add", 10)
    wait_for(lambda: len(queued(env, target)) == 1, what="the signal queued behind the lock")
    assert state(env, target) == 1  # the signal waits behind the lock
    env.client.terminate(iid, "enough")
    wait_for(lambda: state(env, target) == 11, what="the signal after the release")


def test_entities_start_orchestrations_and_signal_entities(env: TestEnv) -> None:
    env.client.signal_entity(tl.EntityId("counter", "maker"), "relay", 4)
    wait_for(lambda: state(env, "@counter@relayed") == 4, what="the relayed signal")

    app_client = env.client

    @env.app.orchestrator
    def spawner(ctx: tl.OrchestrationContext) -> Any:
        child_id = yield ctx.call_entity(tl.EntityId("counter", "maker"), "spawn")
        return child_id

    child_id = app_client.wait_for_completion(app_client.start_new("spawner"), timeout=30).output
    st = app_client.wait_for_completion(child_id, timeout=30)
    assert st.runtime_status is tl.Status.COMPLETED and st.output == {"child of": "maker"}


def test_orchestration_ids_may_not_look_like_entities(env: TestEnv) -> None:
    with pytest.raises(ValueError, match="marks entities"):
        env.client.start_new("child", {}, instance_id="@counter@x")
