"""The entity executor (pure): batches of operations, failures, class style, locks; and
the orchestration side of entities (call_entity, signal_entity, lock_entities) driven
from history builders, as the worker would."""

from __future__ import annotations

import json
from typing import Any

import pytest
from history_builders import T0, Driver, at, dumps, loads, started, terminated

import taskloom as tl
from taskloom import history as h
from taskloom.core.actions import SendEvent
from taskloom.entities import protocol as p
from taskloom.entities.episodes import plan_entity_episode
from taskloom.entities.executor import EntityBatchResult, Incoming, execute_batch
from taskloom.models import Status
from taskloom.storage.base import InstanceRecord, LeasedEpisode, Message

COUNTER = tl.EntityId("Counter", "c1")
OTHER = tl.EntityId("Counter", "c2")


def counter(ctx: tl.EntityContext) -> Any:
    value = ctx.get_state(lambda: 0)
    op = ctx.operation_name
    if op == "add":
        ctx.set_state(value + ctx.get_input())
    elif op == "get":
        ctx.set_result(value)
    elif op == "add_then_fail":
        ctx.set_state(value + ctx.get_input())
        ctx.signal_entity(OTHER, "add", 100)
        raise ValueError("no such luck")
    elif op == "echo":
        return ctx.get_input()
    elif op == "forward":
        ctx.signal_entity(OTHER, "add", ctx.get_input())
    elif op == "start":
        return ctx.start_new_orchestration("child", ctx.get_input())
    elif op == "delete":
        ctx.delete_state()
    return None


class Account(tl.Entity):
    def initial_state(self) -> Any:
        return {"balance": 0}

    def deposit(self, amount: int) -> int:
        self.state["balance"] += amount
        return int(self.state["balance"])

    def balance(self) -> int:
        return int(self.state["balance"])

    def overdraw(self, amount: int) -> None:
        self.state["balance"] -= amount
        raise RuntimeError("insufficient funds")

    def close(self) -> None:
        self.context.delete_state()


ENTITIES: dict[str, Any] = {"counter": counter, "account": Account}


def signal(op: str, value: Any = None) -> tuple[str, str]:
    return p.OPERATION, p.operation(op, dumps(value))


def call(op: str, value: Any = None, rid: str = "r1", parent: str = "orch") -> tuple[str, str]:
    body = p.operation(op, dumps(value), request_id=rid, parent=parent, execution_id="e1")
    return p.OPERATION, body


def lock(lock_id: str, parent: str, ids: list[tl.EntityId], pos: int = 0) -> tuple[str, str]:
    targets = sorted(e.instance_id for e in ids)
    return p.OPERATION, p.lock_request(lock_id, targets, pos, parent, "e-" + parent)


def release(lock_id: str, parent: str) -> tuple[str, str]:
    return p.RELEASE, p.release(lock_id, parent)


def run(
    messages: list[tuple[str, str]],
    *,
    entity: tl.EntityId = COUNTER,
    state: Any = None,
    scheduler: str | None = None,
) -> EntityBatchResult:
    batch = [Incoming(i + 1, name, body) for i, (name, body) in enumerate(messages)]
    return execute_batch(entity, ENTITIES.get, dumps(state), scheduler, batch)


def replies(result: EntityBatchResult) -> dict[str, dict[str, Any]]:
    return {o.name: json.loads(o.body) for o in result.outgoing if o.name != p.OPERATION}


# -- operations ---------------------------------------------------------------------


def test_signals_apply_in_arrival_order() -> None:
    result = run([signal("add", 1), signal("add", 2), signal("add", 3)])
    assert loads(result.state) == 6
    assert result.outgoing == [] and not result.is_empty


def test_a_call_replies_to_the_calling_execution() -> None:
    result = run([signal("add", 5), call("get", rid="r9")], state=10)
    (reply,) = result.outgoing
    assert (reply.instance_id, reply.name, reply.execution_id) == ("orch", "r9", "e1")
    assert loads(json.loads(reply.body)["result"]) == 15


def test_return_value_is_the_result_unless_set_result_says_otherwise() -> None:
    result = run([call("echo", {"a": 1})])
    assert loads(replies(result)["r1"]["result"]) == {"a": 1}


