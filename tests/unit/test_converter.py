"""The default data converter: round trips, the stored format, and its error messages."""

from __future__ import annotations

import dataclasses
import json
import math
import socket
import sys
import uuid
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any

import pydantic
import pytest

from taskloom.converter import TAG, DataConverter, default_converter
from taskloom.errors import SerializationError

conv = DataConverter()


@dataclasses.dataclass
class Address:
    street: str
    city: str


@dataclasses.dataclass(frozen=True)
class Customer:
    name: str
    address: Address
    joined: date
    tags: list[str] = dataclasses.field(default_factory=list)
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)
    computed: int = dataclasses.field(init=False, default=0)


class Item(pydantic.BaseModel):
    sku: str
    price: Decimal
    when: datetime


class Order(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(strict=True)

    id: uuid.UUID
    items: list[Item]
    meta: dict[str, Any] = {}


class NotADataclass:
    pass


def roundtrip(value: Any) -> Any:
    return conv.loads(conv.dumps(value))


# --- plain JSON ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        0,
        -12345678901234567890,
        1.5,
        "",
        "héllo \u2603",
        [],
        {},
        {"a": [1, 2, {"b": None}], "c": "d"},
    ],
)
def test_plain_json_values_round_trip_as_plain_json(value: Any) -> None:
    text = conv.dumps(value)
    assert json.loads(text) == value
    assert TAG not in text
    assert roundtrip(value) == value


def test_output_is_compact() -> None:
    assert conv.dumps({"a": [1, 2]}) == '{"a":[1,2]}'


def test_tuples_become_lists() -> None:
    assert roundtrip({"t": (1, (2, 3))}) == {"t": [1, [2, 3]]}


def test_none_text_loads_as_none() -> None:
    assert conv.loads(None) is None
    assert conv.dumps(None) == "null"


def test_default_converter_is_a_data_converter() -> None:
    assert isinstance(default_converter, DataConverter)
    assert default_converter.loads(default_converter.dumps([1, "x"])) == [1, "x"]


# --- tagged types --------------------------------------------------------------------------

AWARE = datetime(2026, 3, 4, 5, 6, 7, 890123, tzinfo=timezone(timedelta(hours=-5)))


@pytest.mark.parametrize(
    "value",
    [
        AWARE,
        datetime(2026, 3, 4, 5, 6, 7),
        datetime(2026, 1, 1, tzinfo=UTC),
        date(2026, 2, 28),
        time(23, 59, 1, 5),
        timedelta(days=-3, seconds=7, microseconds=11),
        uuid.UUID("12345678-1234-5678-1234-567812345678"),
        Decimal("0.1"),
        Decimal("123456789012345678901234567890.000000000000000001"),
        Decimal("-0E-7"),
        b"",
        b"\x00\xffbinary\n",
        {1, 2, 3},
        frozenset({"a", "b"}),
    ],
)
def test_tagged_value_round_trips_exactly(value: Any) -> None:
    back = roundtrip(value)
    assert type(back) is type(value)
    assert back == value
    assert str(back) == str(value)  # Decimal exponent, datetime tz, ...


def test_datetime_keeps_its_offset() -> None:
    back = roundtrip(AWARE)
    assert back.utcoffset() == timedelta(hours=-5)
    assert roundtrip(datetime(2026, 1, 1)).tzinfo is None


def test_tag_format_is_readable_json() -> None:
    assert json.loads(conv.dumps(uuid.UUID(int=1))) == {
        TAG: "uuid",
        "v": "00000000-0000-0000-0000-000000000001",
    }
    assert json.loads(conv.dumps(Decimal("1.10"))) == {TAG: "decimal", "v": "1.10"}
    assert json.loads(conv.dumps(b"hi")) == {TAG: "bytes", "v": "aGk="}
    assert json.loads(conv.dumps(AWARE)) == {TAG: "datetime", "v": AWARE.isoformat()}


def test_tagged_values_nested_in_dicts_and_lists() -> None:
    value = {
        "when": [AWARE, date(2020, 1, 1)],
        "ids": {"a": uuid.UUID(int=5), "b": [Decimal("2.50"), b"x"]},
        "plain": 1,
        "span": (timedelta(hours=1),),
    }
    back = roundtrip(value)
    assert back == {**value, "span": [timedelta(hours=1)]}
    assert type(back["ids"]["b"][0]) is Decimal


def test_set_encoding_is_deterministic() -> None:
    # Equal sets must give equal text (replays compare stored payloads).
    assert conv.dumps({"b", "a", "c"}) == conv.dumps({"c", "b", "a"})


# --- dataclasses -----------------------------------------------------------------------------


def make_customer() -> Customer:
    return Customer(
        name="Ann",
        address=Address("1 Main St", "Springfield"),
        joined=date(2020, 5, 17),
        tags=["vip"],
        extra={"score": Decimal("9.5"), "seen": [AWARE]},
    )


