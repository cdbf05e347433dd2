"""The entity executor: applies one batch of messages to one entity. Pure: no I/O, no
clock, no storage.

``execute_batch`` takes the entity's state and scheduler state (lock, queue) as stored,
and the batch in arrival order, and returns the new state, the new scheduler state, and
the outgoing messages: replies to callers, signals, lock hand-offs and orchestration
starts. Operations run one at a time in order; one that raises leaves the state as it
was before it, and its signals and starts are dropped; a call gets the failure.

Locks: while an orchestration holds the entity, operations from anybody else (and other
lock requests) wait in the queue in arrival order; operations of the holder go through.
A release empties the lock and runs the queue until it meets the next lock request.
"""

from __future__ import annotations

import inspect
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from taskloom.converter import DataConverter, default_converter
from taskloom.entities import protocol as p
from taskloom.entities.context import Entity, EntityContext, OutgoingStart
from taskloom.entities.records import EntityId
from taskloom.models import FailureDetails

__all__ = [
    "EntityBatchResult",
    "EntityFunction",
    "EntityResolver",
    "Incoming",
    "OperationOutcome",
    "Outgoing",
    "execute_batch",
]

EntityFunction = Callable[[EntityContext], Any]
#: Resolves an entity name (lower-cased) to its function or ``Entity`` subclass.
EntityResolver = Callable[[str], "EntityFunction | type[Entity] | None"]

_NAMESPACE = uuid.UUID("3b0f6c1e-8d7a-4e59-b1c2-9f4e2a7d5c30")


@dataclass(frozen=True)
class Incoming:
    """One message of the batch: its inbox id (for derived ids), event name and body."""

    message_id: int
    name: str
    body: str | None


@dataclass(frozen=True)
class Outgoing:
    """A message to send: ``EventRaised(name, body)`` to ``instance_id`` (for replies,
    to its ``execution_id`` only)."""

    instance_id: str
    name: str
    body: str
    execution_id: str | None = None


@dataclass(frozen=True)
class OperationOutcome:
    """What one operation did (for logs and tests): its failure, if it raised."""

    operation: str
    request_id: str | None
    failure: FailureDetails | None = None


@dataclass
class EntityBatchResult:
    state: str | None
    scheduler: str | None
    outgoing: list[Outgoing] = field(default_factory=list)
    starts: list[OutgoingStart] = field(default_factory=list)
    outcomes: list[OperationOutcome] = field(default_factory=list)

    @property
    def is_empty(self) -> bool:
        """No state, no lock, nothing queued or remembered: the entity may be removed."""
        return self.state is None and self.scheduler is None


def execute_batch(
    entity_id: EntityId,
    resolve: EntityResolver,
    state: str | None,
    scheduler: str | None,
    batch: Sequence[Incoming],
    converter: DataConverter = default_converter,
    known_names: Callable[[], Sequence[str]] = tuple,
) -> EntityBatchResult:
    """Apply ``batch`` (oldest first) to the entity; see the module docstring."""
    run = _Batch(entity_id, resolve, state, scheduler, converter, known_names)
    for message in batch:
        run.receive(message)
    return run.result()


