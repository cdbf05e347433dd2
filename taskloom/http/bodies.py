"""Request and response bodies of the management API: JSON in, JSON out."""

from __future__ import annotations

import json
from typing import Any

from fastapi import HTTPException, Request
from fastapi.responses import JSONResponse

_MAX_DEPTH = 64
#: Room for the JSON around a value as large as the store's payload limit.
_ENVELOPE = 64 * 1024
_DEFAULT_LIMIT = 64 * 1024 * 1024


class JSON(JSONResponse):
    """JSON that can hold what the data converter decodes (datetimes, dataclasses, ...)."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, default=_jsonable, separators=(",", ":")).encode()


def _jsonable(value: Any) -> Any:
    from taskloom.converter import default_converter

    return json.loads(default_converter.dumps(value))


def body_limit(request: Request) -> int:
    """The largest JSON body the management API reads: the store's payload limit (the
    largest value it keeps, ``open_store(..., payload_limit=)``) plus room for the
    JSON around it."""
    store = request.app.state.taskloom_client.store
    payloads = getattr(store, "payloads", None)
    limit = getattr(payloads, "limit", _DEFAULT_LIMIT)
    return int(limit) + _ENVELOPE


async def read_capped(request: Request, limit: int, why: str) -> bytes:
    """The body, refused with 413 as soon as it is known to exceed ``limit`` bytes: by
    its Content-Length before reading, or while reading a chunked one. ``why`` says what
    the limit is, for the message."""
    too_big = f"the request body exceeds {limit:,} bytes, {why}"
    length = request.headers.get("content-length")
    if length is not None:
        if not length.strip().isdigit():
            raise HTTPException(400, f"Content-Length {length!r} is not a number of bytes")
        if int(length) > limit:
            raise HTTPException(413, f"{too_big} (it says {int(length):,})")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPException(413, too_big)
        chunks.append(chunk)
    return b"".join(chunks)


async def json_body(request: Request) -> Any:
    """The request body as a JSON value (None when empty); 400 when it is not JSON, 413
    when it is larger than the store keeps (:func:`body_limit`)."""
    limit = body_limit(request)
    why = (
        "the largest value this store keeps plus 64 KiB; raise the store's payload_limit "
        "(open_store(..., payload_limit=...)) to send more"
    )
    raw = await read_capped(request, limit, why)
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