def test_nested_dataclass_round_trips() -> None:
    customer = make_customer()
    back = roundtrip({"customers": [customer, customer]})
    assert back == {"customers": [customer, customer]}
    assert type(back["customers"][0]) is Customer
    assert type(back["customers"][0].address) is Address
    assert type(back["customers"][0].extra["score"]) is Decimal


def test_dataclass_tag_names_module_and_qualname() -> None:
    stored = json.loads(conv.dumps(Address("s", "c")))
    assert stored == {
        TAG: "dataclass",
        "type": f"{__name__}:Address",
        "v": {"street": "s", "city": "c"},
    }


def test_dataclass_init_false_field_is_restored() -> None:
    customer = make_customer()
    object.__setattr__(customer, "computed", 42)
    assert roundtrip(customer).computed == 42


def test_dataclass_defined_in_a_function_is_rejected_when_encoding() -> None:
    @dataclasses.dataclass
    class Local:
        x: int

    with pytest.raises(SerializationError) as err:
        conv.dumps({"a": Local(1)}, what="input of orchestration 'x'")
    message = str(err.value)
    assert "input of orchestration 'x'" in message
    assert "$.a" in message
    assert "Local" in message
    assert "module level" in message


def test_dataclass_class_is_not_needed_before_loads() -> None:
    # The worker imports the class by name; simulate a module not yet imported.
    text = conv.dumps(Address("s", "c"))
    saved = sys.modules.pop(__name__)
    try:
        back = conv.loads(text)
    finally:
        reimported = sys.modules[__name__]
        sys.modules[__name__] = saved
    assert type(back).__name__ == "Address"
    assert type(back) is reimported.Address


def test_unimportable_dataclass_module_says_it_must_be_importable() -> None:
    text = json.dumps({TAG: "dataclass", "type": "no_such_module_xyz:Claim", "v": {}})
    with pytest.raises(SerializationError) as err:
        conv.loads(text, what="input of orchestration 'approve'")
    message = str(err.value)
    assert "input of orchestration 'approve'" in message
    assert "Claim" in message
    assert "no_such_module_xyz" in message
    assert "importable by the worker" in message


def test_missing_class_in_module_is_reported() -> None:
    text = json.dumps({TAG: "dataclass", "type": f"{__name__}:Gone", "v": {}})
    with pytest.raises(SerializationError, match=r"Gone.*importable by the worker"):
        conv.loads(text)


@pytest.mark.parametrize(
    "path",
    [f"{__name__}:NotADataclass", "os:system", "builtins:dict", f"{__name__}:Item"],
)
def test_loads_refuses_to_build_a_non_dataclass(path: str) -> None:
    text = json.dumps({TAG: "dataclass", "type": path, "v": {}})
    with pytest.raises(SerializationError, match="not a dataclass"):
        conv.loads(text)


# --- pydantic -----------------------------------------------------------------------------


def make_order() -> Order:
    return Order(
        id=uuid.UUID(int=7),
        items=[Item(sku="a", price=Decimal("19.99"), when=AWARE)],
        meta={"note": "rush", TAG: "user data"},
    )


def test_pydantic_model_round_trips() -> None:
    order = make_order()
    back = roundtrip({"order": order, "others": [order]})
    assert back == {"order": order, "others": [order]}
    assert type(back["order"]) is Order
    assert type(back["order"].items[0]) is Item
    assert back["order"].items[0].price == Decimal("19.99")
    assert back["order"].items[0].when == AWARE


def test_pydantic_payload_is_model_dump_json() -> None:
    item = Item(sku="a", price=Decimal("1.5"), when=AWARE)
    stored = json.loads(conv.dumps(item))
    assert stored == {
        TAG: "pydantic",
        "type": f"{__name__}:Item",
        "v": item.model_dump(mode="json"),
    }


def test_pydantic_decoding_refuses_a_non_model() -> None:
    text = json.dumps({TAG: "pydantic", "type": f"{__name__}:Address", "v": {}})
    with pytest.raises(SerializationError, match="not a pydantic model"):
        conv.loads(text)


def test_invalid_pydantic_payload_is_a_serialization_error() -> None:
    text = json.dumps({TAG: "pydantic", "type": f"{__name__}:Item", "v": {"sku": 1}})
    with pytest.raises(SerializationError, match="pydantic"):
        conv.loads(text)


# --- the reserved key ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        {TAG: "datetime", "v": "2026-01-01T00:00:00"},
        {TAG: 1},
        {"outer": {TAG: {TAG: "x"}, "other": [AWARE]}},
        [{TAG: "dict", "v": [["a", 1]]}],
        Address(street=TAG, city='"__tl__"'),
        {"k": {TAG: None}, "s": TAG},
    ],
)
def test_dict_using_the_reserved_key_round_trips(value: Any) -> None:
    assert roundtrip(value) == value