def test_a_failing_operation_rolls_back_only_itself() -> None:
    result = run(
        [signal("add", 1), call("add_then_fail", 50, rid="bad"), signal("add", 2)], state=0
    )
    assert loads(result.state) == 3  # the 50 was undone, the ops around it kept
    failure = replies(result)["bad"]["failure"]
    assert failure["message"] == "no such luck" and "ValueError" in failure["error_type"]
    # The failed operation's signal to another entity is dropped with it.
    assert not [o for o in result.outgoing if o.instance_id == OTHER.instance_id]
    assert [o.failure is not None for o in result.outcomes] == [False, True, False]


def test_signals_to_other_entities_and_orchestration_starts_go_out() -> None:
    result = run([signal("forward", 7), call("start", "x", rid="s")])
    (sent, reply) = result.outgoing
    assert sent.instance_id == "@counter@c2" and json.loads(sent.body)["op"] == "add"
    (start,) = result.starts
    assert loads(json.loads(reply.body)["result"]) == start.instance_id
    assert (start.name, loads(start.input)) == ("child", "x")
    again = run([signal("forward", 7), call("start", "x", rid="s")])
    assert again.starts[0].instance_id == start.instance_id  # a redone episode reuses it


def test_deleting_the_state_empties_the_entity() -> None:
    result = run([signal("add", 1), signal("delete")], state=3)
    assert result.state is None and result.is_empty


def test_unknown_entity_fails_calls() -> None:
    result = run([call("get")], entity=tl.EntityId("Nope", "k"))
    assert "no entity named 'nope'" in replies(result)["r1"]["failure"]["message"]


# -- class style --------------------------------------------------------------------


def test_class_style_operations_state_and_results() -> None:
    acct = tl.EntityId("Account", "a")
    result = run([call("deposit", 10, rid="d"), call("Balance", rid="b")], entity=acct)
    assert loads(result.state) == {"balance": 10}
    got = replies(result)
    assert loads(got["d"]["result"]) == 10 and loads(got["b"]["result"]) == 10


def test_class_style_failure_rolls_back_and_unknown_operation_fails() -> None:
    acct = tl.EntityId("Account", "a")
    result = run(
        [call("overdraw", 5, rid="o"), call("fly", rid="f"), call("balance", rid="b")],
        entity=acct,
        state={"balance": 3},
    )
    got = replies(result)
    assert got["o"]["failure"]["message"] == "insufficient funds"
    assert "has no operation 'fly'" in got["f"]["failure"]["message"]
    assert loads(got["b"]["result"]) == 3


def test_class_style_delete() -> None:
    acct = tl.EntityId("Account", "a")
    assert run([signal("close")], entity=acct, state={"balance": 1}).state is None
    assert run([signal("delete")], entity=acct, state={"balance": 1}).state is None


def test_entity_names_ignore_case() -> None:
    assert tl.EntityId("CoUnTeR", "Key").instance_id == "@counter@Key"
    assert tl.EntityId.from_instance_id("@counter@a@b") == tl.EntityId("counter", "a@b")
    with pytest.raises(ValueError):
        tl.EntityId("a@b", "k")


# -- locks --------------------------------------------------------------------------


def test_a_lock_is_granted_and_passed_on_in_order() -> None:
    result = run([lock("L", "o1", [COUNTER, OTHER])])
    (forward,) = result.outgoing
    assert forward.instance_id == OTHER.instance_id
    assert json.loads(forward.body)["pos"] == 1
    last = run([lock("L", "o1", [COUNTER, OTHER], pos=1)], entity=OTHER)
    (granted,) = last.outgoing
    assert (granted.instance_id, granted.name, granted.execution_id) == ("o1", "L", "e-o1")


def test_a_locked_entity_queues_others_until_released() -> None:
    held = run([lock("L", "o1", [COUNTER]), signal("add", 1), call("add", 2, parent="o1")])
    assert loads(held.state) == 2  # the holder's call went through, the signal waits
    sched = p.SchedulerState.loads(held.scheduler)
    assert sched.lock == {"id": "L", "parent": "o1", "exec": "e-o1"} and len(sched.queue) == 1
    freed = run([release("L", "o1")], state=2, scheduler=held.scheduler)
    assert loads(freed.state) == 3 and freed.scheduler is None


