"""OpenTelemetry spans with the Durable Task names and attributes.

Tracing is on when OpenTelemetry's SDK is the global tracer provider: either the
program set one up (a web app that starts orchestrations), or :func:`configure_otlp`
did (``taskloom serve`` when ``OTEL_EXPORTER_OTLP_ENDPOINT`` or ``--otlp-endpoint`` is
set). Otherwise every function here returns at once: :func:`tracer` is one dictionary
look-up while ``opentelemetry`` was never imported, and nothing of it is imported by
taskloom unless an OTLP endpoint is configured.

Spans whose ids taskloom derives (:mod:`taskloom.observability.context`) are emitted
after the fact with their real start and end times (:func:`emit`): the SDK tracer is
given an id generator that returns the wanted ids while such a span is created.
"""

from __future__ import annotations

import contextlib
import contextvars
import importlib
import logging
import os
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from taskloom._version import __version__
from taskloom.errors import ConfigurationError
from taskloom.observability.context import TraceContext

log = logging.getLogger("taskloom.observability")

# Attribute names of the Durable Task SDKs' tracing schema.
TYPE = "durabletask.type"
NAME = "durabletask.task.name"
VERSION = "durabletask.task.version"
INSTANCE_ID = "durabletask.task.instance_id"
EXECUTION_ID = "durabletask.task.execution_id"
STATUS = "durabletask.task.status"
TASK_ID = "durabletask.task.task_id"
EVENT_TARGET = "durabletask.event.target_instance_id"
FIRE_AT = "durabletask.fire_at"
#: taskloom's own: the attempt of an activity run (1 for the first).
ATTEMPT = "taskloom.activity.attempt"

Attributes = Mapping[str, str | int | bool]

# While a span with derived ids is created: (trace id or None, span id).
_wanted: contextvars.ContextVar[tuple[int | None, int] | None] = contextvars.ContextVar(
    "taskloom_wanted_span_ids", default=None
)


class _Ids:
    """Wraps the SDK tracer's id generator: the wanted ids, else the usual random ones."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def generate_span_id(self) -> int:
        wanted = _wanted.get()
        return wanted[1] if wanted is not None else int(self.inner.generate_span_id())

    def generate_trace_id(self) -> int:
        wanted = _wanted.get()
        if wanted is not None and wanted[0] is not None:
            return wanted[0]
        return int(self.inner.generate_trace_id())

    def is_trace_id_random(self) -> bool:
        check = getattr(self.inner, "is_trace_id_random", None)
        return bool(check()) if check is not None else False


@dataclass
class _State:
    provider: Any = None  # the global provider the tracer was made from
    tracer: Any = None  # None: tracing off
    owned: Any = None  # the provider configure_otlp made (flushed at shutdown)
    chosen: Any = None  # use_provider's, instead of the global one


def use_provider(provider: Any) -> None:
    """Trace with this SDK ``TracerProvider`` instead of the global one (None: the global
    one again); for programs that keep several providers, and for tests."""
    _STATE.chosen = provider


_STATE = _State()


def tracer() -> Any | None:
    """taskloom's SDK tracer, or None while tracing is off (cheap: call it freely)."""
    trace = sys.modules.get("opentelemetry.trace")
    if trace is None:
        return None
    provider = _STATE.chosen or trace.get_tracer_provider()
    if provider is not _STATE.provider:
        _STATE.provider = provider
        _STATE.tracer = _make_tracer(provider)
    return _STATE.tracer


def enabled() -> bool:
    return tracer() is not None


def _make_tracer(provider: Any) -> Any | None:
    sdk = sys.modules.get("opentelemetry.sdk.trace")
    if sdk is None or not isinstance(provider, sdk.TracerProvider):
        return None  # the API's no-op (or a foreign) provider: nothing would be recorded
    made = provider.get_tracer("taskloom", __version__)
    if not hasattr(made, "id_generator"):
        return None
    made.id_generator = _Ids(made.id_generator)
    return made


def _otel() -> Any:
    return sys.modules["opentelemetry.trace"]


def _parent(parent: TraceContext | None) -> Any:
    """An OpenTelemetry context whose current span is ``parent`` (empty for a root)."""
    trace = _otel()
    if parent is None:
        return importlib.import_module("opentelemetry.context").Context()
    state = trace.TraceState.from_header([parent.state]) if parent.state else None
    span_context = trace.SpanContext(
        parent.trace_id,
        parent.span_id,
        is_remote=True,
        trace_flags=trace.TraceFlags(parent.flags),
        trace_state=state,
    )
    return trace.set_span_in_context(trace.NonRecordingSpan(span_context))


def _ns(moment: datetime) -> int:
    return int(moment.timestamp() * 1_000_000) * 1000


def _kind(kind: str) -> Any:
    return getattr(_otel().SpanKind, kind.upper())


