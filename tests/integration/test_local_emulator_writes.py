"""The emulator's shorter ways through a write answer and store what moto's own ways do.

A transaction's Put built in one walk of its values, an item's attribute map and a request's
names taken as they came, a request's structures read by a plan of their members, the
empty-key check skipped for items without an empty value, and update expressions parsed once
for the handlers' checks: each is compared with moto's own way on random requests, valid or
not.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from moto.dynamodb.models import DynamoDBBackend, dynamodb_backends
from moto.dynamodb.models.table import Table

from talkturo.local import emulator_dynamodb
from talkturo.local.emulator import Emulator
from talkturo.local.emulator_dynamodb import unpatched
from tests.integration.test_local_emulator_queries import _attribute_values, _create_tables

pytestmark = pytest.mark.integration

# Besides every type and malformed value: numbers moto refuses or accepts at its edges, keys
# too long for their table (2,048 bytes a hash key, 1,024 a range key), items past 400 KB.
_numbers = st.sampled_from(
    [{"N": n} for n in ["1", "-2.5", " 1", "abc", "1e200", "1e-200", "0", "nan", "1E+3", ""]]
)
_large = st.sampled_from(
    [{"S": "k" * 1025}, {"S": "k" * 2049}, {"S": "é" * 1000}, {"SS": ["k" * 1100]}]
)
_plain = st.recursive(
    st.one_of(
        _numbers,
        st.sampled_from(
            [
                {"S": "x"},
                {"S": ""},
                {"S": "é"},
                {"SS": ["a", "b"]},
                {"NS": ["1", "x"]},
                {"NULL": True},
                {"NULL": False},
                {"BOOL": False},
            ]
        ),
    ),
    lambda inner: st.one_of(
        st.builds(
            lambda value: {"M": value}, st.dictionaries(st.sampled_from(["a", "N", "S"]), inner)
        ),
        st.builds(lambda value: {"L": value}, st.lists(inner, max_size=3)),
    ),
    max_leaves=6,
)
# Mostly values moto stores (or refuses for their numbers, sizes, nulls), some of any kind.
_values = st.one_of(_plain, _plain, _plain, _large, _attribute_values)
# Names moto's type check reads as types ("N", "S", "NULL") among the attributes too.
# (its own key or none, its attributes, a padding string's length): a key given among the
# attributes replaces the item's own.
_items = st.tuples(
    st.booleans(),
    st.dictionaries(
        st.sampled_from(["G", "GR", "H", "V", "M", "G", "V", "M", "N", "S", "NULL", "PK", "SK"]),
        _values,
        max_size=3,
    ),
    st.sampled_from([None, None, 200_000, 404_900, 405_100]),
)


def _backend() -> DynamoDBBackend:
    account = boto3.client("sts", region_name="us-east-1").get_caller_identity()["Account"]
    backend: DynamoDBBackend = dynamodb_backends[account]["us-east-1"]
    return backend


def _stored(table: Table) -> list[Any]:
    """Everything moto keeps of a table's items: keys, attributes, their types, their sizes."""
    found = []
    for partition in table.items.values():
        for item in partition.values() if table.range_key_attr else [partition]:
            found.append(
                (
                    repr(item.hash_key),
                    repr(item.range_key),
                    type(item.attrs).__name__,
                    repr(item.attrs),
                    item.size(),
                )
            )
    return found


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(puts=st.lists(_items, min_size=1, max_size=3), hashed=st.booleans())
@example(puts=[(True, {"V": {"N": "abc"}}, None)], hashed=False)
@example(puts=[(True, {"V": {"NULL": False}}, None)], hashed=False)
@example(puts=[(True, {"V": {"S": "x"}}, 405_100)], hashed=False)
@example(puts=[(True, {"G": {"S": "k" * 2049}}, None)], hashed=True)
# One byte over the limit, counting a map's names and a string set's UTF-8 bytes.
@example(puts=[(True, {"M": {"M": {"a": {"S": "x"}}}}, 404_991)], hashed=False)
@example(puts=[(True, {"V": {"SS": ["é"]}}, 404_991)], hashed=False)
def test_a_put_built_here_stores_what_moto_s_put_stores(
    emulator: Emulator,
    monkeypatch: pytest.MonkeyPatch,
    puts: list[tuple[bool, dict[str, Any], int | None]],
    hashed: bool,
) -> None:
    # Given random items, keys included or not, put by one transaction on either table
    dynamodb = boto3.client("dynamodb", region_name="us-east-1")
    backend = _backend()

    def outcome() -> Any:
        names = _create_tables(dynamodb)
        name = names[1] if hashed else names[0]
        items = []
        for number, (keyed, attributes, padding) in enumerate(puts):
            keys = {"PK": {"S": "a"}, "SK": {"N": str(number)}} if keyed else {}
            item = {**keys, **attributes}
            if hashed:
                item.pop("SK", None)
            if padding is not None:
                item["P"] = {"S": "x" * padding}
            items.append({"Put": {"TableName": name, "Item": copy.deepcopy(item)}})
        try:
            backend.transact_write_items(items)
            answer: Any = "ok"
        except Exception as refused:  # moto's refusal, and what it says, is its answer
            answer = (type(refused).__name__, str(refused))
        table = backend.get_table(name)
        stored = _stored(table)
        try:
            indexed: Any = dynamodb.query(
                TableName=name,
                IndexName="by-g",
                KeyConditionExpression="G = :g",
                ExpressionAttributeValues={":g": {"S": "x"}},
            )["Items"]
        except ClientError as failed:  # moto fails on some values it stored
            indexed = failed.response["Error"]["Code"]
        for each in names:
            dynamodb.delete_table(TableName=each)
        return answer, stored, indexed

    # When put by the emulator's way and by moto's own, then the same answer and items
    built_here = outcome()
    with monkeypatch.context() as moto_only:
        moto_only.setattr(emulator_dynamodb, "puts_built_here", False)
        assert outcome() == built_here


