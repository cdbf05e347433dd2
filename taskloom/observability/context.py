"""W3C trace contexts as plain values, and the span ids taskloom derives.

An orchestration runs in many episodes, often on several hosts, yet it is one span; its
children (activities, timers, sub-orchestrations) are recorded before it ends. So the
orchestration's span id, and those of the "client" spans that wait for an activity or a
sub-orchestration, are *derived*: a hash of the trace id, the instance, the execution
and the task id. Every worker computes the same ids from the history without storing
them, and a replay after a crash emits the same span again rather than a second one.
Pure: no I/O, nothing from ``opentelemetry``.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from taskloom.history import ExecutionStarted

_TRACEPARENT = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")


@dataclass(frozen=True)
class TraceContext:
    """A span's identity as W3C ``traceparent``/``tracestate`` carry it."""

    trace_id: int
    span_id: int
    flags: int = 1  # sampled
    state: str | None = None

    @property
    def traceparent(self) -> str:
        return f"00-{self.trace_id:032x}-{self.span_id:016x}-{self.flags:02x}"

    @property
    def sampled(self) -> bool:
        return bool(self.flags & 1)

    @classmethod
    def parse(cls, traceparent: str | None, tracestate: str | None = None) -> TraceContext | None:
        """The context in a ``traceparent`` header, or None when it is absent or invalid
        (an all-zero id, version ``ff``, a wrong length): a bad header never fails a run."""
        if not traceparent:
            return None
        match = _TRACEPARENT.match(traceparent.strip().lower())
        if match is None or match[1] == "ff":
            return None
        trace_id, span_id = int(match[2], 16), int(match[3], 16)
        if not trace_id or not span_id:
            return None
        return cls(trace_id, span_id, int(match[4], 16), tracestate or None)

    def child(self, span_id: int) -> TraceContext:
        """The context of a span ``span_id`` in the same trace."""
        return TraceContext(self.trace_id, span_id, self.flags, self.state)


def _digest(*parts: object) -> bytes:
    text = "\x1f".join(str(p) for p in parts)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()


def derived_span_id(*parts: object) -> int:
    """A non-zero 64-bit span id that depends only on ``parts``."""
    return int.from_bytes(_digest("span", *parts)[:8], "big") or 1


def derived_trace_id(*parts: object) -> int:
    """A non-zero 128-bit trace id that depends only on ``parts`` (for an orchestration
    started by a client that did not trace: every worker agrees on its trace)."""
    return int.from_bytes(_digest("trace", *parts)[:16], "big") or 1


@dataclass(frozen=True)
class OrchestrationTrace:
    """The trace of one execution of an instance: its parent (the client's
    ``create_orchestration`` span, or the parent orchestration's span that waits for this
    sub-orchestration) and the derived ids of its own spans."""

    instance_id: str
    execution_id: str
    parent: TraceContext | None

    @property
    def context(self) -> TraceContext:
        """The orchestration span's context (the parent of its timers and tasks)."""
        parent = self.parent
        if parent is None:
            root = TraceContext(derived_trace_id(self.instance_id, self.execution_id), 1)
        else:
            root = parent
        span = derived_span_id("orchestration", root.trace_id, self.instance_id, self.execution_id)
        return root.child(span)

    def task(self, kind: str, task_id: int) -> TraceContext:
        """The context of the span that waits for task ``task_id`` (``"activity"`` or
        ``"suborchestration"``): the parent of the activity's run or the child's span."""
        ctx = self.context
        return ctx.child(derived_span_id(kind, ctx.span_id, task_id))


def trace_id_of(started: ExecutionStarted) -> str:
    """The trace id (32 hex digits, as tracing back ends show it) of the execution that
    ``started`` begins: what a dashboard links an instance to."""
    parent = TraceContext.parse(started.trace_parent, started.trace_state)
    trace = OrchestrationTrace(started.instance_id, started.execution_id, parent)
    return f"{trace.context.trace_id:032x}"
