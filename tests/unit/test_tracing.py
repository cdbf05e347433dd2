"""Spans of one orchestration in one process (an in-memory exporter), trace contexts,
and the import-free path when OpenTelemetry is absent."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

import taskloom as tl
from taskloom.observability import spans
from taskloom.observability.context import OrchestrationTrace, TraceContext
from taskloom.testing import TestEnv

ROOT = Path(__file__).resolve().parents[2]

app = tl.App("tracing")


@app.activity
def greet(name: str) -> str:
    return f"hello {name}"


@app.activity
def explode(_: Any) -> None:
    raise RuntimeError("boom")


@app.orchestrator
def child(ctx: tl.OrchestrationContext, x: int):  # type: ignore[no-untyped-def]
    return (yield ctx.call_activity(greet, f"child {x}"))


@app.orchestrator
def parent(ctx: tl.OrchestrationContext, x: int):  # type: ignore[no-untyped-def]
    a = yield ctx.call_activity(greet, "parent")
    yield ctx.create_timer(timedelta(seconds=5))
    b = yield ctx.call_sub_orchestrator(child, x)
    yield ctx.wait_for_external_event("go")
    return [a, b]


@app.orchestrator
def failing(ctx: tl.OrchestrationContext):  # type: ignore[no-untyped-def]
    yield ctx.call_activity(explode)


# -- trace contexts -----------------------------------------------------------------


def test_traceparent_round_trip_and_bad_headers() -> None:
    header = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    ctx = TraceContext.parse(header, "k=v")
    assert ctx is not None and ctx.traceparent == header and ctx.state == "k=v" and ctx.sampled
    for bad in (None, "", "junk", "ff-" + header[3:], header.replace("b7ad6b7169203331", "0" * 16)):
        assert TraceContext.parse(bad) is None
    assert TraceContext.parse(header.upper()) == TraceContext.parse(header)


def test_derived_ids_are_stable_and_distinct() -> None:
    parent = TraceContext.parse("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
    one = OrchestrationTrace("i", "e", parent)
    assert one.context == OrchestrationTrace("i", "e", parent).context
    assert one.context.trace_id == parent.trace_id if parent else False
    ids = {
        one.context.span_id,
        one.task("activity", 0).span_id,
        one.task("activity", 1).span_id,
        one.task("suborchestration", 1).span_id,
        OrchestrationTrace("i", "e2", parent).context.span_id,
    }
    assert len(ids) == 5
    # Without a parent every worker derives the same root trace.
    root = OrchestrationTrace("i", "e", None).context
    assert root == OrchestrationTrace("i", "e", None).context and root.trace_id


# -- spans ----------------------------------------------------------------------------


@pytest.fixture
def exporter() -> Iterator[Any]:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    spans.use_provider(provider)
    try:
        yield memory
    finally:
        spans.use_provider(None)
        provider.shutdown()


def by_name(finished: Any) -> dict[tuple[str, str], list[Any]]:
    out: dict[tuple[str, str], list[Any]] = {}
    for span in finished:
        out.setdefault((span.name, span.kind.name), []).append(span)
    return out


def test_one_trace_with_durable_task_names_and_parents(exporter: Any) -> None:
    from opentelemetry import trace

    with TestEnv(app) as env:
        user = spans.tracer()
        assert user is not None
        with user.start_as_current_span("user request") as request:
            iid = env.client.start_new("parent", 7)
        env.client.wait_for_start(iid, timeout=30)
        with trace.use_span(request):
            env.client.raise_event(iid, "go")
        state = env.client.wait_for_completion(iid, timeout=30)
        assert state.runtime_status is tl.Status.COMPLETED, state.failure_details

    found = by_name(exporter.get_finished_spans())
    [create] = found["create_orchestration:parent", "PRODUCER"]
    [orch] = found["orchestration:parent", "SERVER"]
    [timer] = found["orchestration:parent:timer", "INTERNAL"]
    [sub_wait] = found["orchestration:child", "CLIENT"]
    [sub] = found["orchestration:child", "SERVER"]
    [event] = found["orchestration_event:go", "PRODUCER"]
    waits = found["activity:greet", "CLIENT"]
    runs = found["activity:greet", "SERVER"]
    assert len(waits) == len(runs) == 2
    everything = [s for group in found.values() for s in group]
    assert {s.context.trace_id for s in everything} == {request.get_span_context().trace_id}

    def parent_of(span: Any) -> int:
        return span.parent.span_id if span.parent else 0

    assert parent_of(create) == request.get_span_context().span_id
    assert parent_of(event) == request.get_span_context().span_id
    assert parent_of(orch) == create.context.span_id
    assert parent_of(timer) == parent_of(sub_wait) == orch.context.span_id
    assert parent_of(sub) == sub_wait.context.span_id
    wait_ids = {w.context.span_id for w in waits}
    assert {parent_of(w) for w in waits} == {orch.context.span_id, sub.context.span_id}
    assert {parent_of(r) for r in runs} == wait_ids

    assert orch.attributes[spans.TYPE] == "orchestration"
    assert orch.attributes[spans.INSTANCE_ID] == iid
    assert orch.attributes[spans.STATUS] == "Completed"
    assert create.attributes[spans.INSTANCE_ID] == iid
    assert timer.attributes[spans.TYPE] == "timer" and spans.FIRE_AT in timer.attributes
    assert sub.attributes[spans.INSTANCE_ID] == sub_wait.attributes[spans.INSTANCE_ID]
    assert event.attributes[spans.EVENT_TARGET] == iid
    assert {r.attributes[spans.TASK_ID] for r in runs} == {0}
    # Virtual time: the timer's span covers the five seconds it waited, and the
    # orchestration's span covers its whole life.
    assert timer.end_time - timer.start_time >= 5 * 10**9
    assert orch.start_time <= timer.start_time and orch.end_time >= sub.end_time


def test_a_failing_activity_marks_its_spans(exporter: Any) -> None:
    provider = spans._STATE.chosen
    with TestEnv(app) as env:
        spans.use_provider(None)  # a client that does not trace
        # Due in an hour of virtual time, so no episode runs before tracing is back on.
        iid = env.client.start_new("failing", start_at=env.now() + timedelta(hours=1))
        spans.use_provider(provider)
        state = env.client.wait_for_completion(iid, timeout=30)
        assert state.runtime_status is tl.Status.FAILED
    found = by_name(exporter.get_finished_spans())
    assert ("create_orchestration:failing", "PRODUCER") not in found
    [run] = found["activity:explode", "SERVER"]
    [wait] = found["activity:explode", "CLIENT"]
    [orch] = found["orchestration:failing", "SERVER"]
    assert all(s.status.status_code.name == "ERROR" for s in (run, wait, orch))
    assert "boom" in (run.status.description or "")
    # No client span was open: the orchestration is the root of a derived trace.
    assert orch.parent is None
    assert wait.context.trace_id == orch.context.trace_id == run.context.trace_id


# -- off ------------------------------------------------------------------------------

_RUN = textwrap.dedent(
    """
    import sys
    {block}
    sys.path.insert(0, {tests!r})
    from test_tracing import app
    from taskloom.testing import TestEnv
    from taskloom.observability import spans
    with TestEnv(app) as env:
        iid = env.client.start_new("parent", 1)
        env.client.wait_for_start(iid, timeout=30)
        env.client.raise_event(iid, "go")
        state = env.client.wait_for_completion(iid, timeout=30)
    assert state.output == ["hello parent", "hello child 1"], state
    assert not spans.enabled()
    print(sorted(m for m in sys.modules if m.startswith("opentelemetry")))
    """
)

_BLOCK = textwrap.dedent(
    """
    import importlib.abc
    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "opentelemetry" or name.startswith("opentelemetry."):
                raise ImportError(f"blocked: {name}")
            return None
    sys.meta_path.insert(0, Block())
    """
)


@pytest.mark.parametrize("absent", [True, False], ids=["otel-absent", "otel-unconfigured"])
def test_no_opentelemetry_import_when_off(absent: bool) -> None:
    script = _RUN.format(block=_BLOCK if absent else "", tests=str(Path(__file__).parent))
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_a_bad_otlp_endpoint_is_refused_with_what_to_give() -> None:
    from taskloom.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="invalid OTLP endpoint"):
        spans.configure_otlp("collector:4318")


def test_an_otlp_endpoint_without_the_extra_says_what_to_install() -> None:
    script = textwrap.dedent(
        """
        import sys
        {block}
        from taskloom.errors import ConfigurationError
        from taskloom.observability import spans
        try:
            spans.configure_otlp("http://127.0.0.1:4318")
        except ConfigurationError as exc:
            print(exc)
        """
    ).format(block=_BLOCK)
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "pip install 'taskloom[otel]'" in done.stdout


def test_trace_id_of_an_instance() -> None:
    from datetime import UTC, datetime

    from taskloom.history import ExecutionStarted
    from taskloom.observability.context import trace_id_of

    header = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    now = datetime.now(UTC)
    traced = ExecutionStarted(now, name="o", instance_id="i", execution_id="e", trace_parent=header)
    assert trace_id_of(traced) == "0af7651916cd43dd8448eb211c80319c"
    untraced = ExecutionStarted(now, name="o", instance_id="i", execution_id="e")
    derived = OrchestrationTrace("i", "e", None).context.trace_id
    assert trace_id_of(untraced) == f"{derived:032x}"


def test_an_http_start_joins_the_callers_trace(exporter: Any) -> None:
    import httpx

    header = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    with TestEnv(app, http=True) as env:
        url = f"{env.base_url}/runtime/webhooks/durabletask/orchestrators/parent/http-1"
        response = httpx.post(url, json=3, headers={"traceparent": header}, timeout=30)
        assert response.status_code == 202, response.text
        env.client.wait_for_start("http-1", timeout=30)
        env.client.raise_event("http-1", "go")
        state = env.client.wait_for_completion("http-1", timeout=30)
        assert state.runtime_status is tl.Status.COMPLETED
    found = by_name(exporter.get_finished_spans())
    [create] = found["create_orchestration:parent", "PRODUCER"]
    [orch] = found["orchestration:parent", "SERVER"]
    assert create.parent is not None and create.parent.span_id == 0xB7AD6B7169203331
    assert create.context.trace_id == orch.context.trace_id == 0x0AF7651916CD43DD8448EB211C80319C