def test_a_put_is_built_here_only_when_the_way_is_on(
    emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The comparison above compares two ways: a plain item's put skips moto's put_item."""
    dynamodb = boto3.client("dynamodb", region_name="us-east-1")
    ranged, hashed = _create_tables(dynamodb)
    calls: list[str] = []
    put_item = Table.put_item

    def counted(table: Table, *args: Any, **kwargs: Any) -> Any:
        calls.append(table.name)
        return put_item(table, *args, **kwargs)

    monkeypatch.setattr(Table, "put_item", counted)
    item = {"PK": {"S": "a"}, "SK": {"N": "1"}, "M": {"M": {"x": {"L": [{"N": "2"}]}}}}
    dynamodb.transact_write_items(TransactItems=[{"Put": {"TableName": ranged, "Item": item}}])
    assert calls == []
    assert (
        dynamodb.get_item(TableName=ranged, Key={"PK": item["PK"], "SK": item["SK"]})["Item"]
        == item
    )
    monkeypatch.setattr(emulator_dynamodb, "puts_built_here", False)
    dynamodb.transact_write_items(TransactItems=[{"Put": {"TableName": ranged, "Item": item}}])
    assert calls == [ranged]
    for name in (ranged, hashed):
        dynamodb.delete_table(TableName=name)


_names = st.dictionaries(
    st.sampled_from(["#a", "#b", "#c"]),
    st.one_of(st.sampled_from(["a", "", "PK"]), st.integers(), st.none(), st.just({"S": "x"})),
    max_size=3,
)


@given(
    item=st.dictionaries(st.sampled_from(["PK", "SK", "a", "b"]), _attribute_values, max_size=4),
    values=st.dictionaries(st.sampled_from([":v", ":w"]), _attribute_values, max_size=2),
    names=_names,
    shape=st.sampled_from(["map", "list", "string", "null"]),
)
def test_maps_are_read_as_moto_reads_them(
    item: dict[str, Any], values: dict[str, Any], names: dict[str, Any], shape: str
) -> None:
    # Given a transaction's put and update with items, values and names of any JSON type
    from moto.core.parse import PROTOCOL_PARSERS, BaseJSONParser, JSONParser
    from moto.core.responses import get_service_model

    emulator_dynamodb.install()
    given_item: Any = {"map": item, "list": [item], "string": "item", "null": None}[shape]
    body = {
        "TransactItems": [
            {
                "Put": {
                    "TableName": "t",
                    "Item": given_item,
                    "ExpressionAttributeValues": values,
                    "ExpressionAttributeNames": names,
                }
            },
            {"Update": {"TableName": "t", "Key": item, "UpdateExpression": "SET a = :v"}},
        ]
    }
    operation = get_service_model("dynamodb").operation_model("TransactWriteItems")

    def parsed() -> Any:
        parser = PROTOCOL_PARSERS["json"](operation, map_type=dict)
        request = {
            "method": "POST",
            "values": {},
            "headers": {},
            "body": json.dumps(body).encode(),
            "url_path": "/",
            "url_params": {},
        }
        try:
            return parser.parse(request)
        except Exception as error:  # moto's own failure is part of its answer
            return type(error).__name__

    # When read by the emulator and by moto's own parser, then the two read the same
    as_read = parsed()
    structure, mapping = BaseJSONParser._parse_structure, JSONParser._parse_map
    planned = JSONParser._parse_structure
    try:
        BaseJSONParser._parse_structure = unpatched(structure)  # type: ignore[method-assign]
        JSONParser._parse_structure = unpatched(structure)  # type: ignore[method-assign]
        JSONParser._parse_map = unpatched(mapping)  # type: ignore[method-assign]
        by_moto = parsed()
    finally:
        BaseJSONParser._parse_structure = structure  # type: ignore[method-assign]
        JSONParser._parse_structure = planned  # type: ignore[method-assign]
        JSONParser._parse_map = mapping  # type: ignore[method-assign]
    # (the same types and the same order of keys too)
    assert repr(as_read) == repr(by_moto)


@settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    fields=st.dictionaries(
        st.sampled_from(["PK", "SK", "G", "GR", "L", "V"]),
        st.one_of(
            _attribute_values,
            st.sampled_from([{"S": ""}, {"B": ""}, {"S": "", "N": "1"}, {"N": ""}]),
        ),
        max_size=4,
    ),
    message=st.sampled_from([None, "Key: {}"]),
)
def test_the_empty_key_check_refuses_what_moto_s_refuses(
    emulator: Emulator, fields: dict[str, Any], message: str | None
) -> None:
    # Given an item's fields with empty strings or binaries in key attributes or not
    from moto.dynamodb import responses

    dynamodb = boto3.client("dynamodb", region_name="us-east-1")
    names = _create_tables(dynamodb)
    table = _backend().get_table(names[0])

    def checked(check: Any) -> Any:
        try:
            check(copy.deepcopy(fields), table, message)
        except Exception as refused:
            return type(refused).__name__, str(refused)
        return "ok"

    # When checked by the emulator's way and by moto's, then alike
    patched = responses.validate_put_has_empty_keys
    assert checked(patched) == checked(unpatched(patched))
    for name in names:
        dynamodb.delete_table(TableName=name)


_expressions = st.lists(
    st.sampled_from(
        [
            "SET #a = :v",
            "SET #a = :v, #b = #b + :w",
            "ADD #c :v",
            "REMOVE #a, b",
            "SET a = if_not_exists(#b, :v)",
            "SET",
            "DELETE #a :v REMOVE",
            "SET a = list_append(#a, :v)",
        ]
    ),
    min_size=1,
    max_size=6,
)


@given(expressions=_expressions)
def test_an_update_expression_parsed_once_lists_what_moto_s_parse_lists(
    expressions: list[str],
) -> None:
    # Given update expressions, some asked again, some that do not parse
    from moto.dynamodb import responses
    from moto.dynamodb.parsing.ast_nodes import ExpressionAttributeName, ExpressionAttributeValue

    emulator_dynamodb.install()

    def listed(parser: Any, text: str) -> Any:
        try:
            tree = parser.make(text)
        except Exception as refused:
            return type(refused).__name__, str(refused)
        return (
            [
                n.get_attribute_name_placeholder()
                for n in tree.find_clauses([ExpressionAttributeName])
            ],
            [v.get_value_name() for v in tree.find_clauses([ExpressionAttributeValue])],
        )

    # When the handlers' parser reads them (twice each), then it lists what moto's lists
    patched = responses.UpdateExpressionParser
    for text in expressions + expressions:
        assert listed(patched, text) == listed(unpatched(patched), text)


_json_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**70), max_value=2**70),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=5),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=12,
)


@settings(max_examples=150, deadline=None)
@given(value=_json_values)
@example(value={"a": 123456789012345678901234567890})
@example(value={"a": -9223372036854775809, "b": 18446744073709551615})
@example(value={"a": "\ud800"})
@example(value={"a": 1, "b": [1.5e300, -0.0, 1e-320]})
def test_a_body_is_read_as_moto_reads_it(value: Any) -> None:
    # Given a request body of any JSON (long integers, lone surrogates, odd floats), and bodies
    # that are not JSON or not UTF-8
    from moto.core.parse import BaseJSONParser
    from moto.core.responses import get_service_model

    emulator_dynamodb.install()
    read = BaseJSONParser._parse_body_as_json
    operation = get_service_model("dynamodb").operation_model("GetItem")
    bodies = [
        json.dumps(value).encode(),
        json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass"),
        b'{"a": NaN, "b": 1e400}',
        b'{"a": 1, "a": 2, "b": 3}',
        b"not json",
        b'{"a": "\xff"}',
        b"",
    ]
    # When read by the emulator's way and by moto's, then alike (types and key order too)
    for body in bodies:
        parser = BaseJSONParser(operation)
        assert repr(read(parser, body)) == repr(unpatched(read)(parser, body))


_keys = st.one_of(
    st.text(alphabet='ab{}":', max_size=4),
    st.dictionaries(
        st.sampled_from(["PK", "SK"]),
        st.dictionaries(st.sampled_from(["S", "N"]), st.sampled_from(["1", "2", "x"]), max_size=2),
        max_size=2,
    ),
    st.builds(lambda raw: {"PK": {"B": raw}}, st.binary(max_size=2)),
)


@settings(max_examples=200, deadline=None)
@given(keys=st.lists(_keys, max_size=8))
def test_repeated_keys_are_found_as_moto_finds_them(keys: list[Any]) -> None:
    # Given keys of a batch (texts, key maps in any order of their attributes, binary keys)
    from moto.dynamodb.responses import DynamoHandler

    emulator_dynamodb.install()
    keys = keys + [dict(reversed(list(k.items()))) for k in keys[:1] if isinstance(k, dict)]
    handler = DynamoHandler()
    found = DynamoHandler._contains_duplicates
    # When looked for by the emulator's set and by moto's list, then alike
    assert found(handler, keys) == unpatched(found)(handler, keys)