def test_a_queued_lock_request_takes_over_and_blocks_what_follows() -> None:
    msgs = [
        lock("L1", "o1", [COUNTER]),
        lock("L2", "o2", [COUNTER]),
        signal("add", 10),
        release("L1", "o1"),
        signal("add", 1),
    ]
    result = run(msgs, state=0)
    sched = p.SchedulerState.loads(result.scheduler)
    assert sched.lock is not None and sched.lock["id"] == "L2"
    assert [json.loads(o.body) for o in result.outgoing if o.name == "L2"] == [{"result": None}]
    assert loads(result.state) == 0 and len(sched.queue) == 2  # both signals wait, in order
    done = run([release("L2", "o2")], state=0, scheduler=result.scheduler)
    assert loads(done.state) == 11


def test_a_release_that_comes_before_its_lock_request_cancels_it() -> None:
    early = run([release("L", "o1")], state=1)
    late = run([lock("L", "o1", [COUNTER, OTHER], pos=1), signal("add", 1)], state=1,
               scheduler=early.scheduler)  # fmt: skip
    assert loads(late.state) == 2 and late.scheduler is None and late.outgoing == []


def test_a_release_removes_a_queued_lock_request() -> None:
    result = run([lock("L1", "o1", [COUNTER]), lock("L2", "o2", [COUNTER]), release("L2", "o2")])
    sched = p.SchedulerState.loads(result.scheduler)
    assert sched.queue == [] and sched.lock is not None and sched.lock["id"] == "L1"


# -- one entity episode -------------------------------------------------------------


def leased(iid: str, events: list[tuple[str, str]], *, state: Any = None) -> LeasedEpisode:
    rec = InstanceRecord(iid, "", "counter", Status.COMPLETED, T0, T0, custom_status=dumps(state))
    msgs = [
        Message(iid, h.EventRaised(T0, name=n, input=b), T0, id=i + 1)
        for i, (n, b) in enumerate(events)
    ]
    return LeasedEpisode(rec, msgs, lease_token=7)


def test_an_episode_commits_state_messages_and_status() -> None:
    commit, _ = plan_entity_episode(
        leased("@counter@c1", [signal("add", 2), call("get")]), ENTITIES.get, at(5)
    )
    assert commit.consumed == [1, 2] and commit.lease_token == 7
    assert commit.instance.status is Status.RUNNING and loads(commit.instance.custom_status) == 2
    (reply,) = commit.messages
    assert (reply.instance_id, reply.execution_id, reply.event.name) == ("orch", "e1", "r1")
    gone, _ = plan_entity_episode(
        leased("@counter@c1", [signal("delete")], state=2), ENTITIES.get, at(5)
    )
    assert gone.instance.status is Status.COMPLETED and gone.instance.custom_status is None


# -- the orchestration side ----------------------------------------------------------


def sent(result: Any) -> list[tuple[str, dict[str, Any]]]:
    return [
        (a.instance_id, json.loads(a.input)) for a in result.actions if isinstance(a, SendEvent)
    ]


def reply_to(body: dict[str, Any], value: Any = None, *, fail: str | None = None) -> h.EventRaised:
    if fail is not None:
        text = p.failure_reply(tl.FailureDetails("ValueError", fail))
    else:
        text = p.result_reply(dumps(value))
    return h.EventRaised(T0, name=body["id"], input=text)


def test_call_entity_sends_an_operation_and_takes_the_reply() -> None:
    def main(ctx: tl.OrchestrationContext) -> Any:
        ctx.signal_entity(COUNTER, "add", 1)
        value = yield ctx.call_entity(COUNTER, "get")
        try:
            yield ctx.call_entity("@counter@c1", "boom")
        except tl.TaskFailedError as exc:
            return [value, str(exc)]
        return None

    d = Driver({"main": main}.get)
    first = d.step(T0, started("main"))
    (sig, get) = sent(first)
    assert sig == ("@counter@c1", {"op": "add", "input": "1", "parent": "inst-1"})
    assert get[0] == "@counter@c1" and get[1]["op"] == "get" and get[1]["exec"] == "exec-1"
    second = d.step(at(1), reply_to(get[1], 41))
    ((_, boom),) = sent(second)
    done = d.step(at(2), reply_to(boom, fail="nope"))
    assert done.status is Status.COMPLETED
    assert loads(done.output) == [41, "operation 'boom' on entity @counter@c1 failed: nope"]


def critical(ctx: tl.OrchestrationContext) -> Any:
    with (yield ctx.lock_entities([OTHER, COUNTER])):
        a = yield ctx.call_entity(COUNTER, "get")
        yield ctx.call_entity(OTHER, "add", a)
    return a