class _Batch:
    def __init__(
        self,
        entity_id: EntityId,
        resolve: EntityResolver,
        state: str | None,
        scheduler: str | None,
        converter: DataConverter,
        known_names: Callable[[], Sequence[str]],
    ) -> None:
        self.id = entity_id
        self.resolve = resolve
        self.state = state
        self.sched = p.SchedulerState.loads(scheduler)
        self.converter = converter
        self.known_names = known_names
        self.out = EntityBatchResult(state, scheduler)
        self.current: Incoming | None = None
        self.starts_made = 0

    # -- routing ----------------------------------------------------------------------

    def receive(self, message: Incoming) -> None:
        self.current = message
        request = p.decode(message.body)
        if message.name == p.RELEASE:
            self.release(request)
        elif message.name != p.OPERATION:
            return  # not for entities (an event raised on an entity id): ignored
        elif self.blocked(request):
            self.sched.queue.append(request)
        else:
            self.process(request)

    def blocked(self, request: p.Request) -> bool:
        lock = self.sched.lock
        return lock is not None and request.get("parent") != lock.get("parent")

    def process(self, request: p.Request) -> None:
        if "lock" in request:
            self.grant(request)
        else:
            self.operate(request)

    # -- locks ------------------------------------------------------------------------

    def grant(self, request: p.Request) -> None:
        lock_id = request.get("id")
        if lock_id in self.sched.released:
            # Its critical section ended (the orchestration finished) before the
            # request got here: never take it, and let the chain stop here.
            self.sched.released.remove(lock_id)
            return
        self.sched.lock = {"id": lock_id, "parent": request.get("parent")}
        if request.get("exec"):
            self.sched.lock["exec"] = request["exec"]
        entities, position = list(request.get("lock", ())), int(request.get("pos", 0))
        if position + 1 < len(entities):
            body = p.lock_request(
                str(lock_id),
                entities,
                position + 1,
                str(request.get("parent")),
                request.get("exec"),
            )
            self.out.outgoing.append(Outgoing(entities[position + 1], p.OPERATION, body))
        else:
            self.reply(request, p.result_reply(None))

    def release(self, request: p.Request) -> None:
        lock_id = request.get("id")
        lock = self.sched.lock
        if lock is not None and lock.get("id") == lock_id:
            self.sched.lock = None
            self.drain()
            return
        for index, queued in enumerate(self.sched.queue):
            if "lock" in queued and queued.get("id") == lock_id:
                del self.sched.queue[index]
                return
        if lock_id is not None and lock_id not in self.sched.released:
            self.sched.released.append(lock_id)
            del self.sched.released[: -p.MAX_EARLY_RELEASES]

    def drain(self) -> None:
        """Run what waited behind the lock, in order, until a new lock blocks the rest."""
        queue, self.sched.queue = self.sched.queue, []
        for request in queue:
            if self.blocked(request):
                self.sched.queue.append(request)
            else:
                self.process(request)

    # -- operations -------------------------------------------------------------------

    def operate(self, request: p.Request) -> None:
        op = str(request.get("op", ""))
        request_id = request.get("id")
        ctx = EntityContext(
            self.id, op, request.get("input"), self.state, self.converter, self.new_instance_id
        )
        try:
            state, result = self.run(ctx)
            text = (
                None
                if result is None
                else self.converter.dumps(
                    result, what=f"result of operation {op!r} on entity {self.id}"
                )
            )
        except Exception as exc:
            # Only this operation is undone: the state stays as before it, and what it
            # signalled or started is dropped.
            failure = FailureDetails.from_exception(exc)
            self.out.outcomes.append(OperationOutcome(op, request_id, failure))
            if request_id is not None:
                self.reply(request, p.failure_reply(failure))
            return
        self.state = state
        for signal in ctx.signals:
            body = p.operation(signal.operation, signal.input)
            self.out.outgoing.append(Outgoing(signal.target.instance_id, p.OPERATION, body))
        self.out.starts.extend(ctx.starts)
        self.out.outcomes.append(OperationOutcome(op, request_id))
        if request_id is not None:
            self.reply(request, p.result_reply(text))

    def run(self, ctx: EntityContext) -> tuple[str | None, Any]:
        code = self.resolve(self.id.name)
        if code is None:
            names = ", ".join(sorted(self.known_names())) or "none"
            raise LookupError(
                f"no entity named {self.id.name!r} is registered with this app "
                f"(registered: {names}); register it with @app.entity or fix the name"
            )
        if isinstance(code, type):
            return _run_class(code, ctx, self.state, self.converter)
        returned = code(ctx)
        return ctx._final_state(self.state), ctx._result_value(returned)

    def new_instance_id(self) -> str:
        self.starts_made += 1
        message_id = self.current.message_id if self.current is not None else 0
        seed = f"{self.id.instance_id}:{message_id}:{self.starts_made}"
        return uuid.uuid5(_NAMESPACE, seed).hex

    def reply(self, request: p.Request, body: str) -> None:
        parent, request_id = request.get("parent"), request.get("id")
        if parent and request_id:
            self.out.outgoing.append(Outgoing(parent, str(request_id), body, request.get("exec")))

    def result(self) -> EntityBatchResult:
        self.out.state = self.state
        self.out.scheduler = self.sched.dumps()
        return self.out


# -- class style ------------------------------------------------------------------------

_BASE_MEMBERS = frozenset(dir(Entity))
_OPERATIONS: dict[type[Entity], dict[str, tuple[str, bool]]] = {}


def _operations(cls: type[Entity]) -> dict[str, tuple[str, bool]]:
    """Lower-cased operation name -> (method name, whether it takes the input)."""
    found = _OPERATIONS.get(cls)
    if found is None:
        found = {}
        for name in dir(cls):
            member = getattr(cls, name, None)
            if name.startswith("_") or name in _BASE_MEMBERS or not callable(member):
                continue
            params = list(inspect.signature(member).parameters.values())[1:]
            positional = [
                x for x in params if x.kind in (x.POSITIONAL_ONLY, x.POSITIONAL_OR_KEYWORD)
            ]
            found[name.lower()] = (name, bool(positional))
        _OPERATIONS[cls] = found
    return found


def _run_class(
    cls: type[Entity], ctx: EntityContext, state: str | None, converter: DataConverter
) -> tuple[str | None, Any]:
    obj = cls()
    obj.context = ctx
    obj.state = converter.loads(state) if state is not None else obj.initial_state()
    ops = _operations(cls)
    op = ctx.operation_name
    entry = ops.get(op.lower())
    if entry is None:
        if op.lower() == "delete":
            return None, None
        names = ", ".join(sorted(n for n, _ in ops.values())) or "none"
        raise LookupError(
            f"entity {ctx.entity_name!r} ({cls.__name__}) has no operation {op!r} "
            f"(operations: {names})"
        )
    method_name, takes_input = entry
    method = getattr(obj, method_name)
    returned = method(ctx.get_input()) if takes_input else method()
    if ctx._deleted or obj.state is None:
        return None, ctx._result_value(returned)
    text = converter.dumps(obj.state, what=f"state of entity {ctx.entity_id}")
    return text, ctx._result_value(returned)
