-- Tracing (docs/observability.md): the W3C traceparent of the span that waits for an
-- activity, so the worker that runs it, on any host, records its run in the same trace.
ALTER TABLE work_items ADD COLUMN trace_parent TEXT;
