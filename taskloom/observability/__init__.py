"""Traces, metrics and log fields (see ``docs/observability.md``).

- :mod:`taskloom.observability.spans`: OpenTelemetry spans with the Durable Task names
  and attributes, and W3C trace contexts as plain values (nothing is imported from
  ``opentelemetry`` unless it is installed and tracing is on).
- :mod:`taskloom.observability.metrics`: counters, gauges and histograms, written in
  Prometheus text for ``/metrics``.

This package sits just above the foundation layer: the storage, the client and the
runtime use it; it imports only the foundation.
"""
