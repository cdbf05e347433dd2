"""The default data converter: Python values to and from the stored JSON text.

Inputs, outputs and event data are stored as JSON text that other languages can read
(the Durable Functions HTTP API hands it out as is). Plain JSON values encode as plain
JSON; tuples become lists. Other supported types encode as a *tagged object* with one
reserved key::

    {"__tl__": "datetime", "v": "2026-01-02T03:04:05+00:00"}
    {"__tl__": "dataclass", "type": "claims.models:Claim", "v": {"id": 1, ...}}

Supported tags: ``datetime``, ``date``, ``time``, ``timedelta``, ``uuid``, ``decimal``,
``bytes`` (base64), ``set``, ``frozenset``, ``dataclass`` and ``pydantic`` (v2 models;
pydantic itself stays optional). A user dict that has the reserved key as one of its own
keys is written as ``{"__tl__": "dict", "v": [[key, value], ...]}`` so it round-trips.

Anything else, a dict key that is not a ``str``, NaN or an infinity raises
:class:`~taskloom.errors.SerializationError` naming the type and the path, such as
``$.items[2].owner``.

Encoding takes a fast path for the common case: one cheap scan of the containers (no
copies), then a single C-level ``json.dumps`` whose ``default`` hook tags the other types.
Only when that fails does a slower walk run, which builds the tagged tree, escapes the
reserved key and names the path of the offending value.
"""

from __future__ import annotations

import base64
import dataclasses
import importlib
import json
import math
import sys
import uuid
from collections.abc import Callable
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from taskloom.errors import SerializationError

__all__ = ["TAG", "DataConverter", "default_converter"]

TAG = "__tl__"
"""The reserved key that marks a tagged object."""

_TAG_TEXT = f'"{TAG}"'
_SUPPORTED = "use JSON values, dataclasses, pydantic models, datetime, UUID, Decimal or bytes"
# Values json.dumps writes without help and that hold no nested values.
_SCALARS = frozenset({str, int, float, bool, type(None)})


class _Fallback(Exception):
    """Raised inside the fast path to hand the value to the slow, path-tracking walk."""


class DataConverter:
    """Turns values into JSON text and back; see the module docstring for the format."""

    def dumps(self, value: Any, *, what: str = "value") -> str:
        """Encode ``value`` as compact JSON text.

        ``what`` names the value in error messages, e.g. ``"input of orchestration 'approve'"``.
        Raises :class:`SerializationError` for values that cannot be encoded.
        """
        try:
            if _plain(value):
                return _FAST.encode(value)
        except (_Fallback, ValueError, TypeError, RecursionError):
            pass
        tree = _Encoder(what).encode(value, "$", set())
        return json.dumps(tree, separators=(",", ":"), allow_nan=False)

    def loads(self, text: str | None, *, what: str = "value") -> Any:
        """Decode JSON text written by :meth:`dumps`; ``None`` decodes to ``None``.

        Raises :class:`SerializationError` for malformed text, unknown tags, and classes
        the worker cannot import.
        """
        if text is None:
            return None
        try:
            if _TAG_TEXT in text:
                return json.loads(text, object_hook=_decode_object)
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise SerializationError(
                f"cannot decode {what}: malformed JSON at line {exc.lineno} column "
                f"{exc.colno}: {exc.msg}"
            ) from None
        except SerializationError as exc:
            raise SerializationError(f"cannot decode {what}: {exc}") from exc.__cause__
        except RecursionError:
            raise SerializationError(f"cannot decode {what}: nested too deeply") from None


default_converter = DataConverter()
"""The converter taskloom uses unless an app is given another."""


# --- encoding: fast path -------------------------------------------------------------


def _plain(value: Any) -> bool:
    """True when every dict inside ``value`` has only str keys, none of them reserved.

    Only lists, tuples and dicts are entered; other objects are left to the ``default``
    hook, which checks what it returns with this same function.
    """
    if isinstance(value, dict):
        if TAG in value:
            return False
        for key, item in value.items():
            if type(key) is not str:
                return False
            if type(item) not in _SCALARS and not _plain(item):
                return False
    elif isinstance(value, (list, tuple)):
        for item in value:
            if type(item) not in _SCALARS and not _plain(item):
                return False
    return True


