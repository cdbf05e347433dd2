"""Logging for ``taskloom serve``: plain lines, or one JSON object per line.

Records may carry ``extra={"instance_id": ...}`` (and the access log's ``method``,
``path``, ``status``, ``duration_ms``, ``key_id``); the JSON form keeps them as fields, so
a log store can filter by instance id. While tracing is on, a line logged inside a span
(an activity's run, a client call) also carries its ``trace_id`` and ``span_id``, so a
log store links it to the trace. Keys, link tokens and query strings are never
logged: the access log writes the path only, with link tokens masked.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

from taskloom.observability import spans

_EXTRA_FIELDS = (
    "instance_id",
    "orchestrator",
    "method",
    "path",
    "status",
    "duration_ms",
    "key_id",
    "trace_id",
    "span_id",
)


class JsonFormatter(logging.Formatter):
    """``{"time": ..., "level": ..., "logger": ..., "message": ..., "instance_id": ...}``."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        ids = spans.current_ids()
        if ids is not None:
            entry["trace_id"], entry["span_id"] = ids
        for field in _EXTRA_FIELDS:
            value = getattr(record, field, None)
            if value is not None:
                entry[field] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class PlainFormatter(logging.Formatter):
    """The usual line, with ``instance=ID`` appended when the record names one."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        instance_id = getattr(record, "instance_id", None)
        return f"{line} instance={instance_id}" if instance_id else line


def configure(*, json_logs: bool, level: int = logging.INFO) -> None:
    """Send taskloom's and uvicorn's logs to stderr in the chosen form."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if json_logs else PlainFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # uvicorn's access log would print query strings, which may carry ?code=KEY.
    logging.getLogger("uvicorn.access").disabled = True
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