def emit(
    name: str,
    kind: str,
    parent: TraceContext | None,
    start: datetime,
    end: datetime,
    attributes: Attributes,
    *,
    ids: TraceContext | None = None,
    error: str | None = None,
) -> None:
    """Record a finished span; with ``ids``, that span's trace and span id."""
    active = tracer()
    if active is None:
        return
    wanted = None
    if ids is not None:
        wanted = (ids.trace_id if parent is None else None, ids.span_id)
    token = _wanted.set(wanted)
    try:
        span = active.start_span(
            name,
            context=_parent(parent),
            kind=_kind(kind),
            attributes=dict(attributes),
            start_time=_ns(start),
        )
    finally:
        _wanted.reset(token)
    if error is not None:
        span.set_status(_otel().Status(_otel().StatusCode.ERROR, error))
    span.end(end_time=max(_ns(end), _ns(start)))


class LiveSpan:
    """A span open around work taskloom does now (a client call, an activity run)."""

    def __init__(self, span: Any) -> None:
        self._span = span

    @property
    def context(self) -> TraceContext | None:
        ctx = self._span.get_span_context()
        if not ctx.is_valid:
            return None
        state = ctx.trace_state.to_header() if ctx.trace_state else None
        return TraceContext(ctx.trace_id, ctx.span_id, int(ctx.trace_flags), state or None)

    def set(self, key: str, value: str | int | bool) -> None:
        self._span.set_attribute(key, value)

    def fail(self, message: str) -> None:
        self._span.set_status(_otel().Status(_otel().StatusCode.ERROR, message))


@contextlib.contextmanager
def live(
    name: str,
    kind: str,
    attributes: Attributes,
    parent: TraceContext | None = None,
    *,
    ambient: bool = False,
) -> Iterator[LiveSpan | None]:
    """Open a span for the ``with`` block (current inside it, so spans of libraries the
    code calls nest under it); yields None while tracing is off. Its parent is
    ``parent``, or with ``ambient`` the caller's current span, else none (a root)."""
    active = tracer()
    if active is None:
        yield None
        return
    context = None if ambient and parent is None else _parent(parent)
    span = active.start_span(name, context=context, kind=_kind(kind), attributes=dict(attributes))
    with _otel().use_span(span, end_on_exit=True, record_exception=False):
        yield LiveSpan(span)


@contextlib.contextmanager
def incoming(traceparent: str | None, tracestate: str | None = None) -> Iterator[None]:
    """Make a caller's W3C context (an HTTP request's ``traceparent`` header) current for
    the block, so what it starts joins the caller's trace; a no-op without tracing or
    without a valid header."""
    parent = TraceContext.parse(traceparent, tracestate) if tracer() is not None else None
    if parent is None:
        yield
        return
    context = importlib.import_module("opentelemetry.context")
    token = context.attach(_parent(parent))
    try:
        yield
    finally:
        context.detach(token)


def current_ids() -> tuple[str, str] | None:
    """The current span's (trace id, span id) in hex, for log lines; None without one."""
    trace = sys.modules.get("opentelemetry.trace")
    if trace is None:
        return None
    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return None
    return f"{ctx.trace_id:032x}", f"{ctx.span_id:016x}"


# -- OTLP export ------------------------------------------------------------------------


def configure_otlp(endpoint: str | None = None, service_name: str = "taskloom") -> bool:
    """Export spans by OTLP/HTTP to ``endpoint`` (e.g. ``http://collector:4318``), or to
    the standard ``OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT`` when none is given; True when
    tracing is on afterwards. A program that set up its own SDK provider keeps it."""
    env = os.environ
    if env.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return False
    from_env = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get(
        "OTEL_EXPORTER_OTLP_ENDPOINT"
    )
    if endpoint is None and not from_env:
        return False
    if endpoint is not None and not endpoint.startswith(("http://", "https://")):
        raise ConfigurationError(
            f"invalid OTLP endpoint {endpoint!r}: give the collector's OTLP/HTTP URL, "
            "e.g. http://127.0.0.1:4318"
        )
    try:
        from opentelemetry import trace
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError as exc:
        message = (
            f"OTLP export needs OpenTelemetry ({exc.name} is missing): pip install 'taskloom[otel]'"
        )
        if endpoint is not None:
            raise ConfigurationError(message) from exc
        log.warning("%s; tracing stays off", message)
        return False
    if isinstance(trace.get_tracer_provider(), TracerProvider):
        return enabled()
    if endpoint is not None:
        url = endpoint.rstrip("/")
        url = url if url.endswith("/v1/traces") else url + "/v1/traces"
        exporter = OTLPSpanExporter(endpoint=url)
    else:
        exporter = OTLPSpanExporter()  # reads the endpoint, headers, timeout from the env
    attributes = {} if env.get("OTEL_SERVICE_NAME") else {"service.name": service_name}
    provider = TracerProvider(resource=Resource.create(attributes))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    _STATE.owned = provider
    log.info("tracing: exporting spans by OTLP to %s", endpoint or from_env)
    return enabled()


def shutdown() -> None:
    """Flush and stop the exporter :func:`configure_otlp` started (at a clean stop)."""
    owned, _STATE.owned = _STATE.owned, None
    if owned is not None:
        try:
            owned.shutdown()
        except Exception:
            log.exception("flushing spans failed")