def _fast_default(obj: Any) -> Any:
    """``json.dumps`` hook: tag a supported non-JSON value, or give up on the fast path."""
    encode = _LEAF_ENCODERS.get(type(obj))
    if encode is not None:
        return encode(obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        fields = {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
        if not _plain(fields):
            raise _Fallback
        return {TAG: "dataclass", "type": _class_path(type(obj)), "v": fields}
    model = _pydantic_dump(obj)
    if model is not None:
        if not _plain(model):
            raise _Fallback
        return {TAG: "pydantic", "type": _class_path(type(obj)), "v": model}
    raise _Fallback


def _pydantic_dump(obj: Any) -> Any | None:
    """``obj.model_dump(mode="json")`` if ``obj`` is a pydantic v2 model, else ``None``."""
    # A model can only exist once pydantic is imported, so never import it here.
    pydantic = sys.modules.get("pydantic")
    if pydantic is None or not isinstance(obj, pydantic.BaseModel):
        return None
    return obj.model_dump(mode="json")


def _class_path(cls: type) -> str:
    """``"module:QualName"``; raises ``_Fallback`` for classes no worker could import."""
    if "<locals>" in cls.__qualname__:
        raise _Fallback
    return f"{cls.__module__}:{cls.__qualname__}"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


# One encoder for every fast-path call: json.dumps with options builds a new one each time.
_FAST = json.JSONEncoder(separators=(",", ":"), allow_nan=False, default=_fast_default)


# Exact types only: a subclass (say, a pandas Timestamp) would not come back as itself.
_LEAF_ENCODERS: dict[type, Callable[[Any], dict[str, Any]]] = {
    datetime: lambda v: {TAG: "datetime", "v": v.isoformat()},
    date: lambda v: {TAG: "date", "v": v.isoformat()},
    time: lambda v: {TAG: "time", "v": v.isoformat()},
    timedelta: lambda v: {TAG: "timedelta", "v": [v.days, v.seconds, v.microseconds]},
    uuid.UUID: lambda v: {TAG: "uuid", "v": str(v)},
    Decimal: lambda v: {TAG: "decimal", "v": str(v)},
    bytes: lambda v: {TAG: "bytes", "v": _b64(v)},
}


# --- encoding: slow path ---------------------------------------------------------------


def _type_name(obj: Any) -> str:
    cls = type(obj)
    if cls.__module__ == "builtins":
        return cls.__qualname__
    return f"{cls.__module__}.{cls.__qualname__}"


def _key_path(path: str, key: str) -> str:
    if key.isidentifier():
        return f"{path}.{key}"
    return f"{path}[{json.dumps(key)}]"


class _Encoder:
    """Builds the tagged tree while tracking the path, so errors can say where."""

    def __init__(self, what: str) -> None:
        self.what = what

    def fail(self, problem: str) -> SerializationError:
        return SerializationError(f"cannot serialize {self.what}: {problem}")

    def unsupported(self, obj: Any, path: str) -> SerializationError:
        return self.fail(f"value at {path} has type {_type_name(obj)!r}; {_SUPPORTED}")

    def encode(self, obj: Any, path: str, active: set[int]) -> Any:
        """Return a JSON-ready copy of ``obj``; ``active`` holds containers on the path."""
        if obj is None or isinstance(obj, (str, int)):
            return obj
        if isinstance(obj, float):
            if not math.isfinite(obj):
                raise self.fail(
                    f"value at {path} is {obj!r}, which JSON cannot hold; use None or a Decimal"
                )
            return obj
        encode_leaf = _LEAF_ENCODERS.get(type(obj))
        if encode_leaf is not None:
            return encode_leaf(obj)
        if id(obj) in active:
            raise self.fail(f"value at {path} contains itself (a circular reference)")
        active.add(id(obj))
        try:
            return self.encode_container(obj, path, active)
        except RecursionError:
            raise self.fail(f"value at {path} is nested too deeply") from None
        finally:
            active.discard(id(obj))

    def encode_container(self, obj: Any, path: str, active: set[int]) -> Any:
        if isinstance(obj, dict):
            return self.encode_dict(obj, path, active)
        if isinstance(obj, list | tuple):
            return [self.encode(item, f"{path}[{i}]", active) for i, item in enumerate(obj)]
        if isinstance(obj, set | frozenset):
            items = [self.encode(item, f"{path}[{i}]", active) for i, item in enumerate(obj)]
            # Sort by encoded text so equal sets give equal text in every process.
            items.sort(key=lambda item: json.dumps(item, sort_keys=True))
            return {TAG: "frozenset" if isinstance(obj, frozenset) else "set", "v": items}
        if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
            fields = {
                f.name: self.encode(getattr(obj, f.name), _key_path(path, f.name), active)
                for f in dataclasses.fields(obj)
            }
            return {TAG: "dataclass", "type": self.class_path(obj, path), "v": fields}
        model = _pydantic_dump(obj)
        if model is not None:
            v = self.encode(model, path, active)
            return {TAG: "pydantic", "type": self.class_path(obj, path), "v": v}
        raise self.unsupported(obj, path)

    def encode_dict(self, obj: dict[Any, Any], path: str, active: set[int]) -> Any:
        out: dict[str, Any] = {}
        for key, item in obj.items():
            if not isinstance(key, str):
                raise self.fail(
                    f"dict at {path} has key {key!r} of type {_type_name(key)!r}; "
                    "JSON object keys must be str"
                )
            out[key] = self.encode(item, _key_path(path, key), active)
        if TAG in out:
            return {TAG: "dict", "v": [[key, item] for key, item in out.items()]}
        return out

    def class_path(self, obj: Any, path: str) -> str:
        cls = type(obj)
        if "<locals>" in cls.__qualname__:
            raise self.fail(
                f"value at {path} has type {_type_name(obj)!r}, defined inside a function; "
                "define it at module level so the worker can import it"
            )
        return f"{cls.__module__}:{cls.__qualname__}"


# --- decoding ----------------------------------------------------------------------------


def _decode_object(obj: dict[str, Any]) -> Any:
    """``json.loads`` object hook: turn a tagged object back into its value."""
    tag = obj.get(TAG)
    if tag is None:
        return obj
    decode = _DECODERS.get(tag) if isinstance(tag, str) else None
    if decode is None:
        raise SerializationError(
            f"unknown tag {TAG}={tag!r}; it was written by a newer taskloom or another program"
        )
    try:
        return decode(obj)
    except SerializationError:
        raise
    except Exception as exc:
        shown = repr(obj.get("v"))
        shown = shown if len(shown) <= 80 else shown[:77] + "..."
        raise SerializationError(f"bad {tag!r} value {shown}: {exc}") from exc


_MISSING = object()


def _import_class(path: Any, kind: str) -> Any:
    if not isinstance(path, str) or ":" not in path:
        raise SerializationError(f"bad {kind} type name {path!r}; expected 'module:QualName'")
    module_name, qualname = path.split(":", 1)
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise SerializationError(
            f"{kind} type {qualname!r} from module {module_name!r} cannot be imported ({exc}); "
            "the class must be importable by the worker"
        ) from exc
    for part in qualname.split("."):
        target = getattr(target, part, _MISSING)
        if target is _MISSING:
            raise SerializationError(
                f"{kind} type {path!r} not found: module {module_name!r} has no {qualname!r}; "
                "the class must be importable by the worker"
            )
    return target


def _decode_dataclass(obj: dict[str, Any]) -> Any:
    cls = _import_class(obj.get("type"), "dataclass")
    if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
        raise SerializationError(f"{obj.get('type')!r} is not a dataclass; refusing to build it")
    values: dict[str, Any] = obj["v"]
    init_fields = {f.name for f in dataclasses.fields(cls) if f.init}
    instance = cls(**{k: v for k, v in values.items() if k in init_fields})
    for key, value in values.items():
        if key not in init_fields:
            object.__setattr__(instance, key, value)
    return instance


def _decode_pydantic(obj: dict[str, Any]) -> Any:
    cls = _import_class(obj.get("type"), "pydantic model")
    pydantic = sys.modules.get("pydantic")
    is_model = (
        isinstance(cls, type) and pydantic is not None and issubclass(cls, pydantic.BaseModel)
    )
    if not is_model:
        raise SerializationError(
            f"{obj.get('type')!r} is not a pydantic model; refusing to build it"
        )
    # Validate from JSON, not Python objects, so strict models accept their own dump.
    return cls.model_validate_json(json.dumps(obj["v"]))


def _decode_dict(obj: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in obj["v"]}


def _decode_timedelta(obj: dict[str, Any]) -> timedelta:
    days, seconds, microseconds = obj["v"]
    return timedelta(days=days, seconds=seconds, microseconds=microseconds)


_DECODERS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "datetime": lambda o: datetime.fromisoformat(o["v"]),
    "date": lambda o: date.fromisoformat(o["v"]),
    "time": lambda o: time.fromisoformat(o["v"]),
    "timedelta": _decode_timedelta,
    "uuid": lambda o: uuid.UUID(o["v"]),
    "decimal": lambda o: Decimal(o["v"]),
    "bytes": lambda o: base64.b64decode(o["v"], validate=True),
    "set": lambda o: set(o["v"]),
    "frozenset": lambda o: frozenset(o["v"]),
    "dict": _decode_dict,
    "dataclass": _decode_dataclass,
    "pydantic": _decode_pydantic,
}
