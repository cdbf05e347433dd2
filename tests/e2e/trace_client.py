"""The client process of ``tests/e2e/test_traces.py``: a program that set up
OpenTelemetry itself (as a web app would) and starts an orchestration inside its own
span. Prints ``{"instance_id": ..., "trace_id": ...}``.

Usage: ``python trace_client.py STORE_URL HUB OTLP_TRACES_URL``
"""

from __future__ import annotations

import json
import sys

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

import taskloom as tl


def main(store_url: str, hub: str, endpoint: str) -> None:
    provider = TracerProvider(resource=Resource.create({"service.name": "shop-frontend"}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    trace.set_tracer_provider(provider)
    tracer = trace.get_tracer("shop")
    with tl.Client(store_url, hub=hub) as client:
        with tracer.start_as_current_span("POST /checkout") as request:
            iid = client.start_new("checkout", 7)
        client.wait_for_start(iid, timeout=60)
        with trace.use_span(request):
            client.raise_event(iid, "approved", True)
        state = client.wait_for_completion(iid, timeout=60)
        assert state.runtime_status is tl.Status.COMPLETED, state.failure_details
    provider.shutdown()
    trace_id = f"{request.get_span_context().trace_id:032x}"
    print(json.dumps({"instance_id": iid, "trace_id": trace_id}))


if __name__ == "__main__":
    main(*sys.argv[1:4])