def test_escaped_dict_format() -> None:
    assert json.loads(conv.dumps({TAG: 1, "a": 2})) == {TAG: "dict", "v": [[TAG, 1], ["a", 2]]}


def test_reserved_key_in_dataclass_field_value_round_trips() -> None:
    customer = Customer("n", Address("s", "c"), date(2020, 1, 1), extra={TAG: AWARE})
    assert roundtrip(customer) == customer


# --- encoding errors ---------------------------------------------------------------------------


def test_error_names_type_and_path() -> None:
    with socket.socket() as sock:
        value = {"items": [1, 2, {"owner": sock}]}
        with pytest.raises(SerializationError) as err:
            conv.dumps(value, what="input of orchestration 'x'")
    assert str(err.value) == (
        "cannot serialize input of orchestration 'x': value at $.items[2].owner has type "
        "'socket.socket'; use JSON values, dataclasses, pydantic models, datetime, UUID, "
        "Decimal or bytes"
    )


@pytest.mark.parametrize(
    ("value", "path", "type_name"),
    [
        (object(), "$", "'object'"),
        ([print], "$[0]", "'builtin_function_or_method'"),
        ({"f": lambda: 1}, "$.f", "'function'"),
        ({"odd key": [NotADataclass()]}, '$["odd key"][0]', f"'{__name__}.NotADataclass'"),
        ((1, (2, object())), "$[1][1]", "'object'"),
        ({"c": make_customer(), "d": Address("s", object())}, "$.d.city", "'object'"),  # type: ignore[arg-type]
        ({"a": {"b": bytearray(b"x")}}, "$.a.b", "'bytearray'"),
    ],
)
def test_unsupported_values_are_reported_with_path(value: Any, path: str, type_name: str) -> None:
    with pytest.raises(SerializationError) as err:
        conv.dumps(value)
    message = str(err.value)
    assert message.startswith("cannot serialize value: ")
    assert f"value at {path} has type {type_name}" in message


def test_non_str_dict_key_is_rejected() -> None:
    # json.dumps would quietly turn 1 into "1"; the value would come back changed.
    with pytest.raises(SerializationError) as err:
        conv.dumps({"a": [{1: "x"}]}, what="output of activity 'f'")
    message = str(err.value)
    assert "output of activity 'f'" in message
    assert "$.a[0]" in message
    assert "'int'" in message
    assert "keys must be str" in message


def test_non_str_key_inside_dataclass_is_rejected() -> None:
    customer = Customer("n", Address("s", "c"), date(2020, 1, 1), extra={"m": {(1, 2): 3}})
    with pytest.raises(SerializationError, match=r"\$\.extra\.m .*'tuple'"):
        conv.dumps(customer)


@pytest.mark.parametrize("number", [math.nan, math.inf, -math.inf])
def test_nan_and_infinity_are_rejected(number: float) -> None:
    with pytest.raises(SerializationError, match=r"\$\.x\[1\] is (nan|inf|-inf)"):
        conv.dumps({"x": [0, number]})


def test_circular_reference_is_reported() -> None:
    loop: dict[str, Any] = {"a": []}
    loop["a"].append(loop)
    with pytest.raises(SerializationError, match=r"\$\.a\[0\] contains itself"):
        conv.dumps(loop)


def test_shared_but_acyclic_values_are_fine() -> None:
    shared = {"x": AWARE}
    assert roundtrip([shared, shared, {TAG: shared}]) == [shared, shared, {TAG: shared}]


# --- decoding errors -----------------------------------------------------------------------


@pytest.mark.parametrize("text", ["", "{", "{'a': 1}", "[1,]", "nul"])
def test_malformed_text_is_a_serialization_error(text: str) -> None:
    with pytest.raises(SerializationError, match=r"cannot decode result: malformed JSON at line"):
        conv.loads(text, what="result")


def test_unknown_tag_is_reported() -> None:
    with pytest.raises(SerializationError, match="unknown tag"):
        conv.loads(json.dumps({TAG: "frobnicator", "v": 1}))


@pytest.mark.parametrize(
    "payload",
    [
        {TAG: "datetime", "v": "not a date"},
        {TAG: "uuid", "v": "xyz"},
        {TAG: "decimal", "v": "1.2.3"},
        {TAG: "bytes", "v": "***"},
        {TAG: "timedelta", "v": [1]},
        {TAG: "dict", "v": 5},
        {TAG: "dataclass", "type": "nocolon", "v": {}},
        {TAG: "dataclass", "type": f"{__name__}:Address", "v": {"nope": 1}},
    ],
)
def test_bad_tagged_payload_is_a_serialization_error(payload: dict[str, Any]) -> None:
    with pytest.raises(SerializationError, match="cannot decode value"):
        conv.loads(json.dumps(payload))


def test_foreign_json_without_tags_loads_plainly() -> None:
    assert conv.loads('{"a": [1, 2.5, "x", null, true]}') == {"a": [1, 2.5, "x", None, True]}
