"""JSON helpers shared by the formats: strict parsing of bodies, data to plain JSON,
batch errors named by index."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from taskloom.cloudevents import rules
from taskloom.errors import InvalidCloudEventError

if TYPE_CHECKING:
    from taskloom.cloudevents.event import CloudEvent

Encode = Callable[[Any], Any]


def at_index(index: int, parse: Callable[[Any], CloudEvent], item: Any) -> CloudEvent:
    """``parse(item)``, its error's attribute prefixed with ``batch[index]``."""
    try:
        return parse(item)
    except InvalidCloudEventError as exc:
        where = f"batch[{index}]" if exc.attribute == "event" else f"batch[{index}].{exc.attribute}"
        raise InvalidCloudEventError(where, exc.rule) from None


def parse_json_body(body: bytes) -> Any:
    """Strict JSON of UTF-8 bytes: no duplicate members, no NaN or Infinity."""
    if not isinstance(body, bytes | bytearray | memoryview):
        rules.fail("body", f"must be bytes, not {type(body).__name__}")
    try:
        text = bytes(body).decode("utf-8")
    except UnicodeDecodeError as exc:
        rules.fail("body", f"must be UTF-8 encoded JSON: {exc.reason} at byte {exc.start}")
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        rules.fail(
            "body", f"must be well-formed JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        )


def to_json_value(value: Any, encode: Encode | None, path: str) -> Any:
    """``value`` as plain JSON (tuples become lists), ``encode`` applied to the rest."""
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            rules.fail("data", f"must be a JSON value: {path} is {value!r}")
        return value
    if isinstance(value, list | tuple):
        return [to_json_value(v, encode, f"{path}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict):
        out = {}
        for key, v in value.items():
            if not isinstance(key, str):
                rules.fail("data", f"must be a JSON value: {path} has the key {key!r}")
            out[key] = to_json_value(v, encode, f"{path}.{key}")
        return out
    if encode is not None:
        encoded = encode(value)
        if encoded is not value:
            return to_json_value(encoded, None, path)
    rules.fail(
        "data",
        f"must be a JSON value or bytes: {path} is a {type(value).__name__} "
        "(pass encode= to turn it into JSON)",
    )


def dump(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode("utf-8")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            rules.fail("body", f"must not repeat the member {key!r} in one JSON object")
        out[key] = value
    return out


def _no_constant(name: str) -> Any:
    rules.fail("body", f"must be standard JSON: {name} is not a JSON value")
