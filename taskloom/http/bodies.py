"""Request and response bodies of the management API: JSON in, JSON out."""

from __future__ import annotations

import json
from typing import Any

from fastapi import HTTPException, Request
from fastapi.responses import JSONResponse

_MAX_DEPTH = 64


class JSON(JSONResponse):
    """JSON that can hold what the data converter decodes (datetimes, dataclasses, ...)."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, default=_jsonable, separators=(",", ":")).encode()


def _jsonable(value: Any) -> Any:
    from taskloom.converter import default_converter

    return json.loads(default_converter.dumps(value))


async def json_body(request: Request) -> Any:
    """The request body as a JSON value (None when empty); 400 when it is not JSON."""
    raw = await request.body()
    if not raw.strip():
        return None
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):
        raise HTTPException(400, "the request body is not valid JSON") from None
    if not _shallow(value):
        raise HTTPException(400, f"the request body nests deeper than {_MAX_DEPTH} levels")
    return value


def _shallow(value: Any) -> bool:
    level: list[Any] = [value]
    for _ in range(_MAX_DEPTH):
        nxt: list[Any] = []
        for item in level:
            if isinstance(item, dict):
                nxt.extend(item.values())
            elif isinstance(item, list):
                nxt.extend(item)
        if not nxt:
            return True
        level = nxt
    return False