def test_lock_entities_locks_in_sorted_order_and_releases_on_exit() -> None:
    d = Driver({"main": critical}.get)
    first = d.step(T0, started("main"))
    ((target, req),) = sent(first)
    assert target == "@counter@c1" and req["lock"] == ["@counter@c1", "@counter@c2"]
    second = d.step(at(1), reply_to(req))
    ((_, get),) = sent(second)
    third = d.step(at(2), reply_to(get, 5))
    assert third.entity_messages == []
    ((_, add),) = sent(third)
    done = d.step(at(3), reply_to(add))
    assert done.status is Status.COMPLETED
    assert sorted(t for t, name, _ in done.entity_messages) == ["@counter@c1", "@counter@c2"]
    assert {name for _, name, _ in done.entity_messages} == {p.RELEASE}
    # Replaying the whole history (the Driver replays on a fresh run) sends none again.
    again = d.step(at(4), h.EventRaised(at(4), name="stray", input=None))
    assert again.entity_messages == []


def test_termination_while_waiting_for_a_lock_releases_it() -> None:
    d = Driver({"main": critical}.get)
    d.step(T0, started("main"))
    ended = d.step(at(1), terminated("stop"))
    assert ended.status is Status.TERMINATED
    assert sorted(t for t, _, _ in ended.entity_messages) == ["@counter@c1", "@counter@c2"]


def test_failure_inside_a_critical_section_releases_the_locks() -> None:
    def main(ctx: tl.OrchestrationContext) -> Any:
        with (yield ctx.lock_entities([COUNTER])):
            yield ctx.call_entity(COUNTER, "get")
            raise ValueError("bad")

    d = Driver({"main": main}.get)
    ((_, req),) = sent(d.step(T0, started("main")))
    ((_, get),) = sent(d.step(at(1), reply_to(req)))
    done = d.step(at(2), reply_to(get, 1))
    assert done.status is Status.FAILED
    assert [t for t, _, _ in done.entity_messages] == ["@counter@c1"]


def test_calling_an_unlocked_entity_inside_a_critical_section_fails() -> None:
    def main(ctx: tl.OrchestrationContext) -> Any:
        with (yield ctx.lock_entities([COUNTER])):
            yield ctx.call_entity(OTHER, "get")

    d = Driver({"main": main}.get)
    ((_, req),) = sent(d.step(T0, started("main")))
    done = d.step(at(1), reply_to(req))
    assert done.status is Status.FAILED and done.failure is not None
    assert "does not lock it" in done.failure.message
    assert [t for t, _, _ in done.entity_messages] == ["@counter@c1"]


def test_continue_as_new_inside_a_critical_section_releases_the_locks() -> None:
    def main(ctx: tl.OrchestrationContext) -> Any:
        with (yield ctx.lock_entities([COUNTER])):
            ctx.continue_as_new(1)
        return None

    d = Driver({"main": main}.get)
    ((_, req),) = sent(d.step(T0, started("main")))
    done = d.step(at(1), reply_to(req))
    assert done.status is Status.CONTINUED_AS_NEW
    assert [(t, n) for t, n, _ in done.entity_messages] == [("@counter@c1", p.RELEASE)]


def test_critical_sections_do_not_nest() -> None:
    def main(ctx: tl.OrchestrationContext) -> Any:
        with (yield ctx.lock_entities([COUNTER])):
            yield ctx.lock_entities([OTHER])

    d = Driver({"main": main}.get)
    ((_, req),) = sent(d.step(T0, started("main")))
    done = d.step(at(1), reply_to(req))
    assert done.status is Status.FAILED and done.failure is not None
    assert "do not nest" in done.failure.message


def test_context_helpers() -> None:
    def fn(ctx: tl.EntityContext) -> Any:
        assert (ctx.entity_name, ctx.entity_key, ctx.entity_id) == ("counter", "c1", COUNTER)
        assert ctx.get_state(5) == 5 and not ctx.has_state  # a plain initial value
        ctx.set_state(1)
        assert ctx.get_state() == 1 and ctx.has_state
        ctx.destruct_on_exit()
        assert ctx.get_state() is None and not ctx.has_state
        return "ok"

    batch = [Incoming(1, *call("x"))]
    result = execute_batch(COUNTER, {"counter": fn}.get, None, None, batch)
    assert result.state is None and loads(replies(result)["r1"]["result"]) == "ok"
